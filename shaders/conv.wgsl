// 2-D convolution (NCHW, square zero padding) as implicit GEMMs, forward and both backward
// passes, in the tiling of matmul.wgsl: a workgroup computes a TM×TN tile of the GEMM output
// with (TM/RM)×(TN/RN) threads, each an RM×RN register block; K advances BK at a time through
// workgroup memory. The patch matrix is never materialised: tile loads gather from X / dY.
//   FWD: Y[m=(n,oh,ow), o]     = Σ_{k=(c,ky,kx)} X-patch[m,k] · W[o,k]            (+ bias[o])
//   DX : dX[m=(n,ih,iw), c]    = Σ_{k=(o,ky,kx)} dY[n,o,(ih+P-ky)/S,(iw+P-kx)/S] · W[o,c,ky,kx]
//        (terms whose division is inexact or out of range are zero: a transposed conv as a gather)
//   DW : dW[o, j=(c,ky,kx)]    = Σ_n Σ_{k=(oh,ow)} dY[n,o,k] · X-patch[n,k,j]
// BIAS_GRAD: db[o] = Σ_{n,oh,ow} dY[n,o,oh,ow], one workgroup per channel.
// Specialisation: FWD, DX (else DW), HAS_BIAS, BIAS_GRAD (bool); KH, KW, STRIDE, PAD,
// TM, TN, BK, RM, RN (u32).

struct Params {
  N: u32, C: u32, H: u32, W: u32,
  O: u32, OH: u32, OW: u32, pad0: u32,
  M: u32, NC: u32, K: u32, batches: u32,   // GEMM sizes; DW sums `batches` images of K pixels
}
@group(0) @binding(0) var<uniform> p: Params;

const KH: u32 = ${KH}u;
const KW: u32 = ${KW}u;
const KHW: u32 = KH * KW;
const S: u32 = ${STRIDE}u;
const PAD: i32 = ${PAD};
const TM: u32 = ${TM}u;
const TN: u32 = ${TN}u;
const BK: u32 = ${BK}u;
const RM: u32 = ${RM}u;
const RN: u32 = ${RN}u;
const TX: u32 = TN / RN;
const TY: u32 = TM / RM;
const NT: u32 = TX * TY;
const A_PER: u32 = BK * TM / NT;   // A-tile elements each thread loads
const B_PER: u32 = BK * TN / NT;
const A_KSTEP: u32 = NT / TM;      // k distance between a thread's A elements
const B_KSTEP: u32 = NT / TN;

#if ${BIAS_GRAD}
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> db: array<f32>;
var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let o = wid.x;
  let P = p.OH * p.OW;
  var acc = 0.0;
  for (var n = 0u; n < p.N; n++) {
    let base = (n * p.O + o) * P;
    for (var i = li; i < P; i += 256u) { acc += dy[base + i]; }
  }
  red[li] = acc;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (li < s) { red[li] += red[li + s]; }
    workgroupBarrier();
  }
  if (li == 0u) { db[o] = red[0]; }
}
#else

#if ${FWD}
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> Wt: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;
#if ${HAS_BIAS}
@group(0) @binding(4) var<storage, read> bias: array<f32>;
#endif
#elif ${DX}
@group(0) @binding(1) var<storage, read> dY: array<f32>;
@group(0) @binding(2) var<storage, read> Wt: array<f32>;
@group(0) @binding(3) var<storage, read_write> dX: array<f32>;
#else
@group(0) @binding(1) var<storage, read> dY: array<f32>;
@group(0) @binding(2) var<storage, read> X: array<f32>;
@group(0) @binding(3) var<storage, read_write> dW: array<f32>;
#endif

var<workgroup> As: array<f32, BK * TM>;   // [k][m]
var<workgroup> Bs: array<f32, BK * TN>;   // [k][n]

@compute @workgroup_size(TX, TY, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let m0 = wid.y * TM;
  let n0 = wid.x * TN;
  let HW = p.H * p.W;
  let P = p.OH * p.OW;
  // Each thread always loads the same A row (am) and B column (bn): decompose them once.
  let am = m0 + li % TM;
  let ak = li / TM;
  let bn = n0 + li % TN;
  let bk = li / TN;
  let aValid = am < p.M;
  let bValid = bn < p.NC;
#if ${FWD}
  let an = am / P;
  let apix = am % P;
  let aih0 = i32(apix / p.OW) * i32(S) - PAD;
  let aiw0 = i32(apix % p.OW) * i32(S) - PAD;
  let aBase = an * p.C * HW;
  let bBase = bn * p.K;
#elif ${DX}
  let an = am / HW;
  let apix = am % HW;
  let aihp = i32(apix / p.W) + PAD;
  let aiwp = i32(apix % p.W) + PAD;
  let aBase = an * p.O * P;
#else
  let bc = bn / KHW;
  let br = bn % KHW;
  let bky = i32(br / KW) - PAD;
  let bkx = i32(br % KW) - PAD;
#endif
  var acc: array<array<f32, RN>, RM>;
  for (var img = 0u; img < p.batches; img++) {
    for (var k0 = 0u; k0 < p.K; k0 += BK) {
      for (var j = 0u; j < A_PER; j++) {
        let kk = ak + j * A_KSTEP;
        let k = k0 + kk;
        var v = 0.0;
        if (aValid && k < p.K) {
#if ${FWD}
          let c = k / KHW;
          let r = k % KHW;
          let ih = aih0 + i32(r / KW);
          let iw = aiw0 + i32(r % KW);
          if (ih >= 0 && ih < i32(p.H) && iw >= 0 && iw < i32(p.W)) {
            v = X[aBase + c * HW + u32(ih) * p.W + u32(iw)];
          }
#elif ${DX}
          let o = k / KHW;
          let r = k % KHW;
          let ty = aihp - i32(r / KW);
          let tx = aiwp - i32(r % KW);
          if (ty >= 0 && tx >= 0 && u32(ty) % S == 0u && u32(tx) % S == 0u) {
            let oh = u32(ty) / S;
            let ow = u32(tx) / S;
            if (oh < p.OH && ow < p.OW) { v = dY[aBase + o * P + oh * p.OW + ow]; }
          }
#else
          v = dY[(img * p.O + am) * P + k];
#endif
        }
        As[kk * TM + li % TM] = v;
      }
      for (var j = 0u; j < B_PER; j++) {
        let kk = bk + j * B_KSTEP;
        let k = k0 + kk;
        var v = 0.0;
        if (bValid && k < p.K) {
#if ${FWD}
          v = Wt[bBase + k];
#elif ${DX}
          let o = k / KHW;
          let r = k % KHW;
          v = Wt[(o * p.C + bn) * KHW + r];
#else
          let ih = i32(k / p.OW) * i32(S) + bky;
          let iw = i32(k % p.OW) * i32(S) + bkx;
          if (ih >= 0 && ih < i32(p.H) && iw >= 0 && iw < i32(p.W)) {
            v = X[(img * p.C + bc) * HW + u32(ih) * p.W + u32(iw)];
          }
#endif
        }
        Bs[kk * TN + li % TN] = v;
      }
      workgroupBarrier();
      for (var k = 0u; k < BK; k++) {
        var a: array<f32, RM>;
        var b: array<f32, RN>;
        for (var i = 0u; i < RM; i++) { a[i] = As[k * TM + lid.y + i * TY]; }
        for (var j = 0u; j < RN; j++) { b[j] = Bs[k * TN + lid.x + j * TX]; }
        for (var i = 0u; i < RM; i++) {
          for (var j = 0u; j < RN; j++) {
            acc[i][j] = fma(a[i], b[j], acc[i][j]);
          }
        }
      }
      workgroupBarrier();
    }
  }
  for (var i = 0u; i < RM; i++) {
    let m = m0 + lid.y + i * TY;
    if (m >= p.M) { continue; }
#if ${FWD}
    let outBase = (m / P) * p.O * P + m % P;
#elif ${DX}
    let outBase = (m / HW) * p.C * HW + m % HW;
#else
    let outBase = m * p.NC;
#endif
    for (var j = 0u; j < RN; j++) {
      let n = n0 + lid.x + j * TX;
      if (n >= p.NC) { continue; }
#if ${FWD}
#if ${HAS_BIAS}
      Y[outBase + n * P] = acc[i][j] + bias[n];
#else
      Y[outBase + n * P] = acc[i][j];
#endif
#elif ${DX}
      dX[outBase + n * HW] = acc[i][j];
#else
      dW[outBase + n] = acc[i][j];
#endif
    }
  }
}
#endif
