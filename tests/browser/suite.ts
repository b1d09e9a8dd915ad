// A fixed set of kernel runs on seeded inputs, executed unchanged in Deno and in Chromium
// (tests/browser.test.ts compares the two). Every case draws its shapes and data from its own
// generator seeded by (suite seed, case name), so a case's inputs do not depend on which other
// cases ran; a hash of every draw is returned so the test can prove both sides saw the same inputs.
import { fromData, init, read, realize, dispose, runtime, sync } from '../../src/graph/runtime.ts';
import { withTrial } from '../../src/graph/kernels/catalogue.ts';
import { pipelineErrors } from '../../src/gpu/pipelines.ts';
import type { Tensor } from '../../src/graph/tensor.ts';
import { matmul, linear } from '../../src/graph/ops/matmul.ts';
import { add, div, fill, maximum, minimum, mul, square, sub, sumTo, scale, unary, UNARY_OPS, type UnaryOp } from '../../src/graph/ops/elementwise.ts';
import { concat, permute, reshape, slice, split, transpose } from '../../src/graph/ops/shape.ts';
import { grad, param } from '../../src/graph/autograd.ts';
import { conv2d } from '../../src/graph/ops/conv.ts';
import { attention } from '../../src/graph/ops/attention.ts';
import { moeExperts, stackExpertWeights, topkGate } from '../../src/graph/ops/moe.ts';
import { expertsForRows, rowsLinear } from '../../src/graph/ops/matvec.ts';
import { max, mean, sum } from '../../src/graph/ops/reduce.ts';
import { logSoftmax, softmax } from '../../src/graph/ops/softmax.ts';
import { rmsNorm } from '../../src/graph/ops/norm.ts';
import { embedding, sinusoidalPositions } from '../../src/graph/ops/embedding.ts';
import { rotary } from '../../src/graph/ops/rotary.ts';
import { crossEntropy } from '../../src/graph/ops/loss.ts';
import { batchNorm2d } from '../../src/graph/ops/batchnorm.ts';
import { adaptiveAvgPool2d, maxPool2d } from '../../src/graph/ops/pool.ts';
import { resizeBilinear } from '../../src/graph/ops/resize.ts';
import { dropout, randNormal, randUniform } from '../../src/graph/ops/random.ts';
import { AdamW, clipGradNorm } from '../../src/graph/ops/optim.ts';
import { expectWithin, gamma, relL2, Rng } from '../util.ts';
import { matmulRef } from '../ref/cpu.ts';
import { crossEntropyBackRef, crossEntropyBounds, crossEntropyRef, maskZeros, rmsNormBackRef, rmsNormBounds, rmsNormRef, softmaxBackRef, softmaxBounds, softmaxRef } from '../ref/nn.ts';
import { batchNormBackwardRef, batchNormBounds, batchNormRef } from '../ref/vision.ts';

/** Rng whose draws are folded into a 32-bit FNV-1a hash (input fingerprint). */
export class HashingRng extends Rng {
  hash = 0x811c9dc5;
  override next(): number {
    const v = super.next();
    const bits = Math.floor(v * 4294967296) >>> 0;
    for (let k = 0; k < 4; k++) this.hash = Math.imul(this.hash ^ ((bits >>> (8 * k)) & 0xff), 0x01000193) >>> 0;
    return v;
  }
}

function caseSeed(seed: number, name: string): number {
  let h = seed >>> 0;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return h || 1;
}

export interface SuiteCase {
  name: string;
  /** Outputs must match bit for bit across platforms (random-number kernels, integer results). */
  exact?: boolean;
  /**
   * Builds the lazy graph; every returned tensor is realized in one go and read back. Effect
   * tensors (in-place updates) pushed onto `effects` run in that same realize, before the reads.
   */
  build(R: HashingRng, effects: Tensor[], notes: string[]): Record<string, Tensor>;
  /**
   * Checks the outputs read back (by name) against references on this host; returns what is
   * out of bounds (empty: all within). Runs right after this case's `build` and realize.
   */
  check?(outputs: Record<string, Float32Array | Int32Array | Uint32Array>): string[];
}

const f32 = (R: Rng, shape: number[], s = 1) => fromData(R.randn(shape.reduce((a, b) => a * b, 1), s), shape);

export const CASES: SuiteCase[] = [
  {
    name: 'matmul transpose modes, odd shapes, batched, bias',
    build(R) {
      const out: Record<string, Tensor> = {};
      for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]]) {
        const batch = R.int(1, 3), M = R.int(1, 37), N = R.int(1, 37), K = R.int(1, 29);
        const a = f32(R, ta ? [batch, K, M] : [batch, M, K]);
        const b = f32(R, tb ? [N, K] : [K, N]); // 2-D B broadcasts over the batch
        const bias = f32(R, [N]);
        out[`A${ta ? 'ᵀ' : ''}B${tb ? 'ᵀ' : ''}`] = matmul(a, b, { transA: ta, transB: tb, bias });
      }
      const x = f32(R, [R.int(1, 5), R.int(1, 9), 13]), w = f32(R, [7, 13]), bl = f32(R, [7]);
      out.linear = linear(x, w, bl);
      return out;
    },
  },
  {
    name: 'elementwise activations and unary maps',
    build(R) {
      const shape = [R.int(1, 6), R.int(1, 70)];
      const x = f32(R, shape, 2);
      const pos = fromData(R.uniform(shape[0] * shape[1], 0.05, 4), shape);
      const out: Record<string, Tensor> = {};
      for (const op of Object.keys(UNARY_OPS) as UnaryOp[]) {
        const needsPositive = op === 'log' || op === 'sqrt' || op === 'rsqrt';
        out[op] = unary(op, needsPositive ? pos : x, 0.75, -0.5);
      }
      return out;
    },
  },
  {
    name: 'broadcasting binary ops',
    build(R) {
      const a = f32(R, [R.int(1, 4), 1, R.int(1, 9)]);
      const b = f32(R, [R.int(2, 7), 1]);
      const bPos = fromData(R.uniform(b.size, 0.5, 2), b.shape);
      return { add: add(a, b), sub: sub(b, a), mul: mul(a, b), div: div(a, bPos), maximum: maximum(a, b), minimum: minimum(b, a), sumTo: sumTo(mul(a, b), [1, a.shape[2]]) };
    },
  },
  {
    name: 'permute, concat, slice, split',
    build(R) {
      const x = f32(R, [R.int(1, 4), R.int(2, 6), R.int(1, 5), R.int(1, 7)]);
      const y = f32(R, [x.shape[0], R.int(1, 4), x.shape[2], x.shape[3]]);
      const cat = concat([x, y, x], 1);
      const start = R.int(0, cat.shape[1] - 1);
      const [p0, p1] = split(x, [1, x.shape[1] - 1], 1);
      return {
        permute: permute(x, [2, 0, 3, 1]),
        transpose: transpose(y, 0, 3),
        concat: cat,
        slice: slice(cat, 1, start, cat.shape[1] - start),
        split0: p0,
        split1: p1,
        reshapePermute: permute(reshape(x, [x.shape[0], -1]), [1, 0]),
      };
    },
  },
  {
    name: 'autograd step: two-layer MLP, squared error, SGD update',
    build(R) {
      const rows = R.int(2, 9), inF = R.int(2, 11), hid = R.int(2, 13), outF = R.int(1, 5);
      const x = f32(R, [rows, inF]), target = f32(R, [rows, outF]);
      const w1 = param(f32(R, [hid, inF], 0.5)), b1 = param(f32(R, [hid], 0.1));
      const w2 = param(f32(R, [outF, hid], 0.5)), b2 = param(f32(R, [outF], 0.1));
      const h = unary('gelu', linear(x, w1, b1));
      const y = linear(h, w2, b2);
      const loss = scale(sumTo(square(sub(y, target)), []), 1 / (rows * outF));
      const params = [w1, b1, w2, b2];
      const grads = grad(loss, params);
      const out: Record<string, Tensor> = { loss, y };
      const lr = 0.1;
      params.forEach((p, i) => {
        out[`grad${i}`] = grads[i]!;
        out[`updated${i}`] = sub(p, scale(grads[i]!, lr));
      });
      return out;
    },
  },
  {
    name: 'conv2d forward and backward (stride, padding)',
    build(R) {
      const N = R.int(1, 2), C = R.int(1, 4), O = R.int(1, 5), k = R.int(1, 3), stride = R.int(1, 2), padding = R.int(0, 1);
      const H = R.int(k, 9), W = R.int(k, 9);
      const x = param(f32(R, [N, C, H, W])), w = param(f32(R, [O, C, k, k], 0.5)), b = param(f32(R, [O]));
      const y = conv2d(x, w, b, { stride, padding });
      const seedGrad = f32(R, y.shape);
      const [dx, dw, db] = grad(sumTo(mul(y, seedGrad), []), [x, w, b]);
      return { y, dx: dx!, dw: dw!, db: db! };
    },
  },
  {
    name: 'fused attention with causal mask and kept probabilities, backward',
    build(R) {
      const b = 2, H = R.int(1, 3), S = R.int(3, 21), d = R.int(2, 24), dv = R.int(2, 24);
      const q = param(f32(R, [b, H, S, d])), k = param(f32(R, [b, H, S, d])), v = param(f32(R, [b, H, S, dv]));
      const maskData = new Float32Array(b * S * S).map((_, i) => (i % S <= Math.floor(i / S) % S ? 1 : 0));
      const { out, probs } = attention(q, k, v, { scale: 1 / Math.sqrt(d), mask: fromData(maskData, [b, S, S]), keepProbs: true });
      const [dq, dk, dvv] = grad(sumTo(mul(out, f32(R, out.shape)), []), [q, k, v]);
      return { out, probs: probs!, dq: dq!, dk: dk!, dv: dvv! };
    },
  },
  {
    name: 'MoE top-k gate, GPU routing, grouped experts (weighted), backward',
    build(R) {
      const N = R.int(5, 20), d = R.int(3, 20), F = R.int(3, 24), E = 4, k = 2;
      const x = param(f32(R, [N, d])), gw = param(f32(R, [E, d]));
      const experts = Array.from({ length: E }, () => ({ w1: param(f32(R, [F, d], 0.3)), w3: param(f32(R, [F, d], 0.3)), w2: param(f32(R, [d, F], 0.3)) }));
      const route = topkGate(x, gw, k);
      const y = moeExperts(x, route, experts, 'silu', 'weighted');
      const [dx, dgw, dw1] = grad(sumTo(mul(y, f32(R, y.shape)), []), [x, gw, experts[0].w1]);
      return { probs: route.probs, indices: route.indices, weights: route.weights, y, dx: dx!, dgw: dgw!, dw1: dw1! };
    },
  },
  {
    name: 'decoding step kernels: one-query attention over a masked cache, few-row linear, top-k-only experts',
    build(R) {
      const b = R.int(1, 3), H = R.int(1, 4), Sk = R.int(9, 40), d = 4 * R.int(1, 8), B = R.int(1, 5), K = 4 * R.int(2, 20), N = R.int(3, 40);
      const q = param(f32(R, [b, H, 1, d])), k = f32(R, [b, H, Sk, d]), v = f32(R, [b, H, Sk, d]);
      const mask = fromData(new Float32Array(b * Sk).map((_, i) => (i % Sk < 1 + (i % 7) ? 1 : 0)), [b, 1, Sk]);
      const { out, probs } = attention(q, k, v, { scale: 1 / Math.sqrt(d), mask, keepProbs: true });
      const [dq] = grad(sumTo(mul(out, f32(R, out.shape)), []), [q]);
      const x = f32(R, [B, K]);
      const lin = rowsLinear(x, f32(R, [N, K], 0.3), f32(R, [N]));
      const E = 4, F = 4 * R.int(1, 6);
      const experts = Array.from({ length: E }, () => ({ w1: f32(R, [F, K], 0.3), w3: f32(R, [F, K], 0.3), w2: f32(R, [K, F], 0.3) }));
      const route = topkGate(x, f32(R, [E, K]), 2);
      const moe = expertsForRows(x, route.indices, route.weights, stackExpertWeights(experts), 'silu', 'weighted');
      return { out, probs: probs!, dq: dq!, lin, moe };
    },
  },
  {
    name: 'reduce: sum, mean, max over a random axis, backward',
    build(R) {
      const shape = [R.int(1, 5), R.int(1, 40), R.int(1, 7)];
      const x = param(f32(R, shape));
      const axis = R.int(-3, 2), keep = R.next() < 0.5;
      const s = sum(x, axis, keep), m = mean(x, axis, !keep), mx = max(x, axis, keep);
      const loss = add(add(sumTo(mul(s, f32(R, s.shape)), []), sumTo(mul(m, f32(R, m.shape)), [])), sumTo(mul(mx, f32(R, mx.shape)), []));
      const [dx] = grad(loss, [x]);
      return { sum: s, mean: m, max: mx, dx: dx! };
    },
  },
  {
    name: 'softmax (masked) and logSoftmax, backward',
    build(R) {
      const B = R.int(1, 3), T = R.int(1, 9), K = R.int(1, 300);
      const x = param(f32(R, [B, T, K], 3));
      const mask = fromData(Float32Array.from({ length: T * K }, () => (R.next() < 0.8 ? 1 : 0)), [T, K]);
      const p = softmax(x, mask), lp = logSoftmax(x);
      const [dx] = grad(add(sumTo(mul(p, f32(R, p.shape)), []), sumTo(mul(lp, f32(R, lp.shape)), [])), [x]);
      return { softmax: p, logSoftmax: lp, dx: dx! };
    },
  },
  {
    name: 'rmsNorm, backward',
    build(R) {
      const D = R.int(1, 200);
      const x = param(f32(R, [R.int(1, 4), R.int(1, 9), D], 2)), w = param(f32(R, [D]));
      const y = rmsNorm(x, w, 1e-6);
      const [dx, dw] = grad(sumTo(mul(y, f32(R, y.shape)), []), [x, w]);
      return { y, dx: dx!, dw: dw! };
    },
  },
  {
    name: 'embedding with repeated and out-of-range ids, table gradient, sinusoidal positions',
    build(R) {
      const V = R.int(2, 40), D = R.int(1, 33), n = R.int(1, 30);
      const table = param(f32(R, [V, D]));
      const ids = fromData(Int32Array.from({ length: 2 * n }, () => R.int(-1, V)), [2, n], 'i32');
      const y = embedding(ids, table);
      const [dTable] = grad(sumTo(mul(y, f32(R, y.shape)), []), [table]);
      return { y, dTable: dTable!, positions: add(sinusoidalPositions(n, D), fill([n, D], 0)) };
    },
  },
  {
    name: 'rotary (interleaved, offset feature range), backward',
    build(R) {
      const n = R.int(1, 17), m = R.int(1, 8), start = R.int(0, 5), dh = start + 2 * m + R.int(0, 4);
      const x = param(f32(R, [R.int(1, 2), R.int(1, 3), n, dh]));
      const freqs = fromData(Float32Array.from({ length: m }, (_, i) => Math.fround(10000 ** (-2 * i / (2 * m)))), [m]);
      const y = rotary(x, freqs, start, R.int(0, 50));
      const [dx] = grad(sumTo(mul(y, f32(R, y.shape)), []), [x]);
      return { y, dx: dx! };
    },
  },
  {
    name: 'cross entropy with ignore index, backward',
    build(R) {
      const N = R.int(1, 24), V = R.int(2, 300), ignore = -100;
      const logits = param(f32(R, [N, V], 3));
      const labels = fromData(Int32Array.from({ length: N }, (_, i) => (i > 0 && R.next() < 0.2 ? ignore : R.int(0, V - 1))), [N], 'i32');
      const loss = crossEntropy(logits, labels, ignore);
      const [dLogits] = grad(loss, [logits]);
      return { loss, dLogits: dLogits! };
    },
  },
  {
    name: 'batchNorm2d training (running-stat update effect) and eval, backward',
    build(R, effects) {
      // At least 2 values per channel: training statistics of one value are refused (as PyTorch
      // does; N = H = W = 1 was drawn once in ~150 seeds: test:sweep-browser).
      const N = R.int(1, 3), C = R.int(1, 5), H = R.int(1, 7), W = R.int(N === 1 && H === 1 ? 2 : 1, 7);
      const x = param(f32(R, [N, C, H, W], 2));
      const weight = param(f32(R, [C])), bias = param(f32(R, [C]));
      const runningMean = fromData(R.randn(C, 0.1), [C]), runningVar = fromData(R.uniform(C, 0.5, 1.5), [C]);
      const evalOut = batchNorm2d(x, { weight, bias, runningMean, runningVar }, { training: false }).y;
      const { y, update } = batchNorm2d(x, { weight, bias, runningMean, runningVar }, { training: true, momentum: 0.1, eps: 1e-5 });
      if (update) effects.push(update);
      const [dx, dw, db] = grad(sumTo(mul(y, f32(R, y.shape)), []), [x, weight, bias]);
      return { y, evalOut, dx: dx!, dw: dw!, db: db!, runningMean, runningVar };
    },
  },
  (() => {
    // The tuner's subgroup candidates (lib/reduce SUBGROUPS): Chromium's SwiftShader has the
    // `subgroups` feature (4 lanes), Deno's llvmpipe has not (tree sums there). Widths from one
    // SIMD vector to 256 lanes, rows and channels shorter and longer than the workgroup. Each
    // host checks its results against the float64 references within the error models of
    // tests/ref (any summation order), besides the cross-host comparison.
    type Rms = { key: string; X: Float64Array; Wt: Float64Array; G: Float64Array; D: number };
    type Bn = { key: string; X: Float64Array; Wt: Float64Array; B: Float64Array; RM: Float64Array; RV: Float64Array; DY: Float64Array; N: number; C: number; HW: number };
    type Mv = { key: string; X: Float64Array; Wt: Float64Array; Bi: Float64Array; B: number; N: number; K: number };
    type Sm = { key: string; X: Float64Array; W: Float64Array; M: Float64Array; shape: number[] };
    type Ce = { key: string; X: Float64Array; labels: Int32Array; N: number; V: number; g: number };
    let rms: Rms[] = [], bn: Bn[] = [], mv: Mv[] = [], sm: Sm[] = [], ce: Ce[] = [];
    const momentum = Math.fround(0.1), eps = Math.fround(1e-5);
    const c: SuiteCase = {
      name: 'row and channel sums through subgroups (rmsNorm, batchNorm2d, softmax and crossEntropy, forward and backward; few-row linear)',
      build(R, effects, notes) {
        const sg = runtime().profile.features.subgroups;
        notes.push(sg ? 'subgroups' : 'tree sums (no subgroups feature)');
        const out: Record<string, Tensor> = {};
        rms = [];
        bn = [];
        mv = [];
        sm = [];
        ce = [];
        for (const WG of [8, 64, 256]) {
          const D = R.int(2, 300), rows = R.int(1, 6);
          const X = R.randn(rows * D, 2), Wt = R.uniform(D, 0.5, 1.5), G = R.randn(rows * D);
          const x = param(fromData(X, [rows, D])), w = param(fromData(Wt, [D]));
          const y = withTrial('norm', sg ? { WG, sg: true } : { WG }, () => rmsNorm(x, w, 1e-6));
          const [dx] = grad(y, [x], fromData(G, [rows, D]));
          out[`rms${WG}`] = y;
          out[`rms${WG}_dx`] = dx!;
          rms.push({ key: `rms${WG}`, X, Wt, G, D });
        }
        for (const RWG of [8, 64, 256]) {
          const N = R.int(1, 3), C = R.int(1, 4), HW = R.int(2, 400);   // ≥ 2 values per channel (training)
          const X = R.randn(N * C * HW).map((v) => Math.fround(3 * v + 2));   // off-centre: the mean subtraction matters
          const Wt = R.randn(C), B = R.randn(C), RM = R.randn(C), RV = R.uniform(C, 0.5, 2), DY = R.randn(N * C * HW);
          const x = param(fromData(X, [N, C, 1, HW]));
          const weight = param(fromData(Wt, [C])), bias = param(fromData(B, [C]));
          const runningMean = fromData(RM, [C]), runningVar = fromData(RV, [C]);
          const cfg = { RWG, rows: false, ...(sg ? { sg: true } : {}) };
          const { y, update } = withTrial('batchnorm', cfg, () => batchNorm2d(x, { weight, bias, runningMean, runningVar }, { training: true, momentum, eps }));
          if (update) effects.push(update);
          const [dx, dw, db] = grad(y, [x, weight, bias], fromData(DY, y.shape));
          const k = `bn${RWG}`;
          Object.assign(out, { [k]: y, [`${k}_dx`]: dx!, [`${k}_dw`]: dw!, [`${k}_db`]: db!, [`${k}_mean`]: runningMean, [`${k}_var`]: runningVar });
          bn.push({ key: k, X, Wt, B, RM, RV, DY, N, C, HW });
        }
        // Softmax's row max and sum (lib/reduce wg_max, wg_sum) under a broadcast mask whose
        // first row is fully masked; cross entropy's per-row max and sum (CE_ROWS) on logits spread
        // wide enough that exp overflows unless the max is right.
        for (const WG of [8, 64, 256]) {
          const b = R.int(1, 2), H = R.int(1, 3), q = R.int(1, 3), K = R.int(1, 300), shape = [b, H, q, K];
          const X = R.randn(b * H * q * K, 3), W = R.randn(b * H * q * K);
          const M = Float64Array.from({ length: b * q * K }, (_, i) => (i < K || R.next() < 0.3 ? 0 : 1));
          const x = param(fromData(X, shape));
          const y = withTrial('softmax', sg ? { WG, sg: true } : { WG }, () => softmax(x, fromData(M, [b, 1, q, K])));
          const [dx] = grad(y, [x], fromData(W, shape));
          out[`sm${WG}`] = y;
          out[`sm${WG}_dx`] = dx!;
          sm.push({ key: `sm${WG}`, X, W, M, shape });
          const N = R.int(1, 9), V = R.int(1, 600), g = Math.fround(0.5 + R.next());
          const L = R.randn(N * V, 60), labels = Int32Array.from({ length: N }, () => (R.next() < 0.25 ? -100 : R.int(0, V - 1)));
          const logits = param(fromData(L, [N, V]));
          const loss = withTrial('loss', sg ? { WG, sg: true } : { WG }, () => crossEntropy(logits, fromData(labels, [N], 'i32'), -100));
          const [dl] = grad(loss, [logits], fromData([g], []));
          out[`ce${WG}`] = loss;
          out[`ce${WG}_dx`] = dl!;
          ce.push({ key: `ce${WG}`, X: L, labels, N, V, g });
        }
        // The few-row linear's cross-lane sums (matvec): 2 lanes (a partial subgroup of
        // SwiftShader's 4), 8 and 64; one and several row blocks; K vec4-aligned or not; more
        // sums per workgroup than lanes (sums 16 at 2 and 8 lanes) and fewer.
        for (const LANES of [2, 8, 64]) {
          const B = R.int(1, 9), N = R.int(1, 40), K = R.next() < 0.5 ? 4 * R.int(1, 70) : 2 * R.int(1, 70) + 1;
          const X = R.randn(B * K), Wt = R.randn(N * K), Bi = R.randn(N);
          const y = withTrial('matvec', sg ? { LANES, sums: 16, sg: true } : { LANES, sums: 16 }, () => rowsLinear(fromData(X, [B, K]), fromData(Wt, [N, K]), fromData(Bi, [N])));
          out[`mv${LANES}`] = y;
          mv.push({ key: `mv${LANES}`, X, Wt, Bi, B, N, K });
        }
        return out;
      },
      check(o) {
        const bad: string[] = [];
        const within = (what: string, got: ArrayLike<number>, ref: ArrayLike<number>, bound: number | ArrayLike<number>) => {
          try {
            expectWithin(got, ref, bound, what);
          } catch (e) {
            bad.push((e as Error).message);
          }
        };
        for (const r of rms) {
          const bound = rmsNormBounds(r.X, r.Wt, r.G, r.D, 1e-6);
          within(`${r.key} y`, o[r.key], rmsNormRef(r.X, r.Wt, r.D, 1e-6), bound.y);
          within(`${r.key} dx`, o[`${r.key}_dx`], rmsNormBackRef(r.X, r.Wt, r.G, r.D, 1e-6).dx, bound.dx);
        }
        for (const m of sm) {
          const K = m.shape[3], zero = maskZeros(m.M, [m.shape[0], 1, m.shape[2], K], m.shape);
          const yr = softmaxRef(m.X, K, zero), bound = softmaxBounds(m.X, m.W, K, zero, yr);
          within(`${m.key} y`, o[m.key], yr, bound.y);
          within(`${m.key} dx`, o[`${m.key}_dx`], softmaxBackRef(yr, m.W, K, zero), bound.dx);
        }
        for (const e of ce) {
          const bound = crossEntropyBounds(e.X, e.labels, e.V, -100, e.g);
          within(`${e.key} loss`, o[e.key], [crossEntropyRef(e.X, e.labels, e.V, -100)], bound.loss);
          within(`${e.key} dx`, o[`${e.key}_dx`], crossEntropyBackRef(e.X, e.labels, e.V, -100, e.g), bound.dx);
        }
        for (const m of mv) {
          // Length-(K + 1) f32 sums (bias included), any order: |error| ≤ γ_{K+1} · Σ|terms|.
          const ref = matmulRef(m.X, m.Wt, m.B, m.N, m.K, false, true), mag = matmulRef(m.X.map(Math.abs), m.Wt.map(Math.abs), m.B, m.N, m.K, false, true);
          within(`${m.key} y`, o[m.key], ref.map((v, i) => v + m.Bi[i % m.N]), mag.map((v, i) => gamma(m.K + 1) * (v + Math.abs(m.Bi[i % m.N])) + 1e-30));
        }
        for (const b of bn) {
          const ref = batchNormRef(b.X, b.N, b.C, b.HW, b.Wt, b.B, b.RM, b.RV, true, momentum, eps);
          const bw = batchNormBackwardRef(b.X, b.DY, b.N, b.C, b.HW, b.Wt, ref.mean, ref.varUsed, true, eps);
          const bound = batchNormBounds(b.X, b.DY, b.N, b.C, b.HW, b.Wt, b.B, b.RM, b.RV, momentum, eps, true, ref, bw.dw, bw.db);
          within(`${b.key} y`, o[b.key], ref.y, bound.y);
          within(`${b.key} running mean`, o[`${b.key}_mean`], ref.newRunningMean, bound.runningMean);
          within(`${b.key} running variance`, o[`${b.key}_var`], ref.newRunningVar, bound.runningVar);
          within(`${b.key} dx`, o[`${b.key}_dx`], bw.dx, bound.dx);
          within(`${b.key} dweight`, o[`${b.key}_dw`], bw.dw, bound.dw);
          within(`${b.key} dbias`, o[`${b.key}_db`], bw.db, bound.db);
        }
        return bad;
      },
    };
    return c;
  })(),
  {
    name: 'maxPool2d and adaptiveAvgPool2d, backward',
    build(R) {
      const x = param(f32(R, [R.int(1, 2), R.int(1, 3), R.int(3, 13), R.int(3, 13)]));
      const k = R.int(2, 3), mp = maxPool2d(x, { kernel: k, stride: R.int(1, 2), padding: R.int(0, 1) });
      const ap = adaptiveAvgPool2d(x, R.int(1, 5), R.int(1, 5));
      const [dx] = grad(add(sumTo(mul(mp, f32(R, mp.shape)), []), sumTo(mul(ap, f32(R, ap.shape)), [])), [x]);
      return { maxPool: mp, avgPool: ap, dx: dx! };
    },
  },
  {
    name: 'bilinear resize (up and down), backward',
    build(R) {
      const x = param(f32(R, [R.int(1, 2), R.int(1, 3), R.int(1, 11), R.int(1, 11)]));
      const up = resizeBilinear(x, R.int(1, 23), R.int(1, 23));
      const [dx] = grad(sumTo(mul(up, f32(R, up.shape)), []), [x]);
      return { y: up, dx: dx! };
    },
  },
  {
    name: 'random: uniform, normal, dropout and its backward (bit-exact across hosts)',
    exact: true,
    build(R) {
      // Seeds and sizes come from the case generator, so both hosts use the same ones.
      const seed = R.int(0, 2 ** 31), n = R.int(1, 600);
      const x = param(f32(R, [n]));
      const p = [0.1, 0.25, 0.5][R.int(0, 2)];
      const y = dropout(x, p, seed + 2);
      const [dx] = grad(sumTo(mul(y, f32(R, [n])), []), [x]);
      return {
        uniform: randUniform([n, 3], seed),
        uniformRange: randUniform([n], seed + 3, -2, 0.5),
        normal: randNormal([n, 2], seed + 1, 1),
        dropout: y,
        dropoutGrad: dx!,
      };
    },
  },
  {
    name: 'optim: clipGradNorm and an AdamW step (amsgrad, weight decay, guard) as in-place effects',
    build(R, effects) {
      const rows = R.int(1, 6), inF = R.int(1, 9), outF = R.int(1, 7);
      const w = param(f32(R, [outF, inF])), b = param(f32(R, [outF]));
      const x = f32(R, [rows, inF]), target = f32(R, [rows, outF]);
      const loss = scale(sumTo(square(sub(linear(x, w, b), target)), []), 1 / rows);
      const [gw, gb] = grad(loss, [w, b]);
      const { grads, totalNorm } = clipGradNorm([gw!, gb!], 0.5 + R.next());
      const opt = new AdamW([{ params: [w], lr: 0.01 }, { params: [b], lr: 0.05 }], { betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.1, amsgrad: true });
      effects.push(...opt.step(new Map([[w, grads[0]], [b, grads[1]]]), { guard: loss }));
      // Parameters and optimiser state are read after the effects have written them.
      return { loss, totalNorm, clippedW: grads[0], w, b, ...opt.stateDict().tensors };
    },
  },
];

export interface EncodedTensor {
  dtype: 'f32' | 'i32' | 'u32';
  shape: number[];
  /** Raw little-endian bytes, base64 (exact through JSON, NaN included). */
  base64: string;
}

export interface CaseResult {
  name: string;
  exact: boolean;
  /** FNV hash of every random draw the case made. */
  inputHash: number;
  outputs: Record<string, EncodedTensor>;
  /** What the case says about how it ran on this host (e.g. which kernels). */
  notes: string[];
  /** Cases with a `check`: what this host's outputs had outside the reference bounds. */
  outOfBounds?: string[];
  error?: string;
  ms: number;
}

export interface SuiteResult {
  adapter: string;
  /** GPUAdapterInfo fields and the adapter's notable features. */
  adapterInfo: Record<string, string>;
  host: string;
  cases: CaseResult[];
}

function toBase64(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

export function decode(t: EncodedTensor): Float32Array | Int32Array | Uint32Array {
  const s = atob(t.base64);
  const bytes = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i);
  const C = t.dtype === 'f32' ? Float32Array : t.dtype === 'i32' ? Int32Array : Uint32Array;
  return new C(bytes.buffer);
}

/**
 * What tests/browser.test.ts requires of one case run in Chromium (`b`) and in Deno (`d`): no
 * error, the same inputs, outputs of the same names, shapes and types; integer outputs and those
 * of `exact` cases equal bit for bit; float outputs within 1e-5 relative L2 of each other —
 * unless the case checked its outputs against float64 references in each host (`check`), which
 * holds it to those per-element bounds instead (sums with cancellation, a bias gradient Σ dy near
 * 0, may differ between two summation orders by more than 1e-5 relative, within the bounds).
 * Returns one report entry per output and the failures (empty: passed).
 */
export function compareHosts(b: CaseResult, d: CaseResult): { report: string[]; failures: string[] } {
  const report: string[] = [], failures: string[] = [];
  if (b.error) failures.push(`in Chromium: ${b.error}`);
  if (d.error) failures.push(`in Deno: ${d.error}`);
  if (failures.length) return { report, failures };
  if (b.inputHash !== d.inputHash) failures.push(`the hosts drew different inputs (hash ${b.inputHash} vs ${d.inputHash})`);
  for (const [host, r] of [['Chromium', b], ['Deno', d]] as const) {
    if (r.outOfBounds?.length) failures.push(`in ${host}, outside the error bounds:\n${r.outOfBounds.join('\n')}`);
  }
  const names = Object.keys(b.outputs).join(','), dNames = Object.keys(d.outputs).join(',');
  if (names !== dNames) failures.push(`outputs differ: ${names} vs ${dNames}`);
  const checked = b.outOfBounds !== undefined && d.outOfBounds !== undefined;
  for (const [k, bt] of Object.entries(b.outputs)) {
    const dt = d.outputs[k];
    if (!dt) continue;
    if (bt.shape.join(',') !== dt.shape.join(',') || bt.dtype !== dt.dtype) {
      failures.push(`${k}: ${bt.dtype}[${bt.shape}] in Chromium, ${dt.dtype}[${dt.shape}] in Deno`);
      continue;
    }
    const bv = decode(bt), dv = decode(dt);
    if (b.exact || bt.dtype !== 'f32') {
      const bb = new Uint32Array(bv.buffer), db = new Uint32Array(dv.buffer);
      let diffs = 0, first = -1;
      bb.forEach((x, i) => {
        if (x !== db[i]) {
          diffs++;
          if (first < 0) first = i;
        }
      });
      report.push(diffs ? `${k}: ${diffs} of ${bb.length} differ` : `${k}: bit-exact (${bb.length})`);
      if (diffs) failures.push(`${k} [${bt.shape}]: ${diffs} of ${bb.length} elements differ in bits, first at ${first}: browser ${bv[first]} vs deno ${dv[first]} (relative L2 ${relL2(bv, dv).toExponential(1)})`);
    } else {
      const err = relL2(bv, dv);
      report.push(`${k}: ${err.toExponential(1)}`);
      // (`!(err <= tol)` also catches NaN)
      if (!checked && !(err <= 1e-5)) failures.push(`${k} [${bt.shape}]: relative L2 browser vs deno ${err.toExponential(2)} > 1e-5`);
    }
  }
  return { report, failures };
}

/** Runs the cases named (all by default) on this host's WebGPU adapter. */
export async function runSuite(seed: number, names?: string[]): Promise<SuiteResult> {
  const rt = await init();
  const g = globalThis as { Deno?: { version: { deno: string } }; navigator?: { userAgent?: string } };
  const host = g.Deno ? `Deno ${g.Deno.version.deno}` : (g.navigator?.userAgent ?? 'unknown host');
  const cases: CaseResult[] = [];
  for (const c of CASES) {
    if (names && !names.includes(c.name)) continue;
    const R = new HashingRng(caseSeed(seed, c.name));
    const res: CaseResult = { name: c.name, exact: !!c.exact, inputHash: 0, outputs: {}, notes: [], ms: 0 };
    const t0 = performance.now();
    try {
      const effects: Tensor[] = [];
      const outs = c.build(R, effects, res.notes);
      res.inputHash = R.hash;
      await realize(Object.values(outs), { effects });
      const values: Record<string, Float32Array | Int32Array | Uint32Array> = {};
      for (const [k, t] of Object.entries(outs)) {
        const data = (values[k] = await read(t));
        if (t.dtype === 'f16') throw new Error(`${c.name}: output ${k} is f16; the suite compares 4-byte types only`);
        res.outputs[k] = { dtype: t.dtype, shape: t.shape, base64: toBase64(new Uint8Array(data.buffer, data.byteOffset, data.byteLength)) };
      }
      if (c.check) res.outOfBounds = c.check(values);
      dispose(...Object.values(outs));
    } catch (e) {
      res.error = (e as Error).stack ?? String(e);
      // Drain this case's pending GPU errors so they are not blamed on the next case.
      // Shader compile errors explain "pipeline is invalid" dispatch errors: keep them.
      await sync().catch((e2: Error) => (res.error += `\n${e2.message}`));
      for (const pe of pipelineErrors.splice(0)) res.error += `\n${pe.message}`;
    }
    res.ms = performance.now() - t0;
    cases.push(res);
  }
  const info = (rt.gpu.adapter as GPUAdapter & { info?: GPUAdapterInfo }).info;
  const adapterInfo: Record<string, string> = {
    vendor: info?.vendor ?? '', architecture: info?.architecture ?? '', device: info?.device ?? '', description: info?.description ?? '',
    features: [...rt.gpu.adapter.features].sort().join(' '),
    maxStorageBufferBindingSize: String(rt.device.limits.maxStorageBufferBindingSize),
    maxComputeWorkgroupStorageSize: String(rt.device.limits.maxComputeWorkgroupStorageSize),
  };
  return { adapter: rt.gpu.adapterName, adapterInfo, host, cases };
}

