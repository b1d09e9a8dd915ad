// 2-D convolution (NCHW, square kernels, zero padding) as implicit GEMMs, forward and both
// backward passes, shaped for SIMD adapters (CPU Vulkan as much as GPUs):
//  * the gathered operand is read as vec4 along channels from a channels-last copy
//    (NHWC, channels padded to a multiple of 4: LAYOUT), so one load feeds 4 reduction steps;
//  * the weight operand is re-laid as a [taps·Cin4·4, Cout4] vec4 matrix (WEIGHT) whose loads
//    have a workgroup-uniform address (every invocation of a workgroup shares its columns);
//  * each invocation keeps an RM×RN register block (RM rows: pixels; RN columns, as vec4),
//    no workgroup memory and no barriers.
// GEMM4 with FWD: Y[m=(n,oh,ow), o]  = Σ_tap Σ_c Xh[n, oh·S−P+ky, ow·S−P+kx, c] · WB[tap,c][o]
// GEMM4 with DX : dX[m=(n,ih,iw), c] = Σ_tap Σ_o dYh[n, (ih+P−ky)/S, (iw+P−kx)/S, o] · WB[tap,o][c]
//                 (taps whose division is inexact or out of range add nothing: a transposed
//                 conv as a gather, deterministic, no col2im)
// DW4: dW[o, c, tap] = Σ_n Σ_(oh,ow) dY[n,o,oh,ow] · Xh[n, oh·S−P+ky, ow·S−P+kx, c]
// BIAS_GRAD: db[o] = Σ dY[n,o,·,·], one workgroup per channel.
// Specialisation: T (element type of every tensor and re-laid copy; accumulation is f32), one of LAYOUT, LAYOUT_ROWS, WEIGHT, WEIGHT_ROWS, WEIGHT_FLIP_T, GEMM4, GEMMR, DW4, DWR, BIAS_GRAD, IM2COL, IM2COL_ROWS (REG_BODY: GEMMR's or DWR's generated body); FWD (GEMM4: forward, else
// dX; WEIGHT: rows are input channels, else output channels), HAS_BIAS (bool); KH, KW, STRIDE,
// PAD, WG, RM, RN (u32; RN a multiple of 4).

#if ${F16}
enable f16;
#endif
// Element type of the float tensors (f32 or f16, from the bound tensors); arithmetic is f32.
alias T = ${T};

${PARAMS}   // src/graph/kernels/conv.ts convParams
@group(0) @binding(0) var<uniform> p: Params;

const KH: u32 = ${KH}u;
const KW: u32 = ${KW}u;
const KHW: u32 = KH * KW;
const S: i32 = ${STRIDE};
const PAD: i32 = ${PAD};
const WG: u32 = ${WG}u;
const RM: u32 = ${RM}u;
const RN: u32 = ${RN}u;
const RN4: u32 = RN / 4u;

#include "lib/grid"

#if ${LAYOUT}
// src [N, Cs, HWs] → dst [N, HWs, Cs4] of vec4 (channels past Cs are zero), followed by one
// all-zero pixel (Cs4 vec4) that out-of-range taps read instead of branching.
// Params: N, C = Cs, H·W = HWs (W = 1), SC4 = Cs4; total = (N·HWs + 1)·Cs4.
@group(0) @binding(1) var<storage, read> src: array<T>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<T>>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg);
  if (i >= p.total) { return; }
  let c4 = i % p.SC4;
  let pix = (i / p.SC4) % p.H;
  let n = i / (p.SC4 * p.H);
  var v = vec4<f32>(0.0);
  for (var q = 0u; q < 4u; q++) {
    let c = c4 * 4u + q;
    if (c < p.C && n < p.N) { v[q] = f32(src[(n * p.C + c) * p.H + pix]); }
  }
  dst[i] = vec4<T>(v);
}
#elif ${LAYOUT_ROWS}
// LAYOUT for CPU adapters: one invocation per pixel (p.total = N·HWs + 1 pixels, the last the
// zero pixel) looping over its Cs4 channel quads, so the index division is once per pixel.
@group(0) @binding(1) var<storage, read> src: array<T>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<T>>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let px = flat_id(gid, nwg);
  if (px >= p.total) { return; }
  let pix = px % p.H;
  let n = px / p.H;
  let inImage = n < p.N;
  let sb = n * p.C * p.H + pix;
  for (var c4 = 0u; c4 < p.SC4; c4++) {
    var v = vec4<f32>(0.0);
    for (var q = 0u; q < 4u; q++) {
      let c = c4 * 4u + q;
      if (c < p.C && inImage) { v[q] = f32(src[sb + c * p.H]); }
    }
    dst[px * p.SC4 + c4] = vec4<T>(v);
  }
}
#elif ${WEIGHT_FLIP_T}
// The input gradient of a stride-1 conv is a conv of dY with the weight flipped in space and
// its channels swapped (the matmul kind runs it as one): that weight transposed, as the matmul
// kind reads it, wT[(o·KH + ky)·KW + kx, c] = W[o, c, KH−1−ky, KW−1−kx]; p.total = O·KHW·C.
@group(0) @binding(1) var<storage, read> Wsrc: array<T>;
@group(0) @binding(2) var<storage, read_write> WT: array<T>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg);
  if (i >= p.total) { return; }
  let c = i % p.C;
  let r = i / p.C;
  let tap = r % KHW;
  let o = r / KHW;
  WT[i] = Wsrc[(o * p.C + c) * KHW + (KHW - 1u - tap)];
}
#elif ${WEIGHT_ROWS}
// WEIGHT for CPU adapters: one invocation per WB row (tap, r) looping over its NB4 column
// quads (p.total = KHW·R4·4 rows), so the index division is once per row.
@group(0) @binding(1) var<storage, read> Wsrc: array<T>;
@group(0) @binding(2) var<storage, read_write> WB: array<vec4<T>>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg);
  if (i >= p.total) { return; }
  // Invocations run tap-fastest (neighbouring lanes read neighbouring taps of one weight row,
  // a few cache lines per gather); the WB row they fill is (tap, r).
  let tap = i % KHW;
  let r = i / KHW;
  let row = tap * p.SC4 * 4u + r;
  for (var q4 = 0u; q4 < p.NB4; q4++) {
    var v = vec4<f32>(0.0);
    for (var e = 0u; e < 4u; e++) {
      let q = q4 * 4u + e;
#if ${FWD}
      let c = r;
      let o = q;
#else
      let o = r;
      let c = q;
#endif
      if (c < p.C && o < p.O) { v[e] = f32(Wsrc[(o * p.C + c) * KHW + tap]); }
    }
    WB[row * p.NB4 + q4] = vec4<T>(v);
  }
}
#elif ${WEIGHT}
// W [O, C, KH, KW] → WB [KHW, R4·4, NB4] of vec4: FWD rows are input channels and columns
// output channels; else (for dX) rows are output channels and columns input channels.
// Params: C, O, SC4 = R4 (row vec4s), NB4; total = KHW·R4·4·NB4.
@group(0) @binding(1) var<storage, read> Wsrc: array<T>;
@group(0) @binding(2) var<storage, read_write> WB: array<vec4<T>>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg);
  if (i >= p.total) { return; }
  let q4 = i % p.NB4;
  let r = (i / p.NB4) % (p.SC4 * 4u);
  let tap = i / (p.NB4 * p.SC4 * 4u);
  var v = vec4<f32>(0.0);
  for (var e = 0u; e < 4u; e++) {
    let q = q4 * 4u + e;
#if ${FWD}
    let c = r;
    let o = q;
#else
    let o = r;
    let c = q;
#endif
    if (c < p.C && o < p.O) { v[e] = f32(Wsrc[(o * p.C + c) * KHW + tap]); }
  }
  WB[i] = vec4<T>(v);
}
#elif ${GEMM4}
@group(0) @binding(1) var<storage, read> A4: array<vec4<T>>;   // Xh (FWD) or dYh (dX), channels-last
@group(0) @binding(2) var<storage, read> WB: array<vec4<T>>;
@group(0) @binding(3) var<storage, read_write> out: array<T>;  // NCHW
#if ${HAS_BIAS}
@group(0) @binding(4) var<storage, read> bias: array<T>;
#endif

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let col4 = wid.x * RN4;                  // first vec4 column of this workgroup (uniform)
  let mBase = wid.y * (WG * RM) + lid.x;
#if ${FWD}
  let outH = p.OH;
  let outW = p.OW;
#else
  let outH = p.H;
  let outW = p.W;
#endif
  let outP = outH * outW;
  let zeroPixel = p.N * p.SH * p.SW * p.SC4;   // the all-zero pixel after the last image
#if ${FWD}
  let rowP = outP;
  let rowW = outW;
#else
  // dX rows come in S×S parity classes (wid.z = cy·S + cx): pixel (cy + S·a, cx + S·b), so
  // whether a tap reaches a row is the same for the whole workgroup and dead taps are skipped.
  let cy = i32(wid.z / u32(S));
  let cx = i32(wid.z % u32(S));
  let rowW = (outW + u32(S) - 1u) / u32(S);
  let rowP = ((outH + u32(S) - 1u) / u32(S)) * rowW;
#endif
  var imgOff: array<u32, RM>;
  var py: array<i32, RM>;
  var px: array<i32, RM>;
  for (var i = 0u; i < RM; i++) {
    let m = min(mBase + i * WG, p.M - 1u);
    let pix = m % rowP;
    imgOff[i] = (m / rowP) * p.SH * p.SW * p.SC4;
#if ${FWD}
    py[i] = i32(pix / rowW) * S - PAD;
    px[i] = i32(pix % rowW) * S - PAD;
#else
    py[i] = i32(pix / rowW);
    px[i] = i32(pix % rowW);
#endif
  }
  var acc: array<vec4<f32>, RM * RN4>;
  for (var ky = 0u; ky < KH; ky++) {
#if ${FWD}
#else
    let ry = cy + PAD - i32(ky);   // dY row offset · S, the same for every row of the class
    if (ry % S != 0) { continue; }
#endif
    for (var kx = 0u; kx < KW; kx++) {
#if ${FWD}
#else
      let rx = cx + PAD - i32(kx);
      if (rx % S != 0) { continue; }
#endif
      var off: array<u32, RM>;
      for (var i = 0u; i < RM; i++) {
#if ${FWD}
        let sy = py[i] + i32(ky);
        let sx = px[i] + i32(kx);
#else
        let sy = py[i] + ry / S;
        let sx = px[i] + rx / S;
#endif
        let valid = sy >= 0 && sy < i32(p.SH) && sx >= 0 && sx < i32(p.SW);
        off[i] = select(zeroPixel, imgOff[i] + (u32(sy) * p.SW + u32(sx)) * p.SC4, valid);
      }
      let tapRow = (ky * KW + kx) * p.SC4 * 4u;
      for (var c4 = 0u; c4 < p.SC4; c4++) {
        var a: array<vec4<f32>, RM>;
        for (var i = 0u; i < RM; i++) { a[i] = vec4<f32>(A4[off[i] + c4]); }
        let row = (tapRow + c4 * 4u) * p.NB4 + col4;
        for (var q = 0u; q < 4u; q++) {
          for (var j = 0u; j < RN4; j++) {
            let b = vec4<f32>(WB[row + q * p.NB4 + j]);
            for (var i = 0u; i < RM; i++) {
              acc[i * RN4 + j] = fma(vec4<f32>(a[i][q]), b, acc[i * RN4 + j]);
            }
          }
        }
      }
    }
  }
  for (var i = 0u; i < RM; i++) {
    let m = mBase + i * WG;
    if (m >= p.M) { continue; }
#if ${FWD}
    let outBase = (m / outP) * p.NC * outP + m % outP;
#else
    let oy = u32(cy) + u32(S) * u32(py[i]);
    let ox = u32(cx) + u32(S) * u32(px[i]);
    if (oy >= outH || ox >= outW) { continue; }
    let outBase = (m / rowP) * p.NC * outP + oy * outW + ox;
#endif
    for (var j = 0u; j < RN; j++) {
      let n = col4 * 4u + j;
      if (n >= p.NC) { continue; }
#if ${HAS_BIAS}
      out[outBase + n * outP] = T(acc[i * RN4 + j / 4u][j % 4u] + f32(bias[n]));
#else
      out[outBase + n * outP] = T(acc[i * RN4 + j / 4u][j % 4u]);
#endif
    }
  }
}
#elif ${GEMMR}
// GEMM4's products for CPU adapters ("register" style, see shaders/matmul.wgsl): the body is
// generated unrolled in conv.ts (REG_BODY) with RM×RN scalar accumulators (no arrays, which
// LLVM leaves in memory past a small size), one input channel per iteration: RM per-lane
// loads of the gathered operand, RN/4 workgroup-uniform vec4 loads of WB.
@group(0) @binding(1) var<storage, read> A: array<T>;          // Xh (FWD) or dYh (dX), channels-last
@group(0) @binding(2) var<storage, read> WB: array<vec4<T>>;
@group(0) @binding(3) var<storage, read_write> out: array<T>;  // NCHW
#if ${HAS_BIAS}
@group(0) @binding(4) var<storage, read> bias: array<T>;
#endif

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let col4 = wid.x * RN4;
  let col0 = col4 * 4u;
  let mBase = wid.y * (WG * RM) + lid.x;
#if ${FWD}
  let outH = p.OH;
  let outW = p.OW;
  let outP = outH * outW;
  let rowP = outP;
  let rowW = outW;
#else
  let outH = p.H;
  let outW = p.W;
  let outP = outH * outW;
  let cy = i32(wid.z / u32(S));
  let cx = i32(wid.z % u32(S));
  let rowW = (outW + u32(S) - 1u) / u32(S);
  let rowP = ((outH + u32(S) - 1u) / u32(S)) * rowW;
#endif
  let CS = p.SC4 * 4u;                        // floats per pixel of A
  let zeroOff = p.N * p.SH * p.SW * CS;       // the all-zero pixel after the last image
${REG_BODY}
}
#elif ${DWR}
// DW4's products for CPU adapters: unrolled body from conv.ts (REG_BODY), RM output channels
// per lane (per-lane dY loads), RN/4 (tap, channel-quad) groups per workgroup (uniform Xh loads).
@group(0) @binding(1) var<storage, read> dY: array<T>;          // NCHW
@group(0) @binding(2) var<storage, read> Xh: array<vec4<T>>;    // channels-last input
@group(0) @binding(3) var<storage, read_write> dW: array<T>;    // [O, C, KH, KW]

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let col4 = wid.x * RN4;
  let mBase = wid.y * (WG * RM) + lid.x;
  let P = p.OH * p.OW;
  let HW = p.H * p.W;
  let nGroups = KHW * p.SC4;
${REG_BODY}
}
#elif ${DW4}
// Rows (per invocation): output channels o; columns (per workgroup, uniform): vec4 groups
// (tap, c4) of the weight gradient; reduction over every image's output pixels.
@group(0) @binding(1) var<storage, read> dY: array<T>;          // NCHW
@group(0) @binding(2) var<storage, read> Xh: array<vec4<T>>;    // channels-last input
@group(0) @binding(3) var<storage, read_write> dW: array<T>;    // [O, C, KH, KW]

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let col4 = wid.x * RN4;
  let mBase = wid.y * (WG * RM) + lid.x;
  let P = p.OH * p.OW;
  let HW = p.H * p.W;
  let nGroups = KHW * p.SC4;
  var gy: array<i32, RN4>;
  var gx: array<i32, RN4>;
  var gc: array<u32, RN4>;
  for (var j = 0u; j < RN4; j++) {
    let g = min(col4 + j, nGroups - 1u);
    let tap = g / p.SC4;
    gc[j] = g % p.SC4;
    gy[j] = i32(tap / KW) - PAD;
    gx[j] = i32(tap % KW) - PAD;
  }
  var rowOff: array<u32, RM>;
  for (var i = 0u; i < RM; i++) { rowOff[i] = min(mBase + i * WG, p.O - 1u) * P; }
  var acc: array<vec4<f32>, RM * RN4>;
  for (var img = 0u; img < p.N; img++) {
    let yImg = img * p.O * P;
    let xImg = img * HW * p.SC4;
    for (var oh = 0u; oh < p.OH; oh++) {
      for (var ow = 0u; ow < p.OW; ow++) {
        let pix = yImg + oh * p.OW + ow;
        var a: array<f32, RM>;
        for (var i = 0u; i < RM; i++) { a[i] = f32(dY[pix + rowOff[i]]); }
        for (var j = 0u; j < RN4; j++) {
          let sy = i32(oh) * S + gy[j];
          let sx = i32(ow) * S + gx[j];
          let valid = sy >= 0 && sy < i32(p.H) && sx >= 0 && sx < i32(p.W);
          let b = select(vec4<f32>(0.0), vec4<f32>(Xh[xImg + select(0u, (u32(sy) * p.W + u32(sx)) * p.SC4, valid) + gc[j]]), valid);
          for (var i = 0u; i < RM; i++) {
            acc[i * RN4 + j] = fma(vec4<f32>(a[i]), b, acc[i * RN4 + j]);
          }
        }
      }
    }
  }
  for (var i = 0u; i < RM; i++) {
    let o = mBase + i * WG;
    if (o >= p.O) { continue; }
    for (var j = 0u; j < RN4; j++) {
      let g = col4 + j;
      if (g >= nGroups) { continue; }
      let tap = g / p.SC4;
      for (var e = 0u; e < 4u; e++) {
        let c = (g % p.SC4) * 4u + e;
        if (c < p.C) { dW[(o * p.C + c) * KHW + tap] = T(acc[i * RN4 + j][e]); }
      }
    }
  }
}
#elif ${BIAS_GRAD}
@group(0) @binding(1) var<storage, read> dy: array<T>;
@group(0) @binding(2) var<storage, read_write> db: array<T>;
const RED_N: u32 = 256u;
#include "lib/reduce"   // red, red_tree_sum

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let o = wid.x;
  let P = p.OH * p.OW;
  var acc = 0.0;
  for (var n = 0u; n < p.N; n++) {
    let base = (n * p.O + o) * P;
    for (var i = li; i < P; i += 256u) { acc += f32(dy[base + i]); }
  }
  red[li] = acc;
  red_tree_sum(li, RED_N, 1u);
  if (li == 0u) { db[o] = T(red[0]); }
}
#elif ${IM2COL}
// IM2COL (forward conv as im2col + matmul's WINDOW kernel, f32; the weight gradient's matmul
// kind): out[m·Kp + k] for m = (image, oh, ow) and k = (c, ky, kx), the weight's [O, C, KH, KW]
// order; zero past K and outside the image. Rows from p.oh0·OW on (oh0 counts output rows of
// all images in turn: the weight gradient makes its patches a chunk of them at a time).
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> cols: array<T>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg);
  if (i >= p.total) { return; }
  let k = i % p.Kp;
  let m = p.oh0 * p.OW + i / p.Kp;
  let P = p.OH * p.OW;
  let img = m / P;
  let oh = (m % P) / p.OW;
  let ow = m % p.OW;
  let c = k / KHW;
  let ky = (k % KHW) / KW;
  let kx = k % KW;
  let iy = i32(oh) * S - PAD + i32(ky);
  let ix = i32(ow) * S - PAD + i32(kx);
  var v = T(0.0);
  if (k < p.K && iy >= 0 && iy < i32(p.H) && ix >= 0 && ix < i32(p.W)) {
    v = x[((img * p.C + c) * p.H + u32(iy)) * p.W + u32(ix)];
  }
  cols[i] = v;
}
#elif ${IM2COL_ROWS}
// The matmul kind's patch columns (forward conv as weight × patches per image), for the output
// rows oh0 … oh0 + OHc − 1 (a chunk; Pc = OHc·OW pixels): cols[(img·K + k)·Pc + pixel − oh0·OW],
// k = (c, ky, kx) in the weight's order, zero outside the image. One invocation per row (img, k)
// walking its pixels, so the index divisions are once per row (SIMD integer division is
// scalarised on CPU adapters); p.total = N·K rows.
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> cols: array<T>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = flat_id_wg(gid, nwg, 64u);
  if (row >= p.total) { return; }
  let k = row % p.K;
  let img = row / p.K;
  let c = k / KHW;
  let ky = i32((k % KHW) / KW);
  let kx = i32(k % KW);
  let plane = (img * p.C + c) * p.H * p.W;
  var o = row * p.OHc * p.OW;
  for (var oh = p.oh0; oh < p.oh0 + p.OHc; oh++) {
    let iy = i32(oh) * S - PAD + ky;
    let inRow = iy >= 0 && iy < i32(p.H);
    let base = plane + u32(clamp(iy, 0, i32(p.H) - 1)) * p.W;
    var ix = kx - PAD;
    for (var ow = 0u; ow < p.OW; ow++) {
      var v = T(0.0);
      if (inRow && ix >= 0 && ix < i32(p.W)) { v = x[base + u32(ix)]; }
      cols[o] = v;
      o++;
      ix += S;
    }
  }
}
#endif
