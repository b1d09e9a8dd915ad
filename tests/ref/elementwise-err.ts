// Error bounds of the f32 unary kernels (shaders/elementwise.wgsl unary_f / unary_df) against
// the float64 functions, from the formulas the kernels evaluate (tests/util.ts model): each
// +, −, × one rounding (u relative), ÷ 2.5 ULP, exp 3 + 2|x| ULP of its argument, log 3 ULP
// (absolute 2⁻²¹ on [0.5, 2]), inverseSqrt 2 ULP, sqrt 4.5 ULP; an input error Δ of an inner
// step is carried by the outer step's derivative. Horner's rule with positive coefficients at a
// positive argument is within γ_{2n} relative (Higham §5.1): erf's rational approximations
// (Cody; their own error, ~1e-18, is far below f32's). Second-order terms: factor 1.001, and
// TINY32 absolute for results flushed to zero. Constants written in the WGSL are rounded to f32
// (u relative each). Used by the elementwise, MoE and few-row tests.
import { erf } from './cpu.ts';

const U = 2 ** -24, TINY = 2 ** -126;
const ulps = (k: number) => 2 * k * U;
const gam = (n: number) => (n * U) / (1 - n * U);
/** Relative error of WGSL exp(a) for an exactly given a. */
const expRel = (a: number) => ulps(3 + 2 * Math.abs(a));

/** σ(x) = 1/(1 + exp(−x)) and the absolute error bound of the kernel's σ. */
function sigm(x: number) {
  const s = 1 / (1 + Math.exp(-x));
  // exp's error weighted by its share e/(1+e) = 1 − σ, the sum's rounding, the division.
  return { s, err: s * (expRel(x) * (1 - s) + U + ulps(2.5)) };
}

/** tanh_s(x) = (1 − e)/(1 + e), e = exp(−2|x|) (sign restored exactly), with its error bound
 *  for an input carrying the absolute error dx. */
function tanhS(x: number, dx = 0) {
  const t = Math.tanh(x), e = Math.exp(-2 * Math.abs(x));
  // δe = e·expRel (−2|x| is exact); ∂t/∂e = −2/(1+e)², plus the roundings of 1 − e, 1 + e, ÷.
  const err = (2 * e * expRel(2 * x)) / (1 + e) ** 2 + U * (1 - e) / (1 + e) + Math.abs(t) * (U + ulps(2.5)) + (1 - t * t) * dx;
  return { t, err };
}

/** erf_f(z) error bound (the kernel's branches: |z| < 0.5, < 4, else ±1). */
function erfErr(z: number): number {
  const az = Math.abs(z), r = erf(az);
  if (az < 0.5) return r * (U + gam(9) + gam(9) + ulps(2.5) + U);   // z² (u: a term of ≤ 0.1 share), num, den, ÷, ×z
  const q = 1 - r;   // erfc = exp(−z²)·num/den
  if (az < 4) return q * (U * az * az + expRel(az * az) + gam(16) + gam(16) + U + ulps(2.5)) + U * r;
  return q;   // returns ±1: erfc(4) ≈ 1.5e-8
}

/** Absolute error bound of the kernel's f(x) (unary_f). */
export function unaryErr(op: string, x: number): number {
  let e: number;
  switch (op) {
    case 'relu': case 'neg': case 'abs': return 0;
    case 'square': e = U * x * x; break;
    case 'exp': e = expRel(x) * Math.exp(x); break;
    case 'log': e = x >= 0.5 && x <= 2 ? 2 ** -21 : ulps(3) * Math.abs(Math.log(x)); break;
    case 'sqrt': e = ulps(4.5) * Math.sqrt(x); break;
    case 'rsqrt': e = ulps(2) / Math.sqrt(x); break;
    case 'sigmoid': e = sigm(x).err; break;
    case 'silu': { const { s, err } = sigm(x); e = Math.abs(x) * err + U * Math.abs(x * s); break; }
    case 'tanh': e = tanhS(x).err; break;
    case 'selu': {
      const c = 1.0507009873554805;
      // The constants are rounded to f32 too (u each).
      e = x > 0 ? gam(2) * c * x : c * 1.6732632423543772 * (Math.exp(x) * expRel(x) + 5 * U * (1 - Math.exp(x)));
      break;
    }
    case 'telu': {
      const ex = Math.exp(Math.min(x, 20));
      const { t, err } = tanhS(ex, ex * expRel(x));
      e = Math.abs(x) * err + U * Math.abs(x * t);
      break;
    }
    case 'gelu': {
      // 0.5·x·(1 + erf(z)), z = x·(1/√2) rounded: erf'(z)·u|z| more.
      const z = x * Math.SQRT1_2, ez = erf(z);
      const dErf = erfErr(z) + (2 / Math.sqrt(Math.PI)) * Math.exp(-z * z) * (U * Math.abs(z) + 2 * U * Math.abs(z));
      e = 0.5 * Math.abs(x) * (dErf + U * (1 + ez)) + U * 0.5 * Math.abs(x) * (1 + ez) * 2;
      break;
    }
    default: throw new Error(`unaryErr: no error model for ${op}`);
  }
  return 1.001 * e + TINY;
}

/** Absolute error bound of the kernel's derivative f′(x) (unary_df). */
export function unaryGradErr(op: string, x: number): number {
  let e: number;
  switch (op) {
    case 'relu': case 'neg': case 'abs': case 'square': return 0;   // exact (2x: exact scaling)
    case 'exp': e = expRel(x) * Math.exp(x); break;
    case 'log': e = ulps(2.5) / Math.abs(x); break;
    case 'sqrt': e = (ulps(4.5) + ulps(2.5)) * 0.5 / Math.sqrt(x); break;
    case 'rsqrt': e = (ulps(2) + ulps(2.5)) * 0.5 * x ** -1.5; break;
    case 'sigmoid': {
      const { s, err } = sigm(x);
      e = err * (1 - s) + s * (err + U * (1 - s)) + U * s * (1 - s);
      break;
    }
    case 'tanh': { const { t, err } = tanhS(x); e = 2 * Math.abs(t) * err + U * t * t + U * (1 - t * t); break; }
    case 'silu': {
      // s·(1 + x·(1 − s))
      const { s, err } = sigm(x);
      const a = 1 - s, b = x * a, c = 1 + b;
      const eB = Math.abs(x) * (err + U * a) + U * Math.abs(b);
      e = err * Math.abs(c) + s * (eB + U * Math.abs(c)) + U * Math.abs(s * c);
      break;
    }
    case 'selu': e = 1.0507009873554805 * (x > 0 ? U : 1.6732632423543772 * Math.exp(x) * (expRel(x) + 4 * U)); break;   // rounded constants
    case 'gelu': {
      // 0.5·(1 + erf(x·0.7071)) + x·0.39894·exp(−0.5·x·x)
      const z = x * Math.SQRT1_2, ez = erf(z);
      const t1 = 0.5 * (1 + ez), eT1 = 0.5 * (erfErr(z) + (2 / Math.sqrt(Math.PI)) * Math.exp(-z * z) * 2 * U * Math.abs(z) + U * (1 + ez));
      const g = Math.exp(-0.5 * x * x), t2 = Math.abs(x) * 0.3989422804014327 * g;
      const eT2 = t2 * (2 * U * 0.5 * x * x + expRel(0.5 * x * x) + 4 * U);   // (and the rounded constant)
      e = eT1 + eT2 + U * (t1 + t2);
      break;
    }
    case 'telu': {
      // t + x·ex·(1 − t²), ex = exp(min(x, 20)), t = tanh_s(ex)
      const ex = Math.exp(Math.min(x, 20)), dEx = ex * expRel(x);
      const { t, err } = tanhS(ex, dEx);
      const w = 1 - t * t, eW = 2 * Math.abs(t) * err + U * t * t + U * w;
      const xe = Math.abs(x) * ex, eXe = Math.abs(x) * dEx + U * xe;
      e = err + eXe * w + xe * eW + U * xe * w + U * (Math.abs(t) + xe * w);
      break;
    }
    default: throw new Error(`unaryGradErr: no error model for ${op}`);
  }
  return 1.001 * e + TINY;
}

/**
 * A binary op over broadcast operands (index maps ia, ib: output element → operand element) in
 * float64, its gradients (Σ over the broadcast axes of G·∂f), and per-element error bounds of the
 * f32 kernels: +, −, × one rounding, ÷ 2.5 ULP, max/min exact; backward (src/graph/ops/
 * elementwise.ts) mul: G·b one rounding; div: G/b (2.5 ULP) and −(G·y)/b (y's 2.5 ULP, ×, ÷);
 * max/min: G·mask and G − G·mask, exact; then the sum over the broadcast axes, γ_n·Σ|terms|.
 */
export function binaryRef(op: string, A: ArrayLike<number>, B: ArrayLike<number>, G: ArrayLike<number>, ia: (i: number) => number, ib: (i: number) => number) {
  const n = G.length;
  const y = new Float64Array(n), yB = new Float64Array(n);
  const ga = new Float64Array(A.length), gb = new Float64Array(B.length);
  const gaE = new Float64Array(A.length), gbE = new Float64Array(B.length), gaM = new Float64Array(A.length), gbM = new Float64Array(B.length);
  const cntA = new Float64Array(A.length), cntB = new Float64Array(B.length);
  for (let i = 0; i < n; i++) {
    const a = A[ia(i)], b = B[ib(i)], g = G[i];
    let v: number, da: number, db: number, ea = 0, eb = 0, ey: number;
    switch (op) {
      case 'add': v = a + b; da = g; db = g; ey = U * Math.abs(v); break;
      case 'sub': v = a - b; da = g; db = -g; ey = U * Math.abs(v); break;
      case 'mul': v = a * b; da = g * b; db = g * a; ey = U * Math.abs(v); ea = U * Math.abs(da); eb = U * Math.abs(db); break;
      case 'div': v = a / b; da = g / b; db = -g * a / (b * b); ey = ulps(2.5) * Math.abs(v); ea = ulps(2.5) * Math.abs(da); eb = (ulps(5) + U) * Math.abs(db); break;
      case 'maximum': case 'minimum': {
        const pickA = op === 'maximum' ? a >= b : b >= a;   // ties to a
        v = pickA ? a : b; da = pickA ? g : 0; db = pickA ? 0 : g; ey = 0; break;
      }
      default: throw new Error(`binaryRef: ${op}`);
    }
    y[i] = v; yB[i] = 1.001 * ey + TINY;
    ga[ia(i)] += da; gaE[ia(i)] += ea; gaM[ia(i)] += Math.abs(da); cntA[ia(i)]++;
    gb[ib(i)] += db; gbE[ib(i)] += eb; gbM[ib(i)] += Math.abs(db); cntB[ib(i)]++;
  }
  const fin = (e: Float64Array, m: Float64Array, c: Float64Array) => e.map((ei, k) => 1.001 * (ei + gam(Math.max(c[k] - 1, 0)) * m[k]) + TINY * c[k]);
  return { y, yB, ga, gaB: fin(gaE, gaM, cntA), gb, gbB: fin(gbE, gbM, cntB) };
}
