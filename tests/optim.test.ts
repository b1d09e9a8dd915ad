import { beforeAll, describe, expect, it } from 'vitest';
import { fromData, init, read, realize, runtime } from '../src/graph/runtime.ts';
import { AdamW, clipGradNorm } from '../src/graph/ops/optim.ts';
import { scale } from '../src/graph/ops/elementwise.ts';
import { param } from '../src/graph/autograd.ts';
import type { Tensor } from '../src/graph/tensor.ts';
import { expectWithin, relL2, rng } from './util.ts';
import { adamwErrInit, adamwErrStep, clipErr, clipRef, type AdamWErrState } from './ref/optim.ts';

beforeAll(async () => {
  const r = await init();
  console.log(`adapter: ${r.gpu.adapterName}`);
});

const R = rng('optim');
const randShape = () => (R.next() < 0.5 ? [R.int(1, 40)] : [R.int(1, 9), R.int(1, 13)]);
const numelOf = (s: number[]) => s.reduce((a, b) => a * b, 1);

describe('AdamW', () => {
  for (const amsgrad of [true, false]) {
    it(`two steps, two groups, null grads skipped, lr change (amsgrad=${amsgrad})`, async () => {
      const opts = { betas: [0.9, 0.999] as [number, number], eps: 1e-8, weightDecay: 0.1, amsgrad };
      const lrs = [0.05, 0.02];
      // group 0: 3 params, group 1: 2 params. Param (1,1) has no grad at step 1 (state starts
      // at step 2, so its bias correction uses t = 1 then); param (0,2) never has a grad.
      const shapes = [[randShape(), randShape(), randShape()], [randShape(), randShape()]];
      const P0 = shapes.map((g) => g.map((s) => R.randn(numelOf(s))));
      const params = shapes.map((g, gi) => g.map((s, pi) => param(fromData(P0[gi][pi], s), `p${gi}${pi}`)));
      const opt = new AdamW(params.map((ps, gi) => ({ params: ps, lr: lrs[gi] })), opts);
      const refP = P0.map((g) => g.map((a) => Float64Array.from(a)));
      const refS: AdamWErrState[][] = P0.map((g) => g.map((a) => adamwErrInit(a.length)));
      const hasGrad = (step: number, gi: number, pi: number) => !(gi === 0 && pi === 2) && !(step === 0 && gi === 1 && pi === 1);
      let before: Float64Array[][] = P0;
      for (let step = 0; step < 2; step++) {
        if (step === 1) {
          opt.setLr(1, 0.03);
          lrs[1] = 0.03;
        }
        const grads = new Map<Tensor, Tensor | null>();
        // At step 2 about half the elements get a 100× smaller gradient, so v decreases there
        // and amsgrad's running max differs from v.
        const G = shapes.map((g, gi) => g.map((s, pi) => (hasGrad(step, gi, pi) ? R.randn(numelOf(s), 0.5 + R.next()).map((x) => (step === 1 && R.next() < 0.5 ? Math.fround(x * 0.01) : x)) : null)));
        shapes.forEach((g, gi) => g.forEach((s, pi) => grads.set(params[gi][pi], G[gi][pi] ? fromData(G[gi][pi]!, s) : null)));
        const effects = opt.step(grads);
        expect(effects.length).toBe(step === 0 ? 3 : 4);
        await realize([], { effects });
        for (let gi = 0; gi < 2; gi++) for (let pi = 0; pi < shapes[gi].length; pi++) {
          if (G[gi][pi]) adamwErrStep(refP[gi][pi], G[gi][pi]!, refS[gi][pi], { lr: lrs[gi], beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1, amsgrad });
        }
        const now: Float64Array[][] = [];
        for (let gi = 0; gi < 2; gi++) {
          now.push([]);
          for (let pi = 0; pi < shapes[gi].length; pi++) {
            const got = Float64Array.from(await read(params[gi][pi]));
            now[gi].push(got);
            const label = `step ${step + 1} param ${gi}.${pi}`;
            if (!G[gi][pi] && !(step === 1 && gi === 1 && pi === 1)) {
              // Skipped entirely: bit-identical, no weight decay.
              expect(Array.from(got), label).toEqual(Array.from(before[gi][pi]));
            }
            // Per element within the f32 error model carried through the steps (tests/ref/optim.ts
            // adamwErrStep): ≈ u·|p| plus the update's few-ULP error, so it pins the update too.
            expectWithin(got, refP[gi][pi], refS[gi][pi].ep, label);
          }
        }
        before = now;
      }
      // State tensors (for the params that have state) match the reference moments.
      const sd = opt.stateDict();
      expect(sd.meta.steps).toEqual({ '0.0': 2, '0.1': 2, '1.0': 2, '1.1': 1 });
      expect(sd.meta.stepCount).toBe(2);
      for (const [key, st] of Object.entries(sd.meta.steps)) {
        void st;
        const [gi, pi] = key.split('.').map(Number);
        const ref = refS[gi][pi];
        expectWithin(await read(sd.tensors[`${key}.exp_avg`]), ref.m, ref.em, `${key}.exp_avg`);
        expectWithin(await read(sd.tensors[`${key}.exp_avg_sq`]), ref.v, ref.ev, `${key}.exp_avg_sq`);
        if (amsgrad) expectWithin(await read(sd.tensors[`${key}.max_exp_avg_sq`]), ref.vmax, ref.evmax, `${key}.max_exp_avg_sq`);
        else expect(sd.tensors[`${key}.max_exp_avg_sq`]).toBeUndefined();
      }
    });
  }

  it('effects run after the other nodes of the same realize (readers see the old param)', async () => {
    const n = R.int(1, 50);
    const P0 = R.randn(n);
    const p = param(fromData(P0, [n]));
    const opt = new AdamW([{ params: [p], lr: 0.1 }], { betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0, amsgrad: true });
    const y = scale(p, 2);
    const effects = opt.step(new Map([[p, fromData(R.randn(n), [n])]]));
    await realize([y], { effects });
    expect(relL2(await read(y), Float64Array.from(P0, (v) => 2 * v))).toBe(0);
    expect(relL2(await read(p), P0)).toBeGreaterThan(1e-3);
  });

  it('guard: a non-finite guard value skips the update on the GPU', async () => {
    const n = R.int(1, 50);
    const P0 = R.randn(n);
    const p = param(fromData(P0, [n]));
    const opt = new AdamW([{ params: [p], lr: 0.1 }], { betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01, amsgrad: true });
    const g = R.randn(n);
    await realize([], { effects: opt.step(new Map([[p, fromData(g, [n])]]), { guard: fromData([NaN], [1]) }) });
    expect(Array.from(await read(p))).toEqual(Array.from(Float32Array.from(P0)));
    await realize([], { effects: opt.step(new Map([[p, fromData(g, [n])]]), { guard: fromData([Infinity], [1]) }) });
    expect(Array.from(await read(p))).toEqual(Array.from(Float32Array.from(P0)));
    await realize([], { effects: opt.step(new Map([[p, fromData(g, [n])]]), { guard: fromData([1.5], [1]) }) });
    expect(relL2(await read(p), P0)).toBeGreaterThan(1e-3);
  });

  it('f16 gradients with gradScale: the same update as the f32 gradient f32(g)·gradScale, bit for bit', async () => {
    // Mixed-precision training hands AdamW f16 gradients of the loss times the loss scale S and
    // gradScale = 1/S. The kernel reads f32(g)·gradScale: f16 → f32 is exact and S is a power of
    // two, so the product is exact (no f32 overflow or underflow at these magnitudes) and the
    // update must equal, bit for bit, the f32 update on the host-unscaled gradient.
    if (!runtime().gpu.hasF16) return;
    const n = R.int(1, 300);
    const P0 = R.randn(n);
    const S = 2 ** R.int(0, 16);
    // f16 values of S·g (|S·g| < 65504 for |g| < 1).
    const G16 = Float32Array.from(R.uniform(n, -1, 1), (x) => x * S);
    const g16 = fromData(G16, [n], 'f16');
    const G16r = await read(g16); // the f16-rounded values the kernel sees
    const pa = param(fromData(P0, [n])), pb = param(fromData(P0, [n]));
    const o = { betas: [0.9, 0.999] as [number, number], eps: 1e-8, weightDecay: 0.01, amsgrad: true };
    const A = new AdamW([{ params: [pa], lr: 0.01 }], o), B = new AdamW([{ params: [pb], lr: 0.01 }], o);
    for (let step = 0; step < 2; step++) {
      await realize([], { effects: [...A.step(new Map([[pa, g16]]), { gradScale: 1 / S }), ...B.step(new Map([[pb, fromData(Float32Array.from(G16r, (x) => x / S), [n])]]))] });
    }
    expect(Array.from(await read(pa))).toEqual(Array.from(await read(pb)));
    for (const k of ['0.0.exp_avg', '0.0.exp_avg_sq', '0.0.max_exp_avg_sq']) expect(Array.from(await read(A.stateDict().tensors[k])), k).toEqual(Array.from(await read(B.stateDict().tensors[k])));
    // The norm guard of mixed-precision steps: clipGradNorm's norm and clipped gradients of the f16
    // gradients with gradScale equal those of the unscaled f32 gradients (same values, same order).
    const ca = clipGradNorm([g16], 0.5, { gradScale: 1 / S }), cb = clipGradNorm([fromData(Float32Array.from(G16r, (x) => x / S), [n])], 0.5);
    await realize([ca.totalNorm, cb.totalNorm, ca.grads[0], cb.grads[0]]);
    expect(ca.grads[0].dtype).toBe('f32');
    expect((await read(ca.totalNorm))[0]).toBe((await read(cb.totalNorm))[0]);
    expect(Array.from(await read(ca.grads[0]))).toEqual(Array.from(await read(cb.grads[0])));
    expect(() => A.step(new Map([[pa, g16]]), { gradScale: 0 })).toThrow(/gradScale 0/);
    expect(() => clipGradNorm([g16], 1, { gradScale: Infinity })).toThrow(/gradScale Infinity/);
  });

  it('stateDict / loadStateDict round trip continues identically', async () => {
    const shapes = [randShape(), randShape()];
    const P0 = shapes.map((s) => R.randn(numelOf(s)));
    const mk = () => shapes.map((s, i) => param(fromData(P0[i], s)));
    const pa = mk(), pb = mk();
    const o = { betas: [0.8, 0.99] as [number, number], eps: 1e-6, weightDecay: 0.05, amsgrad: true };
    const A = new AdamW([{ params: [pa[0]], lr: 0.01 }, { params: [pa[1]], lr: 0.02 }], o);
    const G1 = shapes.map((s) => R.randn(numelOf(s))), G2 = shapes.map((s) => R.randn(numelOf(s)));
    await realize([], { effects: A.step(new Map(pa.map((p, i) => [p, fromData(G1[i], shapes[i])]))) });
    // Copy params and state into a fresh optimiser, as a checkpoint would.
    const sd = A.stateDict();
    const host: Record<string, Float32Array> = {};
    for (const [k, t] of Object.entries(sd.tensors)) host[k] = (await read(t)) as Float32Array;
    for (let i = 0; i < 2; i++) {
      const { writeData } = await import('../src/graph/runtime.ts');
      writeData(pb[i], await read(pa[i]));
    }
    const B = new AdamW([{ params: [pb[0]], lr: 0.5 }, { params: [pb[1]], lr: 0.5 }], o);
    B.loadStateDict({ tensors: host, meta: JSON.parse(JSON.stringify(sd.meta)) });
    expect(B.stepCount).toBe(1);
    expect(B.getLr(1)).toBe(0.02);
    await realize([], { effects: [...A.step(new Map(pa.map((p, i) => [p, fromData(G2[i], shapes[i])]))), ...B.step(new Map(pb.map((p, i) => [p, fromData(G2[i], shapes[i])])))] });
    for (let i = 0; i < 2; i++) expect(Array.from(await read(pb[i]))).toEqual(Array.from(await read(pa[i])));
    expect(() => B.loadStateDict({ tensors: {}, meta: { ...sd.meta, steps: { '0.0': 1 } } })).toThrow(/missing 0\.0\.exp_avg/);
  });
});

describe('clipGradNorm', () => {
  it('total norm and clipped gradients vs float64 (clipping and not clipping)', async () => {
    // One tensor past 256·256 elements exercises the strided per-thread loop.
    const shapes = [randShape(), [R.int(1, 7), R.int(1, 30)], [70000 + R.int(0, 999)]];
    const G = shapes.map((s) => R.randn(numelOf(s)));
    const grads = shapes.map((s, i) => fromData(G[i], s));
    const total = clipRef(G, 1).total;
    for (const maxNorm of [total * (0.1 + 0.5 * R.next()), total * 2]) {
      const out = clipGradNorm(grads, maxNorm);
      await realize([out.totalNorm, ...out.grads]);
      // Within the f32 error model of tests/ref/optim.ts clipErr.
      const ref = clipErr(G, maxNorm);
      expectWithin(await read(out.totalNorm), [ref.total], [ref.totalBound], 'total norm');
      for (let i = 0; i < G.length; i++) expectWithin(await read(out.grads[i]), ref.grads[i], ref.gradBounds[i], `clipped grads[${i}] (maxNorm ${maxNorm})`);
    }
    expect(() => clipGradNorm(grads, 0)).toThrow(/maxNorm/);
  });
});
