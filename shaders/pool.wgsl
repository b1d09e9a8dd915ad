// Pooling over NCHW planes (NC = N·C planes of H×W): max pooling with its argmax and the
// gradient gathered back to it, and adaptive average pooling (PyTorch's overlapping bins)
// with its backward. Backward kernels run one thread per INPUT element and gather from the
// outputs whose window holds it (deterministic, no atomics).
// Entry chosen by one flag: MAX_FWD, MAX_BWD, AVG_FWD, AVG_BWD.

#if ${F16}
enable f16;
#endif
// Element type of the float tensors (f32 or f16, from the bound tensors); arithmetic is f32.
alias T = ${T};

${PARAMS}   // NC, H, W, OH, OW, K, S, PAD, total: src/graph/kernels/pool.ts
@group(0) @binding(0) var<uniform> p: Params;

#include "lib/grid"
#include "lib/nan"   // is_nan

// Adaptive bins: [floor(i·in/out), ceil((i+1)·in/out)).
fn binStart(i: u32, inSize: u32, outSize: u32) -> u32 { return (i * inSize) / outSize; }
fn binEnd(i: u32, inSize: u32, outSize: u32) -> u32 { return ((i + 1u) * inSize + outSize - 1u) / outSize; }

#if ${MAX_FWD}
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> y: array<T>;
@group(0) @binding(3) var<storage, read_write> arg: array<i32>;   // h·W + w within the plane

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg);
  if (i >= p.total) { return; }
  let ow = i % p.OW;
  let oh = (i / p.OW) % p.OH;
  let q = i / (p.OW * p.OH);
  let base = q * p.H * p.W;
  let h0 = i32(oh * p.S) - i32(p.PAD);
  let w0 = i32(ow * p.S) - i32(p.PAD);
  var best = 0.0;
  var bi = -1;
  for (var ky = 0; ky < i32(p.K); ky++) {
    let ih = h0 + ky;
    if (ih < 0 || ih >= i32(p.H)) { continue; }
    for (var kx = 0; kx < i32(p.K); kx++) {
      let iw = w0 + kx;
      if (iw < 0 || iw >= i32(p.W)) { continue; }
      let v = f32(x[base + u32(ih) * p.W + u32(iw)]);
      // First maximum in scan order wins ties; NaN propagates, the last NaN winning (as
      // PyTorch's kernel: val > max || isnan(val)); once best is NaN no number replaces it.
      if (bi < 0 || is_nan(v) || (!is_nan(best) && v > best)) {
        best = v;
        bi = ih * i32(p.W) + iw;
      }
    }
  }
  y[i] = T(best);
  arg[i] = bi;
}
#elif ${MAX_BWD}
@group(0) @binding(1) var<storage, read> dy: array<T>;
@group(0) @binding(2) var<storage, read> arg: array<i32>;
@group(0) @binding(3) var<storage, read_write> dx: array<T>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg);
  if (i >= p.total) { return; }
  let iw = i32(i % p.W);
  let ih = i32((i / p.W) % p.H);
  let q = i / (p.W * p.H);
  let me = ih * i32(p.W) + iw;
  let s = i32(p.S);
  // Outputs whose window covers (ih, iw): oh·s − pad ≤ ih ≤ oh·s − pad + K − 1.
  let ylo = ih + i32(p.PAD) - i32(p.K) + 1;
  let xlo = iw + i32(p.PAD) - i32(p.K) + 1;
  let ohLo = select(0, (ylo + s - 1) / s, ylo > 0);
  let owLo = select(0, (xlo + s - 1) / s, xlo > 0);
  let ohHi = min((ih + i32(p.PAD)) / s, i32(p.OH) - 1);
  let owHi = min((iw + i32(p.PAD)) / s, i32(p.OW) - 1);
  var acc = 0.0;
  for (var oh = ohLo; oh <= ohHi; oh++) {
    for (var ow = owLo; ow <= owHi; ow++) {
      let o = q * p.OH * p.OW + u32(oh) * p.OW + u32(ow);
      if (arg[o] == me) { acc += f32(dy[o]); }
    }
  }
  dx[i] = T(acc);
}
#elif ${AVG_FWD}
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> y: array<T>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg);
  if (i >= p.total) { return; }
  let ow = i % p.OW;
  let oh = (i / p.OW) % p.OH;
  let q = i / (p.OW * p.OH);
  let h0 = binStart(oh, p.H, p.OH);
  let h1 = binEnd(oh, p.H, p.OH);
  let w0 = binStart(ow, p.W, p.OW);
  let w1 = binEnd(ow, p.W, p.OW);
  var acc = 0.0;
  for (var h = h0; h < h1; h++) {
    for (var w = w0; w < w1; w++) { acc += f32(x[(q * p.H + h) * p.W + w]); }
  }
  y[i] = T(acc / f32((h1 - h0) * (w1 - w0)));
}
#elif ${AVG_BWD}
@group(0) @binding(1) var<storage, read> dy: array<T>;
@group(0) @binding(2) var<storage, read_write> dx: array<T>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg);
  if (i >= p.total) { return; }
  let iw = i % p.W;
  let ih = (i / p.W) % p.H;
  let q = i / (p.W * p.H);
  // Bins holding ih: start(i) ≤ ih ⇔ i ≤ ((ih+1)·out − 1)/in; end(i) > ih ⇔ i ≥ ih·out/in.
  let oyLo = (ih * p.OH) / p.H;
  let oyHi = min(((ih + 1u) * p.OH - 1u) / p.H, p.OH - 1u);
  let oxLo = (iw * p.OW) / p.W;
  let oxHi = min(((iw + 1u) * p.OW - 1u) / p.W, p.OW - 1u);
  var acc = 0.0;
  for (var oy = oyLo; oy <= oyHi; oy++) {
    let hn = binEnd(oy, p.H, p.OH) - binStart(oy, p.H, p.OH);
    for (var ox = oxLo; ox <= oxHi; ox++) {
      let wn = binEnd(ox, p.W, p.OW) - binStart(ox, p.W, p.OW);
      acc += f32(dy[(q * p.OH + oy) * p.OW + ox]) / f32(hn * wn);
    }
  }
  dx[i] = T(acc);
}
#endif
