// f16 kernel variants (T = f16 specialisation of every float kernel) against the float64
// references on inputs rounded to f16.
//
// Error model: inputs are f16 values (the reference sees exactly them); kernels load f16,
// compute and accumulate in f32, and convert each stored result to f16 once (f16Conv: one f16
// ULP, ≤ 2^-10 relative, 2^-24 absolute among the subnormals). Per-element checks take the f32
// kernel's bound from the error model of its f32 test (tests/ref/*) and add f16Conv for the
// output; a result that passes through stored f16 intermediates (backward chains, composite
// ops) gets f16Conv at each, carried through the later steps by the same model (the `store`
// argument of attentionBounds and moeBounds). The matmul, conv and rowsLinear checks measure
// the error norm-wise against the magnitude Σ|terms| of each value (relTo).
import { beforeAll, describe, expect, it } from 'vitest';
import { fromData, halfToFloat, init, read, realize, runtime, toHalfBits } from '../src/graph/runtime.ts';
import type { Tensor } from '../src/graph/tensor.ts';
import { add, mul, sumTo, unary, type UnaryOp } from '../src/graph/ops/elementwise.ts';
import { concat, permute, slice } from '../src/graph/ops/shape.ts';
import { matmul } from '../src/graph/ops/matmul.ts';
import { conv2d } from '../src/graph/ops/conv.ts';
import { expertsForRows, rowsLinear } from '../src/graph/ops/matvec.ts';
import { attention } from '../src/graph/ops/attention.ts';
import { rmsNorm } from '../src/graph/ops/norm.ts';
import { logSoftmax, softmax } from '../src/graph/ops/softmax.ts';
import { moeExperts, stackExpertWeights, topkGate } from '../src/graph/ops/moe.ts';
import { embedding } from '../src/graph/ops/embedding.ts';
import { batchNorm2d } from '../src/graph/ops/batchnorm.ts';
import { adaptiveAvgPool2d, maxPool2d } from '../src/graph/ops/pool.ts';
import { resizeBilinear } from '../src/graph/ops/resize.ts';
import { max as maxAxis, sum as sumAxis } from '../src/graph/ops/reduce.ts';
import { crossEntropy } from '../src/graph/ops/loss.ts';
import { rotary } from '../src/graph/ops/rotary.ts';
import { dropout } from '../src/graph/ops/random.ts';
import { cast } from '../src/graph/ops/cast.ts';
import { grad, param } from '../src/graph/autograd.ts';
import { setKernelOverrides } from '../src/graph/kernels/overrides.ts';
import { withTrial } from '../src/graph/kernels/catalogue.ts';
import { convDwFamily, convFamily } from '../src/graph/kernels/conv.ts';
import { normFamily } from '../src/graph/kernels/norm.ts';
import { softmaxFamily } from '../src/graph/kernels/softmax.ts';
import { lossFamily } from '../src/graph/kernels/loss.ts';
import { type RowConfig, rowConfigKey } from '../src/graph/kernels/rows.ts';
import { profileFrom } from '../src/gpu/profile.ts';
import { expectWithin, relL2, rng, sumBound } from './util.ts';
import { binaryRef, unaryErr, unaryGradErr } from './ref/elementwise-err.ts';
import { actGrad } from './ref/moe.ts';
import { act, matmulRef } from './ref/cpu.ts';
import { adaptiveAvgPoolBound, adaptiveAvgPoolRef, batchNormBounds, batchNormRef, conv2dRef, type ConvGeom, maxPoolRef, resizeBilinearRef, resizeBounds } from './ref/vision.ts';
import { attentionBounds, attentionGradRef, attentionRef } from './ref/attention.ts';
import {
  crossEntropyBackRef, crossEntropyBounds, crossEntropyRef, embeddingRef, logSoftmaxBounds, logSoftmaxRef, rmsNormBounds, rmsNormRef,
  rotaryBound, rotaryRef, softmaxBounds, softmaxRef,
} from './ref/nn.ts';
import { gateBounds, gateRef, moeBounds, moeRef, randomExperts, randomRoute } from './ref/moe.ts';

export const U16 = 2 ** -11;

beforeAll(async () => {
  await init();
});

const R = rng('f16');

/** Rounds each value to the nearest f16. */
export function toF16(a: ArrayLike<number>): Float64Array {
  return Float64Array.from(a as ArrayLike<number>, (v) => halfToFloat(toHalfBits(v)));
}
/** An f16 tensor holding `a` (already f16 values). */
export function h(a: Float64Array, shape: number[]): Tensor {
  return fromData(a, shape, 'f16');
}
/** Bound after the f16 conversion of an f32 result within `e` of `ref`: WGSL lets a conversion
 *  to a narrower float return either neighbour, one f16 ULP (≤ 2·U16 relative; 2⁻²⁴ for the
 *  f16 subnormals below 2⁻¹⁴). */
export const f16Conv = (ref: number, e: number) => e + 2 * U16 * (Math.abs(ref) + e) + 2 ** -24;
/** f16Conv per element: the bound of an f16 output whose f32 value is within `err` of `ref`. */
const f16Out = (ref: ArrayLike<number>, err: ArrayLike<number>) => Float64Array.from(ref, (r, i) => f16Conv(r, err[i]));
/** ‖got − ref‖ / ‖mag‖: error against the magnitude Σ|terms| of each reference value. */
export function relTo(got: ArrayLike<number>, ref: ArrayLike<number>, mag: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < ref.length; i++) {
    num += (got[i] - ref[i]) ** 2;
    den += mag[i] ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1e-300));
}

describe('f16 elementwise', () => {
  const REF: Record<string, (x: number) => number> = { ...act, exp: Math.exp, square: (x) => x * x, sqrt: Math.sqrt };
  const DREF: Record<string, (x: number) => number> = {
    ...actGrad, sigmoid: (x) => { const e = 1 / (1 + Math.exp(-x)); return e * (1 - e); }, tanh: (x) => 1 - Math.tanh(x) ** 2,
    exp: Math.exp, square: (x) => 2 * x, sqrt: (x) => 0.5 / Math.sqrt(x),
  };
  for (const op of ['relu', 'silu', 'gelu', 'selu', 'telu', 'sigmoid', 'tanh', 'exp', 'square', 'sqrt'] as UnaryOp[]) {
    it(`${op}: forward and backward (each one rounding of an f32 value)`, async () => {
      const n = R.int(1, 3000);
      const X = toF16(op === 'sqrt' ? R.uniform(n, 0.2, 4) : R.uniform(n, -4, 4));
      const G = toF16(R.randn(n));
      const x = param(h(X, [n]));
      const y = unary(op, x);
      const [gx] = grad(y, [x], h(G, [n]));
      await realize([y, gx!]);
      expect(y.dtype).toBe('f16');
      const f = REF[op], df = DREF[op];
      // The f32 formula's error (tests/ref/elementwise-err.ts), then the f16 conversion of the
      // result (F16_CONV: one f16 ULP).
      const yRef = X.map(f);
      expectWithin(await read(y), yRef, X.map((v, i) => f16Conv(yRef[i], unaryErr(op, v))), `f16 ${op} forward`);
      const gRef = X.map((v, i) => G[i] * df(v));
      expectWithin(await read(gx!), gRef, X.map((v, i) => f16Conv(gRef[i], Math.abs(G[i]) * unaryGradErr(op, v) + 2 ** -24 * Math.abs(gRef[i]))), `f16 ${op} backward`);
      // The float64 derivative against central differences (the inputs are exact), away from
      // relu's and selu's kink at 0, where a difference straddling it is no derivative (an
      // input within 1e-6 of 0 — f16 holds values down to 6e-8 — failed this: sweep seed 1514760282).
      const smooth = (v: number) => !(op === 'relu' || op === 'selu') || Math.abs(v) > 2e-6;
      const at = [...X.keys()].filter((i) => smooth(X[i]));
      expect(relL2(at.map((i) => gRef[i]), at.map((i) => G[i] * (f(X[i] + 1e-6) - f(X[i] - 1e-6)) / 2e-6))).toBeLessThan(1e-6);
    });
  }

  it('binary ops broadcast, and sumTo accumulates in f32 (one rounding of the sum)', async () => {
    const [B, N] = [R.int(2, 40), R.int(2, 300)];
    const A = toF16(R.randn(B * N)), Bv = toF16(R.randn(N));
    const a = h(A, [B, N]), b = h(Bv, [N]);
    const s = add(a, b), m = mul(a, b), col = sumTo(a, [1, N]);
    await realize([s, m, col]);
    // The f32 op (tests/ref/elementwise-err.ts binaryRef: one rounding; a + b of two f16 values
    // need not fit f32 when their exponents are far apart), then the f16 conversion.
    for (const [op, t] of [['add', s], ['mul', m]] as const) {
      const { y, yB } = binaryRef(op, A, Bv, new Float64Array(B * N), (i) => i, (i) => i % N);
      expectWithin(await read(t), y, f16Out(y, yB), `f16 ${op}`);
    }
    const ref = new Float64Array(N), mag = new Float64Array(N);
    for (let i = 0; i < B * N; i++) {
      ref[i % N] += A[i];
      mag[i % N] += Math.abs(A[i]);
    }
    // f32 accumulation of B terms: γ_{B−1}·Σ|a|; then the f16 conversion.
    expectWithin(await read(col), ref, f16Out(ref, sumBound(mag, B - 1)), 'f16 sumTo');
  });
});

describe('f16 copies', () => {
  it('permute, slice, concat are exact', async () => {
    const [a, b, c] = [R.int(1, 7), R.int(1, 9), R.int(1, 11)];
    const X = toF16(R.randn(a * b * c)), Y = toF16(R.randn(a * b * c));
    const x = h(X, [a, b, c]), y = h(Y, [a, b, c]);
    const p = permute(x, [2, 0, 1]), s = slice(x, 2, 0, Math.max(1, c >> 1)), cat = concat([x, y], 1);
    await realize([p, s, cat]);
    const P = await read(p), Cc = await read(cat);
    for (let i = 0; i < a; i++) for (let j = 0; j < b; j++) for (let k = 0; k < c; k++) {
      expect(P[(k * a + i) * b + j]).toBe(X[(i * b + j) * c + k]);
      expect(Cc[(i * 2 * b + j) * c + k]).toBe(X[(i * b + j) * c + k]);
      expect(Cc[(i * 2 * b + b + j) * c + k]).toBe(Y[(i * b + j) * c + k]);
    }
    expect(s.dtype).toBe('f16');
  });
});

const abs = (a: Float64Array) => a.map(Math.abs);
const U32 = 2 ** -24;

describe('f16 matmul (accumulated in f32; bound: u16 + K·u32 relative to Σ|a||b|)', () => {
  for (const kind of ['register', 'tiled'] as const) {
    it(`${kind}: all transposes, with bias, vec4 and scalar paths`, async () => {
      setKernelOverrides({ matmul: kind });
      try {
        for (const [tA, tB] of [[false, false], [true, false], [false, true], [true, true]]) {
          // Multiples of 4 take the vec4 load paths; odd sizes the scalar ones.
          const M = R.int(1, 3) * 4 + (tA ? 0 : R.int(0, 1)), N = R.int(1, 20) * 4 + (tB ? R.int(0, 3) : 0), K = R.int(1, 40) * 4;
          const A = toF16(R.randn(M * K)), B = toF16(R.randn(K * N)), bias = toF16(R.randn(N));
          const c = matmul(h(A, tA ? [K, M] : [M, K]), h(B, tB ? [N, K] : [K, N]), { transA: tA, transB: tB, bias: h(bias, [N]) });
          await realize([c]);
          expect(c.dtype).toBe('f16');
          const tr = (X: Float64Array, r: number, cc: number, t: boolean) => (t ? Float64Array.from({ length: r * cc }, (_, i) => X[(i % cc) * r + Math.floor(i / cc)]) : X);
          const a2 = tr(A, M, K, tA), b2 = tr(B, K, N, tB);
          const ref = matmulRef(a2, b2, M, N, K).map((v, i) => v + bias[i % N]);
          const mag = matmulRef(abs(a2), abs(b2), M, N, K).map((v, i) => v + Math.abs(bias[i % N]));
          expect(relTo(await read(c), ref, mag)).toBeLessThan(U16 + (K + 1) * U32);
        }
      } finally {
        setKernelOverrides({ matmul: undefined });
      }
    });
  }

  it('backward: dA, dB (each one matmul of f16 operands, one rounding)', async () => {
    const [M, N, K] = [R.int(2, 30), R.int(2, 30), R.int(2, 30)];
    const A = toF16(R.randn(M * K)), B = toF16(R.randn(K * N)), G = toF16(R.randn(M * N));
    const a = param(h(A, [M, K])), b = param(h(B, [K, N]));
    const [ga, gb] = grad(matmul(a, b), [a, b], h(G, [M, N]));
    await realize([ga!, gb!]);
    const Bt = Float64Array.from({ length: N * K }, (_, i) => B[(i % K) * N + Math.floor(i / K)]);
    const At = Float64Array.from({ length: K * M }, (_, i) => A[(i % M) * K + Math.floor(i / M)]);
    expect(relTo(await read(ga!), matmulRef(G, Bt, M, K, N), matmulRef(abs(G), abs(Bt), M, K, N))).toBeLessThan(U16 + N * U32);
    expect(relTo(await read(gb!), matmulRef(At, G, K, N, M), matmulRef(abs(At), abs(G), K, N, M))).toBeLessThan(U16 + M * U32);
  });
});

describe('f16 conv2d (f32 accumulation; the channels-last and weight copies are f16 too, exact)', () => {
  for (const kind of ['register', 'gemm4'] as const) {
    it(`${kind}: forward with bias, strides and padding`, async () => {
      setKernelOverrides({ conv: kind });
      try {
        const g: ConvGeom = { N: R.int(1, 2), C: R.int(1, 9), H: R.int(3, 11), W: R.int(3, 11), O: R.int(1, 13), K: [1, 3][R.int(0, 1)], stride: R.int(1, 2), pad: R.int(0, 1) };
        const X = toF16(R.randn(g.N * g.C * g.H * g.W)), Wt = toF16(R.randn(g.O * g.C * g.K * g.K)), bias = toF16(R.randn(g.O));
        const y = conv2d(h(X, [g.N, g.C, g.H, g.W]), h(Wt, [g.O, g.C, g.K, g.K]), h(bias, [g.O]), { stride: g.stride, padding: g.pad });
        await realize([y]);
        const ref = conv2dRef(X, Wt, bias, g), mag = conv2dRef(abs(X), abs(Wt), abs(bias), g);
        expect(relTo(await read(y), ref, mag)).toBeLessThan(U16 + (g.C * g.K * g.K + 1) * U32);
      } finally {
        setKernelOverrides({ conv: undefined });
      }
    });
  }

  it('matmul kind (1×1 stride-1 unpadded, no bias: weight × image on the register matmul kernel)', async () => {
    const g: ConvGeom = { N: R.int(1, 2), C: R.int(1, 40), H: R.int(3, 13), W: R.int(3, 13), O: 4 * R.int(1, 12), K: 1, stride: 1, pad: 0 };
    const c = convFamily.candidates({ pass: 'fwd', N: 1, C: 64, H: 16, W: 16, O: 256, K: 1, stride: 1, pad: 0, bias: false, M: 256, cols: 256, CR: 64 }, runtime().profile.unrolledKernels ? runtime().profile : { ...runtime().profile, software: true, unrolledKernels: true })
      .find((x) => x.kind === 'matmul')!;
    const X = toF16(R.randn(g.N * g.C * g.H * g.W)), Wt = toF16(R.randn(g.O * g.C)), zero = new Float64Array(g.O);
    const y = withTrial('conv', c, () => conv2d(h(X, [g.N, g.C, g.H, g.W]), h(Wt, [g.O, g.C, 1, 1]), null, {}));
    await realize([y]);
    expect(y.dtype).toBe('f16');
    const ref = conv2dRef(X, Wt, zero, g), mag = conv2dRef(abs(X), abs(Wt), zero, g);
    // f32 sums of C products of f16 values, then one f16 rounding of the result.
    expect(relTo(await read(y), ref, mag)).toBeLessThan(U16 + g.C * U32);
  });

  it('matmul kind backward: dX (the conv of dY with the flipped weight) and dW (dYᵀ × patch rows, one chunk) from f16 operands', async () => {
    const g: ConvGeom = { N: R.int(1, 2), C: 4 * R.int(1, 6), H: R.int(3, 10), W: R.int(3, 10), O: 4 * R.int(1, 6), K: 3, stride: 1, pad: 1 };
    const prof = runtime().profile.unrolledKernels ? runtime().profile : { ...runtime().profile, software: true, unrolledKernels: true };
    const c = convFamily.candidates({ pass: 'fwd', N: 1, C: 64, H: 16, W: 16, O: 256, K: 3, stride: 1, pad: 1, bias: false, M: 256, cols: 256, CR: 64 }, prof).find((x) => x.kind === 'matmul')!;
    const cdw = convDwFamily.candidates({ N: 1, C: 64, H: 16, W: 16, O: 256, K: 3, stride: 1, pad: 1 }, prof).find((x) => x.kind === 'matmul')!;
    const X = toF16(R.randn(g.N * g.C * g.H * g.W)), Wt = toF16(R.randn(g.O * g.C * 9)), G = toF16(R.randn(g.N * g.O * g.H * g.W));
    const x = param(h(X, [g.N, g.C, g.H, g.W])), w = param(h(Wt, [g.O, g.C, 3, 3]));
    const y = conv2d(x, w, null, { padding: 1 });
    const [gx] = withTrial('conv', c, () => grad(y, [x], h(G, [g.N, g.O, g.H, g.W])));
    const [gw] = withTrial('conv_dw', cdw, () => grad(y, [w], h(G, [g.N, g.O, g.H, g.W])));
    await realize([gx!, gw!]);
    expect(gx!.dtype).toBe('f16');
    const { conv2dBackwardRef } = await import('./ref/vision.ts');
    const ref = conv2dBackwardRef(X, Wt, G, g), mag = conv2dBackwardRef(abs(X), abs(Wt), abs(G), g);
    // f32 sums (O·9 terms for dX, N·H·W for dW) of products of f16 values, one f16 rounding.
    expect(relTo(await read(gx!), ref.dx, mag.dx)).toBeLessThan(U16 + g.O * 9 * U32);
    expect(relTo(await read(gw!), ref.dw, mag.dw)).toBeLessThan(U16 + g.N * g.H * g.W * U32);
  });

  it('backward: dx, dw, db against float64 finite-difference-free analytic sums of f16 inputs', async () => {
    const g: ConvGeom = { N: 2, C: R.int(1, 6), H: R.int(3, 8), W: R.int(3, 8), O: R.int(1, 6), K: 3, stride: 1, pad: 1 };
    const X = toF16(R.randn(g.N * g.C * g.H * g.W)), Wt = toF16(R.randn(g.O * g.C * 9)), G = toF16(R.randn(g.N * g.O * g.H * g.W));
    const x = param(h(X, [g.N, g.C, g.H, g.W])), w = param(h(Wt, [g.O, g.C, 3, 3])), b = param(h(new Float64Array(g.O), [g.O]));
    const [gx, gw, gb] = grad(conv2d(x, w, b, { padding: 1 }), [x, w, b], h(G, [g.N, g.O, g.H, g.W]));
    await realize([gx!, gw!, gb!]);
    // d/dθ Σ G·conv(x, w): linear in G, so the reference is the conv backward of G itself; the
    // magnitude bound is the same backward of |G|, |x|, |w|.
    const { conv2dBackwardRef } = await import('./ref/vision.ts');
    const ref = conv2dBackwardRef(X, Wt, G, g), mag = conv2dBackwardRef(abs(X), abs(Wt), abs(G), g);
    const P = g.N * g.H * g.W;
    expect(relTo(await read(gx!), ref.dx, mag.dx)).toBeLessThan(U16 + g.O * 9 * U32);
    expect(relTo(await read(gw!), ref.dw, mag.dw)).toBeLessThan(U16 + P * U32);
    expect(relTo(await read(gb!), ref.db, mag.db)).toBeLessThan(U16 + P * U32);
  });
});

describe('f16 decoding products (matvec)', () => {
  for (const lanes of [8, 64] as const) {
    it(`rowsLinear (${lanes} lanes), vec4 and scalar K: u16 + K·u32 on Σ|x||w|`, async () => {
      setKernelOverrides({ matvecLanes: lanes });
      try {
        for (const K of [R.int(1, 40) * 4, R.int(1, 60) * 4 + 1]) {
          const [B, N] = [R.int(1, 6), R.int(1, 50)];
          const X = toF16(R.randn(B * K)), W = toF16(R.randn(N * K)), bias = toF16(R.randn(N));
          const y = rowsLinear(h(X, [B, K]), h(W, [N, K]), h(bias, [N]));
          await realize([y]);
          const Wt = Float64Array.from({ length: K * N }, (_, i) => W[(i % N) * K + Math.floor(i / N)]);
          const ref = matmulRef(X, Wt, B, N, K).map((v, i) => v + bias[i % N]);
          const mag = matmulRef(abs(X), abs(Wt), B, N, K).map((v, i) => v + Math.abs(bias[i % N]));
          expect(relTo(await read(y), ref, mag)).toBeLessThan(U16 + (K + 1) * U32);
        }
      } finally {
        setKernelOverrides({ matvecLanes: undefined });
      }
    });
  }

  it('expertsForRows (weighted): h1, h3, act(h1)·h3, expert outputs and the sum are stored f16', async () => {
    const [B, d, F, E, k] = [R.int(1, 5), 4 * R.int(2, 8), 4 * R.int(2, 8), 4, 2];
    const experts = randomExperts(R, E, d, F).map((e) => ({ w1: toF16(e.w1), w3: toF16(e.w3), w2: toF16(e.w2) }));
    const { idx, w } = randomRoute(R, B, k, [0, 1, 2, 3]);
    const X = toF16(R.randn(B * d)), Wr = toF16(w);
    const st = stackExpertWeights(experts.map((e) => ({ w1: h(e.w1, [F, d]), w3: h(e.w3, [F, d]), w2: h(e.w2, [d, F]) })));
    const y = expertsForRows(h(X, [B, d]), fromData(idx, [B, k], 'i32'), h(Wr, [B, k]), st, 'silu', 'weighted');
    await realize([y]);
    const ref = moeRef(X, idx, Wr, experts, B, d, F, k, 'silu', 'weighted').out;
    // The f32 arithmetic (tests/ref/moe.ts moeBounds) with h1, h3, silu(h1), h and each expert
    // output stored f16 (store: f16Conv, carried through the later products), then the sum's
    // own f16 conversion.
    const bnd = moeBounds(X, idx, Wr, experts, B, d, F, k, 'silu', 'weighted', undefined, unaryErr, unaryGradErr, undefined, f16Conv);
    expectWithin(await read(y), ref, f16Out(ref, bnd.out), 'f16 expertsForRows');
  });
});

describe('f16 attention (scores, softmax statistics and P·V in f32; stats stored f32)', () => {
  const cases = [
    { name: 'register (CPU) kernels', kernel: 'register' as const, Sq: 0 },
    { name: 'tiled (GPU) kernels', kernel: 'tiled' as const, Sq: 0 },
    { name: 'ONE_Q (a decoding step)', kernel: 'auto' as const, Sq: 1 },
  ];
  for (const c of cases) {
    it(`${c.name}: out, probs (one rounding each), causal mask`, async () => {
      setKernelOverrides({ attention: c.kernel === 'auto' ? undefined : c.kernel });
      try {
        const [b, H, d, dv] = [R.int(1, 2), R.int(1, 3), R.int(1, 6) * 4, R.int(1, 6) * 4];
        const Sq = c.Sq || R.int(2, 20), Sk = c.Sq ? R.int(1, 40) : Sq;
        const dm = { b, H, Sq, Sk, d, dv };
        const Q = toF16(R.randn(b * H * Sq * d)), K = toF16(R.randn(b * H * Sk * d)), V = toF16(R.randn(b * H * Sk * dv));
        const M = new Float64Array(b * Sq * Sk).map((_, i) => (c.Sq ? 1 : (i % Sk) <= Math.floor(i / Sk) % Sq ? 1 : 0));
        const scale = 1 / Math.sqrt(d);
        const { out, probs } = attention(h(Q, [b, H, Sq, d]), h(K, [b, H, Sk, d]), h(V, [b, H, Sk, dv]), { scale, mask: fromData(M, [b, Sq, Sk]), keepProbs: true });
        await realize([out, probs!]);
        const ref = attentionRef(Q, K, V, dm, scale, M);
        expect(out.dtype).toBe('f16');
        // f32 arithmetic on the f16 inputs (tests/ref/attention.ts attentionBounds), then the f16
        // conversion of each result (f16Conv).
        const bnd = attentionBounds(Q, K, V, dm, scale, M);
        expectWithin(await read(out), ref.out, f16Out(ref.out, bnd.out), `f16 attention ${c.name} out`);
        expectWithin(await read(probs!), ref.probs, f16Out(ref.probs, bnd.probs), `f16 attention ${c.name} probs`);
      } finally {
        setKernelOverrides({ attention: undefined });
      }
    });
  }

  it('backward: dq, dk, dv through the stored f16 P, dP and dS', async () => {
    const [b, H, S, d] = [1, 2, R.int(2, 12), 8];
    const dm = { b, H, Sq: S, Sk: S, d, dv: d }, scale = Math.fround(0.3);
    const Q = toF16(R.randn(b * H * S * d)), K = toF16(R.randn(b * H * S * d)), V = toF16(R.randn(b * H * S * d)), G = toF16(R.randn(b * H * S * d));
    const mk = (a: Float64Array) => param(h(a, [b, H, S, d]));
    const [q, k, v] = [mk(Q), mk(K), mk(V)];
    const gs = grad(attention(q, k, v, { scale }).out, [q, k, v], h(G, [b, H, S, d]));
    await realize(gs as Tensor[]);
    // The f32 model (tests/ref/attention.ts attentionBounds) with P (re-materialised), dP = dO·Vᵀ
    // and dS stored f16 (store: f16Conv), then each gradient's own f16 conversion.
    const ref = attentionGradRef(Q, K, V, dm, scale, G);
    const bnd = attentionBounds(Q, K, V, dm, scale, undefined, G, undefined, f16Conv);
    for (const [i, name] of [[0, 'dq'], [1, 'dk'], [2, 'dv']] as const)
      expectWithin(await read(gs[i]!), ref[name], f16Out(ref[name], bnd[name]!), `f16 attention backward ${name}`);
  });
});

describe('f16 norms, softmax, loss, embedding, rotary, reductions (f32 statistics inside)', () => {
  it('rmsNorm forward (one rounding; rstd f32)', async () => {
    const [rows, D] = [R.int(1, 20), R.int(1, 300)];
    const X = toF16(R.randn(rows * D)), W = toF16(R.randn(D));
    const y = rmsNorm(h(X, [rows, D]), h(W, [D]), 1e-6);
    await realize([y]);
    // f32 statistics and product (tests/ref/nn.ts rmsNormBounds), then the f16 conversion.
    const ref = rmsNormRef(X, W, D, 1e-6);
    expectWithin(await read(y), ref, f16Out(ref, rmsNormBounds(X, W, new Float64Array(rows * D), D, 1e-6).y), 'f16 rmsNorm');
  });

  it('softmax with mask and logSoftmax (one rounding)', async () => {
    const [rows, K] = [R.int(1, 20), R.int(2, 600)];
    const X = toF16(R.randn(rows * K, 3));
    const s = softmax(h(X, [rows, K])), ls = logSoftmax(h(X, [rows, K]));
    await realize([s, ls]);
    // f32 arithmetic (tests/ref/nn.ts softmaxBounds, logSoftmaxBounds), then the f16 conversion.
    const sRef = softmaxRef(X, K), lRef = logSoftmaxRef(X, K), none = new Float64Array(rows * K);
    expectWithin(await read(s), sRef, f16Out(sRef, softmaxBounds(X, none, K, undefined, sRef).y), 'f16 softmax');
    expectWithin(await read(ls), lRef, f16Out(lRef, logSoftmaxBounds(X, none, K, lRef).y), 'f16 logSoftmax');
  });

  it('crossEntropy: f32 loss from f16 logits, f16 gradient (one rounding)', async () => {
    const [N, V] = [R.int(1, 20), R.int(2, 300)];
    const X = toF16(R.randn(N * V, 2)), L = Int32Array.from({ length: N }, () => R.int(0, V - 1));
    const x = param(h(X, [N, V]));
    const loss = crossEntropy(x, fromData(L, [N], 'i32'), -100);
    const [gx] = grad(loss, [x]);
    await realize([loss, gx!]);
    expect(loss.dtype).toBe('f32');
    // f32 arithmetic (tests/ref/nn.ts crossEntropyBounds); the loss stays f32, the gradient is
    // converted to f16.
    const bnd = crossEntropyBounds(X, L, V, -100, 1), gRef = crossEntropyBackRef(X, L, V, -100);
    expectWithin(await read(loss), [crossEntropyRef(X, L, V, -100)], bnd.loss, 'f16 crossEntropy loss');
    expectWithin(await read(gx!), gRef, f16Out(gRef, bnd.dx), 'f16 crossEntropy dx');
  });

  it('every candidate width of the row reductions (rmsNorm, softmax, crossEntropy): f32 sums of f16 inputs, one rounding out', async () => {
    // The tuner's candidates for a software and a GPU profile (the subgroup twins run in
    // Chromium: tests/browser.test.ts); rows shorter and longer than the widest.
    const software = profileFrom({ vendor: '65541', description: 'llvmpipe' }, new Set<string>(), {});
    const gpu = profileFrom({ vendor: 'nvidia', description: 'some GPU' }, new Set<string>(), {});
    const widths = new Map<string, RowConfig>();
    for (const profile of [software, gpu]) {
      for (const c of normFamily.candidates({ rows: 8, D: 600, dtype: 'f16' }, profile)) widths.set(rowConfigKey(c), c);
      for (const c of softmaxFamily.candidates({ rows: 8, K: 600, dtype: 'f16', mask: false }, profile)) widths.set(rowConfigKey(c), c);
      for (const c of lossFamily.candidates({ N: 8, V: 600, dtype: 'f16' }, profile)) widths.set(rowConfigKey(c), c);
    }
    expect([...widths.keys()].sort()).toEqual(['wg128', 'wg16', 'wg256', 'wg32', 'wg64', 'wg8']);
    for (const [key, c] of widths) {
      const [rows, D] = [R.int(1, 6), R.int(2, 600)];
      const X = toF16(R.randn(rows * D, 3)), W = toF16(R.randn(D)), L = Int32Array.from({ length: rows }, () => R.int(0, D - 1));
      const x = param(h(X, [rows, D]));
      const y = withTrial('norm', c, () => rmsNorm(x, h(W, [D]), 1e-6));
      const s = withTrial('softmax', c, () => softmax(x)), ls = withTrial('softmax', c, () => logSoftmax(x));
      const loss = withTrial('loss', c, () => crossEntropy(x, fromData(L, [rows], 'i32'), -100));
      const [gx] = grad(loss, [x]);
      await realize([y, s, ls, loss, gx!]);
      // f32 arithmetic within tests/ref/nn.ts's bounds (any summation order), then the f16 conversion.
      const none = new Float64Array(rows * D), what = `${key} rows=${rows} D=${D}`;
      const yRef = rmsNormRef(X, W, D, 1e-6), sRef = softmaxRef(X, D), lRef = logSoftmaxRef(X, D);
      expectWithin(await read(y), yRef, f16Out(yRef, rmsNormBounds(X, W, none, D, 1e-6).y), `f16 rmsNorm ${what}`);
      expectWithin(await read(s), sRef, f16Out(sRef, softmaxBounds(X, none, D, undefined, sRef).y), `f16 softmax ${what}`);
      expectWithin(await read(ls), lRef, f16Out(lRef, logSoftmaxBounds(X, none, D, lRef).y), `f16 logSoftmax ${what}`);
      const bnd = crossEntropyBounds(X, L, D, -100, 1), gRef = crossEntropyBackRef(X, L, D, -100);
      expectWithin(await read(loss), [crossEntropyRef(X, L, D, -100)], bnd.loss, `f16 crossEntropy loss ${what}`);
      expectWithin(await read(gx!), gRef, f16Out(gRef, bnd.dx), `f16 crossEntropy dx ${what}`);
    }
  });

  it('embedding gather is exact; rotary (f32 freqs) one rounding', async () => {
    const [V, D, n] = [R.int(2, 30), R.int(2, 16) * 2, R.int(1, 12)];
    const T = toF16(R.randn(V * D)), ids = Int32Array.from({ length: n }, () => R.int(0, V - 1));
    const e = embedding(fromData(ids, [n], 'i32'), h(T, [V, D]));
    const m = D / 2, F = Float64Array.from({ length: m }, (_, i) => Math.fround(10000 ** (-i / m)));
    const r = rotary(e, fromData(F, [m]), 0);
    await realize([e, r]);
    const E = embeddingRef(ids, T, V, D);
    expect(Array.from(await read(e))).toEqual(Array.from(E));
    // f32 rotation (tests/ref/nn.ts rotaryBound), then the f16 conversion.
    const ref = rotaryRef(E, F, n, D, 0);
    expectWithin(await read(r), ref, f16Out(ref, rotaryBound(E, F, n, D, 0)), 'f16 rotary');
  });

  it('sum and max over an axis (f32 accumulation, one rounding)', async () => {
    const [a, n, c] = [R.int(1, 5), R.int(1, 300), R.int(1, 7)];
    const X = toF16(R.randn(a * n * c));
    const s = sumAxis(h(X, [a, n, c]), 1), mx = maxAxis(h(X, [a, n, c]), 1);
    await realize([s, mx]);
    const ref = new Float64Array(a * c), mag = new Float64Array(a * c), mref = new Float64Array(a * c).fill(-Infinity);
    for (let i = 0; i < a; i++) for (let j = 0; j < n; j++) for (let k = 0; k < c; k++) {
      const v = X[(i * n + j) * c + k];
      ref[i * c + k] += v;
      mag[i * c + k] += Math.abs(v);
      mref[i * c + k] = Math.max(mref[i * c + k], v);
    }
    // f32 accumulation of n terms: γ_{n−1}·Σ|x|; then the f16 conversion. The max is exact.
    expectWithin(await read(s), ref, f16Out(ref, sumBound(mag, n - 1)), 'f16 sum over an axis');
    expect(Array.from(await read(mx))).toEqual(Array.from(mref));
  });
});

describe('f16 vision ops', () => {
  it('batchNorm2d eval and training (statistics f32; running stats stay f32)', async () => {
    const [N, C, H, W] = [R.int(1, 3), R.int(1, 6), R.int(2, 7), R.int(2, 7)];
    const X = toF16(R.randn(N * C * H * W)), Wt = toF16(R.randn(C)), B = toF16(R.randn(C));
    const RM = R.randn(C, 0.2), RV = R.uniform(C, 0.5, 2);
    // f32 momentum and ε: the kernel and the reference see the same values.
    const momentum = Math.fround(0.1), eps = Math.fround(1e-5), HW = H * W, zeros = new Float64Array(N * C * HW);
    for (const training of [false, true]) {
      const p = { weight: h(Wt, [C]), bias: h(B, [C]), runningMean: fromData(RM, [C]), runningVar: fromData(RV, [C]) };
      const { y, update } = batchNorm2d(h(X, [N, C, H, W]), p, { training, momentum, eps });
      await realize([y], { effects: update ? [update] : [] });
      const ref = batchNormRef(X, N, C, HW, Wt, B, RM, RV, training, momentum, eps);
      // f32 statistics (tests/ref/vision.ts batchNormBounds); y converted to f16, the running
      // statistics stay f32 (updated when training, untouched in eval).
      const bnd = batchNormBounds(X, zeros, N, C, HW, Wt, B, RM, RV, momentum, eps, training, ref, new Float64Array(C), new Float64Array(C));
      const what = `f16 batchNorm2d ${training ? 'training' : 'eval'}`;
      expectWithin(await read(y), ref.y, f16Out(ref.y, bnd.y), `${what} y`);
      expectWithin(await read(p.runningMean), ref.newRunningMean, training ? bnd.runningMean : 0, `${what} running mean`);
      expectWithin(await read(p.runningVar), ref.newRunningVar, training ? bnd.runningVar : 0, `${what} running variance`);
    }
  });

  it('maxPool2d exact, adaptiveAvgPool2d and bilinear resize one rounding', async () => {
    const [NC, H, W] = [R.int(1, 6), R.int(4, 15), R.int(4, 15)];
    const X = toF16(R.randn(NC * H * W));
    const x = h(X, [1, NC, H, W]);
    const mp = maxPool2d(x, { kernel: 3, stride: 2, padding: 1 }), ap = adaptiveAvgPool2d(x, 3, 2), rs = resizeBilinear(x, 9, 5);
    await realize([mp, ap, rs]);
    expect(Array.from(await read(mp))).toEqual(Array.from(maxPoolRef(X, NC, H, W, 3, 2, 1).y));
    // f32 arithmetic (tests/ref/vision.ts adaptiveAvgPoolBound, resizeBounds), then the f16
    // conversion.
    const aref = adaptiveAvgPoolRef(X, NC, H, W, 3, 2), rref = resizeBilinearRef(X, NC, H, W, 9, 5);
    expectWithin(await read(ap), aref, f16Out(aref, adaptiveAvgPoolBound(X, NC, H, W, 3, 2)), 'f16 adaptiveAvgPool2d');
    expectWithin(await read(rs), rref, f16Out(rref, resizeBounds(X, new Float64Array(NC * 45), NC, H, W, 9, 5).y), 'f16 resizeBilinear');
  });
});

describe('f16 mixture of experts (training path) and dropout', () => {
  for (const kind of ['register', 'tiled'] as const) {
    it(`topkGate + moeExperts (${kind}): the f16 logits and the experts' f16 intermediates carried by the f32 models`, async () => {
      setKernelOverrides({ moe: kind });
      try {
        const [N, d, F, E, k] = [R.int(2, 40), 4 * R.int(2, 6), 4 * R.int(2, 6), 4, 2];
        const experts = randomExperts(R, E, d, F).map((e) => ({ w1: toF16(e.w1), w3: toF16(e.w3), w2: toF16(e.w2) }));
        const X = toF16(R.randn(N * d)), G = toF16(R.randn(d * E));
        const gate = topkGate(h(X, [N, d]), h(G, [E, d]), k);
        const y = moeExperts(h(X, [N, d]), gate, experts.map((e) => ({ w1: h(e.w1, [F, d]), w3: h(e.w3, [F, d]), w2: h(e.w2, [d, F]) })), 'silu', 'weighted');
        await realize([y, gate.probs, gate.indices, gate.weights]);
        const idx = await read(gate.indices), wts = await read(gate.weights);
        // The gate (tests/ref/moe.ts gateBounds, the logits stored f16): probs per element, then
        // their f16 conversion; the picks are the float64 ones up to near-ties (each pick's
        // f32 probability within the bounds of every one it beat); the weights per element
        // where the picks agree.
        const gr = gateRef(X, G, N, d, E, k), gb = gateBounds(X, G, N, d, E, k, undefined, false, undefined, undefined, f16Conv);
        expectWithin(await read(gate.probs), gr.probs, f16Out(gr.probs, gb.probs), `f16 topkGate probs (${kind})`);
        const agree: number[] = [];
        for (let t = 0; t < N; t++) {
          const row = Array.from(idx.subarray(t * k, t * k + k));
          if (row.every((e, j) => e === gr.indices[t * k + j])) agree.push(...row.map((_, j) => t * k + j));
          for (let j = 0; j < k; j++) for (let e = 0; e < E; e++) {
            if (row.slice(0, j + 1).includes(e)) continue;
            const [a, b] = [t * E + row[j], t * E + e];
            expect(gr.probs[a] + gb.probs[a], `token ${t}, pick ${j}: expert ${row[j]} over ${e}`).toBeGreaterThanOrEqual(gr.probs[b] - gb.probs[b]);
          }
        }
        expectWithin(agree.map((s) => wts[s]), agree.map((s) => gr.weights[s]), agree.map((s) => f16Conv(gr.weights[s], gb.weights[s])), `f16 topkGate weights (${kind})`);
        // The output reference uses the GPU's route and weights (f16 values; a near-tie of the
        // f16 logits may legitimately pick differently from float64); the f32 model
        // (tests/ref/moe.ts moeBounds) with u1, u3, silu(u1), h and each expert output stored
        // f16 (store: f16Conv), then the combination's own f16 conversion.
        const ref = moeRef(X, idx, wts, experts, N, d, F, k, 'silu', 'weighted').out;
        const bnd = moeBounds(X, idx, wts, experts, N, d, F, k, 'silu', 'weighted', undefined, unaryErr, unaryGradErr, undefined, f16Conv);
        expectWithin(await read(y), ref, f16Out(ref, bnd.out), `f16 moeExperts (${kind})`);
      } finally {
        setKernelOverrides({ moe: undefined });
      }
    });
  }

  it('dropout keeps or zeroes exactly the f32 mask, scaled once (one rounding)', async () => {
    const n = R.int(10, 2000);
    const X = toF16(R.randn(n));
    const y16 = dropout(h(X, [n]), 0.3, 77), y32 = dropout(fromData(X, [n]), 0.3, 77);
    await realize([y16, y32]);
    // The same f32 product x·scale, converted to f16 (either neighbour: f16Conv with no f32 error).
    const y32v = await read(y32);
    expectWithin(await read(y16), y32v, (i) => f16Conv(y32v[i], 0), 'f16 dropout');
  });

  it('cast round trip is exact for f16 values; the binding check refuses mixed element types', async () => {
    const X = toF16(R.randn(37));
    const back = cast(cast(fromData(X, [37]), 'f16'), 'f32');
    await realize([back]);
    expect(Array.from(await read(back))).toEqual(Array.from(X));
    await expect(realize([add(fromData(X, [37]), h(X, [37]))])).rejects.toThrow(/binding \d is array<f16> but .* is f32/);
  });
});
