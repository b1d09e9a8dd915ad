import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setKernelOverrides } from '../src/graph/kernels/overrides.ts';
import { fromData, init, read, realize } from '../src/graph/runtime.ts';
import { attention } from '../src/graph/ops/attention.ts';
import { add, mul, sumTo } from '../src/graph/ops/elementwise.ts';
import { grad, param } from '../src/graph/autograd.ts';
import type { Tensor } from '../src/graph/tensor.ts';
import { abs, dot, expectGradMatchesFiniteDiff, expectWithin, relL2, type Rng, rng } from './util.ts';
import { attentionBounds, attentionGradRef, attentionRef, type AttnDims } from './ref/attention.ts';

beforeAll(async () => {
  await init();
});

/** Causal ∧ key-padding mask [b,Sq,Sk]; optionally one fully masked row (then softmax is uniform). */
function makeMask(R: Rng, b: number, Sq: number, Sk: number, fullyMaskedRow: boolean): Float64Array {
  const m = new Float64Array(b * Sq * Sk);
  for (let bb = 0; bb < b; bb++) {
    const valid = R.int(1, Sk);
    for (let i = 0; i < Sq; i++) for (let j = 0; j < Sk; j++) m[(bb * Sq + i) * Sk + j] = j <= i && j < valid ? 1 : 0;
  }
  if (fullyMaskedRow) {
    const bb = R.int(0, b - 1), i = R.int(0, Sq - 1);
    for (let j = 0; j < Sk; j++) m[(bb * Sq + i) * Sk + j] = 0;
  }
  return m;
}

interface Case { dm: AttnDims; mask?: 'f32' | 'i32'; fullyMasked?: boolean; keepProbs: boolean; backward: boolean }

async function runCase(R: Rng, c: Case) {
  const { dm } = c;
  const { b, H, Sq, Sk, d, dv } = dm;
  const scale = 1 / Math.sqrt(d);
  const Q = R.randn(b * H * Sq * d), K = R.randn(b * H * Sk * d), V = R.randn(b * H * Sk * dv);
  const M = c.mask ? makeMask(R, b, Sq, Sk, !!c.fullyMasked) : undefined;
  const q = param(fromData(Q, [b, H, Sq, d])), k = param(fromData(K, [b, H, Sk, d])), v = param(fromData(V, [b, H, Sk, dv]));
  const mask = M ? fromData(M, [b, Sq, Sk], c.mask) : undefined;
  const { out, probs } = attention(q, k, v, { scale, mask, keepProbs: c.keepProbs });
  expect(probs === null).toBe(!c.keepProbs);
  const ref = attentionRef(Q, K, V, dm, scale, M);
  const targets: Tensor[] = [out, ...(probs ? [probs] : [])];
  let grads: (Tensor | null)[] = [];
  let GO: Float64Array | undefined, GP: Float64Array | undefined;
  if (c.backward) {
    GO = R.randn(out.size);
    let loss = sumTo(mul(out, fromData(GO, out.shape)), []);
    if (probs) {
      GP = R.randn(probs.size);
      loss = add(loss, sumTo(mul(probs, fromData(GP, probs.shape)), []));
    }
    grads = grad(loss, [q, k, v]);
    targets.push(...grads.map((g) => g!));
  }
  await realize(targets);
  const eOut = relL2(await read(out), ref.out);
  const eP = probs ? relL2(await read(probs), ref.probs) : 0;
  const errs: Record<string, number> = { out: eOut, probs: eP };
  // Per element within the f32 error model of tests/ref/attention.ts attentionBounds.
  const bnd = attentionBounds(Q, K, V, dm, scale, M, GO, GP);
  const what = `attention ${JSON.stringify(dm)} mask=${c.mask ?? 'none'}`;
  expectWithin(await read(out), ref.out, bnd.out, `${what} out`);
  if (probs) expectWithin(await read(probs), ref.probs, bnd.probs, `${what} probs`);
  if (M && probs) {
    // Masked probabilities are exactly 0 unless the whole row is masked (then 1/Sk).
    const P = await read(probs);
    for (let bh = 0; bh < b * H; bh++)
      for (let i = 0; i < Sq; i++) {
        const bb = Math.floor(bh / H);
        const row = M.subarray((bb * Sq + i) * Sk, (bb * Sq + i + 1) * Sk);
        const all = row.every((x) => x === 0);
        for (let j = 0; j < Sk; j++) if (row[j] === 0) {
          const p = P[(bh * Sq + i) * Sk + j];
          if (all) expect(Math.abs(p - 1 / Sk)).toBeLessThanOrEqual(bnd.probs[(bh * Sq + i) * Sk + j]);
          else expect(p).toBe(0);
        }
      }
  }
  if (c.backward) {
    const gref = attentionGradRef(Q, K, V, dm, scale, GO!, GP, M);
    const [gq, gk, gv] = [await read(grads[0]!), await read(grads[1]!), await read(grads[2]!)];
    errs.dq = relL2(gq, gref.dq);
    errs.dk = relL2(gk, gref.dk);
    errs.dv = relL2(gv, gref.dv);
    expectWithin(gq, gref.dq, bnd.dq!, `${what} dq`);
    expectWithin(gk, gref.dk, bnd.dk!, `${what} dk`);
    expectWithin(gv, gref.dv, bnd.dv!, `${what} dv`);
  }
  console.log(`attention ${JSON.stringify(dm)} mask=${c.mask ?? 'none'} keepProbs=${c.keepProbs}: rel L2 ${JSON.stringify(errs, (_, x) => typeof x === 'number' ? Number(x.toExponential(2)) : x)}`);
}

describe('attention reference', () => {
  it('analytic gradient matches finite differences (with a fully masked row)', () => {
    const R = rng('attention-ref-fd');
    const dm = { b: 2, H: 2, Sq: 3, Sk: 4, d: 3, dv: 2 };
    const scale = 0.7;
    const Q = R.randn(2 * 2 * 3 * 3), K = R.randn(2 * 2 * 4 * 3), V = R.randn(2 * 2 * 4 * 2);
    const M = makeMask(R, 2, 3, 4, true);
    const GO = R.randn(2 * 2 * 3 * 2), GP = R.randn(2 * 2 * 3 * 4);
    const L = (q: Float64Array, k: Float64Array, v: Float64Array) => {
      const r = attentionRef(q, k, v, dm, scale, M);
      return dot(r.out, GO) + dot(r.probs, GP);
    };
    const g = attentionGradRef(Q, K, V, dm, scale, GO, GP, M);
    expectGradMatchesFiniteDiff(g.dq, (x) => L(x, K, V), Q, 1e-6, 'reference dq');
    expectGradMatchesFiniteDiff(g.dk, (x) => L(Q, x, V), K, 1e-6, 'reference dk');
    expectGradMatchesFiniteDiff(g.dv, (x) => L(Q, K, x), V, 1e-6, 'reference dv');
  });
});

// Both kernel families on any adapter (REGISTER: the CPU adapters' forward and probabilities).
for (const kern of ['register', 'tiled'] as const) describe(`attention (GPU, ${kern}) against the float64 reference`, () => {
  const R = rng(`attention-${kern}`);
  beforeAll(() => setKernelOverrides({ attention: kern }));
  afterAll(() => setKernelOverrides({ attention: undefined }));
  it('self-attention, odd sizes, no mask, probs kept, backward', async () => {
    const S = R.int(1, 37);
    await runCase(R, { dm: { b: R.int(1, 2), H: R.int(1, 3), Sq: S, Sk: S, d: R.int(3, 33), dv: R.int(1, 29) }, keepProbs: true, backward: true });
  });
  it('causal + padding f32 mask with a fully masked row, backward through out and probs', async () => {
    const S = R.int(5, 30);
    await runCase(R, { dm: { b: 2, H: R.int(1, 3), Sq: S, Sk: S, d: R.int(2, 24), dv: R.int(2, 24) }, mask: 'f32', fullyMasked: true, keepProbs: true, backward: true });
  });
  it('i32 mask, probs not kept (backward recomputes them)', async () => {
    const S = R.int(5, 30);
    await runCase(R, { dm: { b: 2, H: 2, Sq: S, Sk: S, d: R.int(4, 20), dv: R.int(4, 20) }, mask: 'i32', keepProbs: false, backward: true });
  });
  it('cross-attention, Sk = 49 image tokens, tiny-model head size 24', async () => {
    await runCase(R, { dm: { b: 2, H: 4, Sq: R.int(1, 12), Sk: 49, d: 24, dv: 24 }, keepProbs: false, backward: true });
  });
  it('paper head size d = 96 (QB=16) and d = 130 (smaller tiles), T = 80', async () => {
    await runCase(R, { dm: { b: 1, H: 1, Sq: 80, Sk: 80, d: 96, dv: 96 }, mask: 'f32', keepProbs: true, backward: false });
    await runCase(R, { dm: { b: 1, H: 1, Sq: 17, Sk: 49, d: 130, dv: 67 }, keepProbs: false, backward: true });
  });
});

// One query row (decoding steps): 'auto' runs the ONE_Q kernel, whose row statistics also
// feed the backward's re-materialised probabilities.
describe('attention with one query row (ONE_Q kernel) against the float64 reference', () => {
  const R = rng('attention-one-query');
  /** A key-padding mask [b,1,Sk] (a decoding step sees a prefix); optionally one row fully masked. */
  const prefixMask = (b: number, Sk: number, fullyMasked: boolean) => {
    const m = new Float64Array(b * Sk);
    for (let bb = 0; bb < b; bb++) {
      const valid = R.int(1, Sk);
      for (let j = 0; j < valid; j++) m[bb * Sk + j] = 1;
    }
    if (fullyMasked) m.fill(0, 0, Sk);
    return m;
  };
  it('decoder self-attention over a cache: paper head size 96, prefix mask, probs kept, backward', async () => {
    const b = R.int(1, 4), Sk = R.int(20, 80);
    await runCaseMask(R, { b, H: R.int(1, 8), Sq: 1, Sk, d: 96, dv: 96 }, prefixMask(b, Sk, false), true);
  });
  it('cross-attention to 49 image tokens, no mask, odd head sizes, backward', async () => {
    await runCase(R, { dm: { b: R.int(1, 3), H: R.int(1, 4), Sq: 1, Sk: 49, d: R.int(3, 40), dv: R.int(1, 40) }, keepProbs: R.next() < 0.5, backward: true });
  });
  it('a fully masked row gives uniform probabilities; more keys than lanes, few keys', async () => {
    const b = 2, Sk = R.int(65, 300);
    await runCaseMask(R, { b, H: 2, Sq: 1, Sk, d: R.int(2, 20), dv: R.int(2, 20) }, prefixMask(b, Sk, true), true);
    await runCase(R, { dm: { b: 1, H: 3, Sq: 1, Sk: R.int(1, 3), d: R.int(1, 9), dv: R.int(1, 9) }, keepProbs: true, backward: true });
  });
});

/** runCase with a given f32 mask [b,1,Sk] (Sq = 1). */
async function runCaseMask(R: Rng, dm: AttnDims, M: Float64Array, keepProbs: boolean) {
  const { b, H, Sk, d, dv } = dm;
  const scale = 1 / Math.sqrt(d);
  const Q = R.randn(b * H * d), K = R.randn(b * H * Sk * d), V = R.randn(b * H * Sk * dv);
  const q = param(fromData(Q, [b, H, 1, d])), k = param(fromData(K, [b, H, Sk, d])), v = param(fromData(V, [b, H, Sk, dv]));
  const { out, probs } = attention(q, k, v, { scale, mask: fromData(M, [b, 1, Sk]), keepProbs });
  const GO = R.randn(out.size);
  const grads = grad(sumTo(mul(out, fromData(GO, out.shape)), []), [q, k, v]);
  await realize([out, ...(probs ? [probs] : []), ...grads.map((g) => g!)]);
  const ref = attentionRef(Q, K, V, dm, scale, M);
  const gref = attentionGradRef(Q, K, V, dm, scale, GO, undefined, M);
  const bnd = attentionBounds(Q, K, V, dm, scale, M, GO);
  const got = {
    out: await read(out), probs: probs ? await read(probs) : null,
    dq: await read(grads[0]!), dk: await read(grads[1]!), dv: await read(grads[2]!),
  };
  const errs = {
    out: relL2(got.out, ref.out), probs: got.probs ? relL2(got.probs, ref.probs) : 0,
    dq: relL2(got.dq, gref.dq), dk: relL2(got.dk, gref.dk), dv: relL2(got.dv, gref.dv),
  };
  console.log(`attention one query ${JSON.stringify(dm)}: rel L2 ${JSON.stringify(errs)}`);
  // Per element within the f32 error model of tests/ref/attention.ts attentionBounds.
  const what = `attention one query ${JSON.stringify(dm)}`;
  expectWithin(got.out, ref.out, bnd.out, `${what} out`);
  if (got.probs) expectWithin(got.probs, ref.probs, bnd.probs, `${what} probs`);
  expectWithin(got.dq, gref.dq, bnd.dq!, `${what} dq`);
  expectWithin(got.dk, gref.dk, bnd.dk!, `${what} dk`);
  expectWithin(got.dv, gref.dv, bnd.dv!, `${what} dv`);
  if (probs) {
    const P = await read(probs);
    for (let bh = 0; bh < b * H; bh++) {
      const row = M.subarray(Math.floor(bh / H) * Sk, (Math.floor(bh / H) + 1) * Sk);
      const all = row.every((x) => x === 0);
      for (let j = 0; j < Sk; j++) if (row[j] === 0) {
        if (all) expect(Math.abs(P[bh * Sk + j] - 1 / Sk)).toBeLessThanOrEqual(bnd.probs[bh * Sk + j]);
        else expect(P[bh * Sk + j]).toBe(0);
      }
    }
  }
}
