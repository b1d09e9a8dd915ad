// Elementwise kernels: unary maps (activations) with their derivatives, broadcasting binary
// ops, fills, and the broadcast-reduction used by their backward.
// Specialisation: T (f32 | f16, from the tensors), OP (operation number, see ops/elementwise.ts) and one of the kind flags
// UNARY, UNARY_GRAD, BINARY, FILL, REDUCE_TO choosing the entry's bindings.

#if ${F16}
enable f16;
#endif
// Element type of the float tensors (f32 or f16; arithmetic is f32 either way).
alias T = ${T};

const MAXR: u32 = 6u;

${PARAMS}   // n, rank, dims, sa, sb, alpha, beta: src/graph/kernels/elementwise.ts

@group(0) @binding(0) var<uniform> p: Params;

fn dim(i: u32) -> u32 { return p.dims[i / 4u][i % 4u]; }
fn stra(i: u32) -> u32 { return p.sa[i / 4u][i % 4u]; }
fn strb(i: u32) -> u32 { return p.sb[i / 4u][i % 4u]; }

#include "lib/grid"

const SELU_ALPHA: f32 = 1.6732632423543772;
const SELU_SCALE: f32 = 1.0507009873554805;

fn erf_f(x: f32) -> f32 {
  // Abramowitz–Stegun 7.1.26 is too coarse for 1e-5; use a rational approximation
  // (W. J. Cody style) accurate to ~1e-7 in f32.
  let ax = abs(x);
  var r: f32;
  if (ax < 0.5) {
    let t = x * x;
    let num = (((0.1857777061846031526730e-1 * t + 0.3161123743870565596947e1) * t + 0.1138641541510501556495e3) * t + 0.3774852376853020208137e3) * t + 0.3209377589138469472562e4;
    let den = (((t + 0.2360129095234412093499e2) * t + 0.2440246379344441733056e3) * t + 0.1282616526077372275645e4) * t + 0.2844236833439170622273e4;
    return x * num / den;
  } else if (ax < 4.0) {
    let num = (((((((0.5641884969886700891e0 * ax + 0.8883149794388375941e1) * ax + 0.6611919063714162948e2) * ax + 0.2986351381974001311e3) * ax + 0.8819522212417690904e3) * ax + 0.1712047612634070583e4) * ax + 0.2051078377826071465e4) * ax + 0.1230339354797997253e4);
    let den = (((((((ax + 0.1574492611070983473e2) * ax + 0.1176939508913124993e3) * ax + 0.5371811018620098575e3) * ax + 0.1621389574566690189e4) * ax + 0.3290799235733459627e4) * ax + 0.4362619090143247158e4) * ax + 0.3439367674143721637e4) * ax + 0.1230339354803749420e4;
    r = 1.0 - exp(-ax * ax) * num / den;
  } else {
    r = 1.0;
  }
  return select(r, -r, x < 0.0);
}

// 0 relu, 1 silu, 2 gelu, 3 selu, 4 telu, 5 sigmoid, 6 tanh, 7 exp, 8 log, 9 neg,
// 10 sqrt, 11 square, 12 affine (alpha*x+beta), 13 abs, 14 rsqrt
fn sigm(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }
fn tanh_s(x: f32) -> f32 {
  // tanh that does not overflow for large |x|
  let e = exp(-2.0 * abs(x));
  let t = (1.0 - e) / (1.0 + e);
  return select(t, -t, x < 0.0);
}

fn unary_f(op: u32, x: f32) -> f32 {
  switch op {
    case 0u: { return max(x, 0.0); }
    case 1u: { return x * sigm(x); }
    case 2u: { return 0.5 * x * (1.0 + erf_f(x * 0.7071067811865476)); }
    case 3u: { return SELU_SCALE * select(SELU_ALPHA * (exp(x) - 1.0), x, x > 0.0); }
    case 4u: { return x * tanh_s(exp(min(x, 20.0))); }
    case 5u: { return sigm(x); }
    case 6u: { return tanh_s(x); }
    case 7u: { return exp(x); }
    case 8u: { return log(x); }
    case 9u: { return -x; }
    case 10u: { return sqrt(x); }
    case 11u: { return x * x; }
    case 12u: { return p.alpha * x + p.beta; }
    case 13u: { return abs(x); }
    case 14u: { return inverseSqrt(x); }
    default: { return x; }
  }
}

// d f / d x at x
fn unary_df(op: u32, x: f32) -> f32 {
  switch op {
    case 0u: { return select(0.0, 1.0, x > 0.0); }
    case 1u: { let s = sigm(x); return s * (1.0 + x * (1.0 - s)); }
    case 2u: { return 0.5 * (1.0 + erf_f(x * 0.7071067811865476)) + x * 0.3989422804014327 * exp(-0.5 * x * x); }
    case 3u: { return SELU_SCALE * select(SELU_ALPHA * exp(x), 1.0, x > 0.0); }
    case 4u: {
      let ex = exp(min(x, 20.0));
      let t = tanh_s(ex);
      return t + x * ex * (1.0 - t * t);
    }
    case 5u: { let s = sigm(x); return s * (1.0 - s); }
    case 6u: { let t = tanh_s(x); return 1.0 - t * t; }
    case 7u: { return exp(x); }
    case 8u: { return 1.0 / x; }
    case 9u: { return -1.0; }
    case 10u: { return 0.5 / sqrt(x); }
    case 11u: { return 2.0 * x; }
    case 12u: { return p.alpha; }
    case 13u: { return select(select(0.0, -1.0, x < 0.0), 1.0, x > 0.0); }
    case 14u: { return -0.5 * inverseSqrt(x) / x; }
    default: { return 1.0; }
  }
}


#if ${UNARY}
@group(0) @binding(1) var<storage, read> a: array<T>;
@group(0) @binding(2) var<storage, read_write> out: array<T>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg);
  if (i >= p.n) { return; }
  out[i] = T(unary_f(${OP}u, f32(a[i])));
}
#elif ${UNARY_GRAD}
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> dy: array<T>;
@group(0) @binding(3) var<storage, read_write> dx: array<T>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg);
  if (i >= p.n) { return; }
  dx[i] = T(f32(dy[i]) * unary_df(${OP}u, f32(x[i])));
}
#elif ${BINARY}
@group(0) @binding(1) var<storage, read> a: array<T>;
@group(0) @binding(2) var<storage, read> b: array<T>;
@group(0) @binding(3) var<storage, read_write> out: array<T>;

// 0 add, 1 sub, 2 mul, 3 div, 4 max, 5 min, 6 ge (1 or 0)
fn binary_f(x: f32, y: f32) -> f32 {
  switch ${OP}u {
    case 0u: { return x + y; }
    case 1u: { return x - y; }
    case 2u: { return x * y; }
    case 3u: { return x / y; }
    case 4u: { return max(x, y); }
    case 5u: { return min(x, y); }
    case 6u: { return select(0.0, 1.0, x >= y); }
    default: { return x; }
  }
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg);
  if (i >= p.n) { return; }
#if ${CONTIG}
  // Both operands have the output's shape (CONTIG): no index arithmetic.
  out[i] = T(binary_f(f32(a[i]), f32(b[i])));
#else
  var rem = i;
  var ia = 0u;
  var ib = 0u;
  for (var d = i32(p.rank) - 1; d >= 0; d--) {
    let n = dim(u32(d));
    let c = rem % n;
    rem = rem / n;
    ia += c * stra(u32(d));
    ib += c * strb(u32(d));
  }
  out[i] = T(binary_f(f32(a[ia]), f32(b[ib])));
#endif
}
#elif ${FILL}
@group(0) @binding(1) var<storage, read_write> out: array<T>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg);
  if (i >= p.n) { return; }
  out[i] = T(p.alpha);
}
#elif ${REDUCE_TO}
// out (shape dims with 1s where reduced) = sum of `a` (shape dims_a) over the reduced axes.
// sa = strides of a; sb.x.. = sizes of a along each axis (reduced where out dim is 1).
@group(0) @binding(1) var<storage, read> a: array<T>;
@group(0) @binding(2) var<storage, read_write> out: array<T>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg);
  if (i >= p.n) { return; }
  // base offset of this output element in `a`, and the count of reduced elements
  var rem = i;
  var base = 0u;
  var count = 1u;
  for (var d = i32(p.rank) - 1; d >= 0; d--) {
    let n = dim(u32(d));
    let c = rem % n;
    rem = rem / n;
    base += c * stra(u32(d));
    if (n == 1u) { count *= strb(u32(d)); }
  }
  var acc = 0.0;
  for (var j = 0u; j < count; j++) {
    var r = j;
    var off = base;
    for (var d = i32(p.rank) - 1; d >= 0; d--) {
      if (dim(u32(d)) == 1u) {
        let n = strb(u32(d));
        off += (r % n) * stra(u32(d));
        r = r / n;
      }
    }
    acc += f32(a[off]);
  }
  out[i] = T(acc);
}
#endif
