import { beforeAll, describe, expect, it } from 'vitest';
import { setKernelOverrides } from '../src/graph/kernels/overrides.ts';
import { fromData, init, read, realize } from '../src/graph/runtime.ts';
import { loadBalancingLoss, moeExperts, moePlan, topkGate } from '../src/graph/ops/moe.ts';
import { add, mul, sumTo } from '../src/graph/ops/elementwise.ts';
import { dropout } from '../src/graph/ops/random.ts';
import { reshape } from '../src/graph/ops/shape.ts';
import { grad, param } from '../src/graph/autograd.ts';
import type { Tensor } from '../src/graph/tensor.ts';
import { readFileBytes } from '../src/io/files.ts';
import { readSafetensors, toFloat32 } from '../src/io/safetensors.ts';
import { abs, dot, expectGradMatchesFiniteDiff, expectWithin, relL2, rng } from './util.ts';
import { type ActName, type ExpertRef, gateBounds, gateGradRef, gateRef, lbLossRef, moeBounds, moeRef, randomExperts, randomRoute } from './ref/moe.ts';
import { unaryErr, unaryGradErr } from './ref/elementwise-err.ts';

beforeAll(async () => {
  await init();
});

const fmt = (o: Record<string, number>) => Object.entries(o).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(', ');

describe('MoE float64 references: analytic gradients vs finite differences', () => {
  const R = rng('moe-ref-fd');
  it('gate: probs and renormalised top-k weights', () => {
    const N = 4, d = 3, E = 5, k = 2;
    const X = R.randn(N * d), W = R.randn(E * d), GP = R.randn(N * E), GW = R.randn(N * k);
    const L = (x: Float64Array, w: Float64Array) => {
      const r = gateRef(x, w, N, d, E, k);
      return dot(r.probs, GP) + dot(r.weights, GW);
    };
    const g = gateGradRef(X, W, N, d, E, k, GP, GW);
    expectGradMatchesFiniteDiff(g.dx, (x) => L(x, W), X, 1e-6, 'reference dx');
    expectGradMatchesFiniteDiff(g.dW, (w) => L(X, w), W, 1e-6, 'reference dW');
  });
  for (const [act, mode] of [['silu', 'sum'], ['gelu', 'weighted'], ['telu', 'weighted'], ['selu', 'sum']] as const) {
    it(`experts, ${act}, ${mode}`, () => {
      const N = 3, d = 3, F = 4, E = 3, k = 2;
      const X = R.randn(N * d), G = R.randn(N * d);
      const { idx, w } = randomRoute(R, N, k, [0, 1, 2]);
      const ex = randomExperts(R, E, d, F);
      const L = (x: Float64Array, exs: ExpertRef[], ww: Float64Array) => dot(moeRef(x, idx, ww, exs, N, d, F, k, act, mode).out, G);
      const r = moeRef(X, idx, w, ex, N, d, F, k, act, mode, G);
      const scale = dot(abs(moeRef(X, idx, w, ex, N, d, F, k, act, mode).out), abs(G));
      expectGradMatchesFiniteDiff(r.dx, (x) => L(x, ex, w), X, 1e-6, 'reference dx', { scale });
      expectGradMatchesFiniteDiff(r.dWeights, (ww) => L(X, ex, ww), w, 1e-6, 'reference dweights', { scale });
      // Each expert's matrices on their own: the tolerance follows the differences' rounding
      // (~u·|L|/h per element, absolute), so an expert that one token with a small activation
      // reaches (‖dW1‖ ~1e-2, sweep seed 1058749843) is checked as tightly as that allows.
      for (let e = 0; e < E; e++)
        for (const key of ['w1', 'w3', 'w2'] as const)
          expectGradMatchesFiniteDiff(r.dExp[e][key], (m) => L(X, ex.map((q, i) => (i === e ? { ...q, [key]: m } : q)), w), ex[e][key], 1e-6, `reference expert ${e} ${key}`, { scale });
    });
  }
  it('load-balancing loss', () => {
    const N = 5, E = 4;
    const Pr = R.uniform(N * E, 0.01, 1);
    expectGradMatchesFiniteDiff(lbLossRef(Pr, N, E).grad, (p) => lbLossRef(p, N, E).loss, Pr, 1e-6, 'reference load-balancing gradient');
  });
});

describe('topkGate and loadBalancingLoss (GPU)', () => {
  const R = rng('moe-gate');
  // Loss terms: probs·GP + weights·GW + lb (both gradient inputs), lb only ('sum' mode
  // training: no weights gradient), weights·GW only (no probs gradient).
  for (const [E, k, terms] of [[4, 2, 'all'], [6, 3, 'lb'], [5, 1, 'weights'], [8, 2, 'weights']] as const) {
    it(`E=${E}, k=${k}, loss terms ${terms}: probs, indices, weights and gradients to x and gateW`, async () => {
      const N = 24, d = R.int(5, 40);
      const X = R.randn(N * d), W = R.randn(E * d, 0.5), GP = R.randn(N * E), GW = R.randn(N * k);
      const x = param(fromData(X, [N, d])), w = param(fromData(W, [E, d]));
      const gate = topkGate(x, w, k);
      const lb = loadBalancingLoss(gate.probs);
      if (terms !== 'all') GP.fill(0);
      if (terms === 'lb') GW.fill(0);
      const wTerm = sumTo(mul(gate.weights, fromData(GW, [N, k])), []);
      const loss = terms === 'all' ? add(add(sumTo(mul(gate.probs, fromData(GP, [N, E])), []), wTerm), lb) : terms === 'lb' ? lb : wTerm;
      const [gx, gw] = grad(loss, [x, w]);
      await realize([gate.probs, gate.indices, gate.weights, lb, gx!, gw!]);
      const ref = gateRef(X, W, N, d, E, k);
      const lbRef = lbLossRef(ref.probs, N, E);
      // The lb loss adds lbRef.grad to the probs' gradient.
      const GPtot = GP.map((v, i) => v + (terms === 'weights' ? 0 : lbRef.grad[i]));
      const gref = gateGradRef(X, W, N, d, E, k, GPtot, GW);
      expect(Array.from(await read(gate.indices))).toEqual(Array.from(ref.indices));
      const got = { probs: await read(gate.probs), weights: await read(gate.weights), lb: await read(lb), dx: await read(gx!), dW: await read(gw!) };
      const errs = {
        probs: relL2(got.probs, ref.probs), weights: relL2(got.weights, ref.weights),
        lb: Math.abs(got.lb[0] - lbRef.loss) / Math.abs(lbRef.loss),
        dx: relL2(got.dx, gref.dx), dW: relL2(got.dW, gref.dW),
      };
      console.log(`topkGate N=${N} d=${d} E=${E} k=${k} loss ${terms}: rel L2 ${fmt(errs)}`);
      // Per element within the f32 error model of tests/ref/moe.ts gateBounds.
      const bnd = gateBounds(X, W, N, d, E, k, GP, terms !== 'weights', GW);
      const what = `topkGate E=${E} k=${k} ${terms}`;
      expectWithin(got.probs, ref.probs, bnd.probs, `${what} probs`);
      expectWithin(got.weights, ref.weights, bnd.weights, `${what} weights`);
      expectWithin(got.lb, [lbRef.loss], [bnd.lb], `${what} lb`);
      expectWithin(got.dx, gref.dx, bnd.dx!, `${what} dx`);
      expectWithin(got.dW, gref.dW, bnd.dW!, `${what} dW`);
    });
  }
  it('ties go to the lower expert index', async () => {
    const N = 7, d = 9, E = 6, k = 3;
    const X = R.randn(N * d), W = R.randn(E * d);
    W.copyWithin(3 * d, 1 * d, 2 * d);   // experts 1 and 3 identical, so are 0 and 5
    W.copyWithin(5 * d, 0, d);
    const gate = topkGate(fromData(X, [N, d]), fromData(W, [E, d]), k);
    await realize([gate.indices]);
    const idx = await read(gate.indices);
    expect(Array.from(idx)).toEqual(Array.from(gateRef(X, W, N, d, E, k).indices));
    for (let t = 0; t < N; t++) {
      const row = Array.from(idx.subarray(t * k, t * k + k));
      if (row.includes(3)) expect(row.indexOf(1)).toBeGreaterThanOrEqual(0);   // 1 is picked whenever its twin 3 is
      if (row.includes(1) && row.includes(3)) expect(row.indexOf(1)).toBeLessThan(row.indexOf(3));
      if (row.includes(0) && row.includes(5)) expect(row.indexOf(0)).toBeLessThan(row.indexOf(5));
    }
  });
});

describe('moeExperts (GPU) against the per-token float64 reference', () => {
  const R = rng('moe-experts');
  const cases: { N: number; d: number; F: number; E: number; k: number; act: ActName; mode: 'sum' | 'weighted'; unused?: number; rowTile?: 32 | 64 }[] = [
    { N: 24, d: 64, F: 128, E: 4, k: 2, act: 'silu', mode: 'sum' },
    { N: 24, d: 64, F: 128, E: 6, k: 3, act: 'gelu', mode: 'weighted' },
    { N: 13, d: 37, F: 50, E: 5, k: 2, act: 'telu', mode: 'weighted', unused: 3 },
    { N: 40, d: 21, F: 30, E: 3, k: 1, act: 'selu', mode: 'sum', rowTile: 64 },
    { N: 9, d: 19, F: 33, E: 4, k: 4, act: 'relu', mode: 'weighted', rowTile: 64 },
  ];
  // Both grouped-matmul kernel families on any adapter (REGISTER is the CPU adapters' default).
  for (const c of cases) for (const kern of ['register', 'tiled'] as const) {
    it(`${kern}: N=${c.N} d=${c.d} d_ff=${c.F} E=${c.E} k=${c.k} ${c.act} ${c.mode}${c.unused !== undefined ? `, expert ${c.unused} unused` : ''}${c.rowTile ? `, tile ${c.rowTile}` : ''}`, async () => {
      setKernelOverrides({ moe: kern });
      const { N, d, F, E, k, act, mode } = c;
      const allowed = [...Array(E).keys()].filter((e) => e !== c.unused);
      const { idx, w } = randomRoute(R, N, k, allowed);
      const X = R.randn(N * d), G = R.randn(N * d);
      const ex = randomExperts(R, E, d, F);
      const x = param(fromData(X, [N, d]));
      const weights = param(fromData(w, [N, k]));
      const experts = ex.map((e) => ({ w1: param(fromData(e.w1, [F, d])), w3: param(fromData(e.w3, [F, d])), w2: param(fromData(e.w2, [d, F])) }));
      const out = moeExperts(x, { indices: fromData(idx, [N, k], 'i32'), weights }, experts, act, mode, { rowTile: c.rowTile });
      const loss = sumTo(mul(out, fromData(G, [N, d])), []);
      const wrt = [x, weights, ...experts.flatMap((e) => [e.w1, e.w3, e.w2])];
      const grads = grad(loss, wrt);
      if (mode === 'sum') expect(grads[1]).toBeNull();   // the unweighted sum ignores the weights
      await realize([out, ...grads.filter((g): g is Tensor => !!g)]);
      const ref = moeRef(X, idx, w, ex, N, d, F, k, act, mode, G);
      // Per element within the f32 error model of tests/ref/moe.ts moeBounds.
      const bnd = moeBounds(X, idx, w, ex, N, d, F, k, act, mode, G, unaryErr, unaryGradErr);
      const what = `moeExperts ${kern} ${JSON.stringify(c)}`;
      const gotOut = await read(out), gotDx = await read(grads[0]!);
      expectWithin(gotOut, ref.out, bnd.out, `${what} out`);
      expectWithin(gotDx, ref.dx, bnd.dx, `${what} dx`);
      const errs: Record<string, number> = { out: relL2(gotOut, ref.out), dx: relL2(gotDx, ref.dx) };
      if (mode === 'weighted') {
        const gotW = await read(grads[1]!);
        expectWithin(gotW, ref.dWeights, bnd.dWeights, `${what} dWeights`);
        errs.dWeights = relL2(gotW, ref.dWeights);
      }
      for (let e = 0; e < E; e++) {
        const got = [await read(grads[2 + 3 * e]!), await read(grads[3 + 3 * e]!), await read(grads[4 + 3 * e]!)];
        if (e === c.unused) {
          for (const g of got) expect(g.every((v) => v === 0)).toBe(true);
          continue;
        }
        errs[`dW1[${e}]`] = relL2(got[0], ref.dExp[e].w1);
        errs[`dW3[${e}]`] = relL2(got[1], ref.dExp[e].w3);
        errs[`dW2[${e}]`] = relL2(got[2], ref.dExp[e].w2);
        expectWithin(got[0], ref.dExp[e].w1, bnd.dExp[e].w1, `${what} dW1[${e}]`);
        expectWithin(got[1], ref.dExp[e].w3, bnd.dExp[e].w3, `${what} dW3[${e}]`);
        expectWithin(got[2], ref.dExp[e].w2, bnd.dExp[e].w2, `${what} dW2[${e}]`);
      }
      setKernelOverrides({ moe: undefined });
      console.log(`moeExperts ${kern} ${JSON.stringify(c)}: rel L2 ${fmt(errs)}`);
    });
  }

  it('expertOutput (the experts\' dropout) masks each (token, expert) output separately, before the combine', async () => {
    const R2 = rng('moe-expert-dropout');
    const N = R2.int(20, 40), d = R2.int(8, 24), F = R2.int(4, 16), E = 4, k = 2;
    const X = R2.randn(N * d), ex = randomExperts(R2, E, d, F);
    const { idx, w } = randomRoute(R2, N, k, [0, 1, 2, 3]);
    const experts = ex.map((e) => ({ w1: fromData(e.w1, [F, d]), w3: fromData(e.w3, [F, d]), w2: fromData(e.w2, [d, F]) }));
    const route = { indices: fromData(idx, [N, k], 'i32'), weights: fromData(w, [N, k]) };
    const y = moeExperts(fromData(X, [N, d]), route, experts, 'silu', 'weighted', { expertOutput: (ye) => dropout(ye, 0.5, R2.int(1, 2 ** 30)) });
    await realize([y]);
    const got = await read(y);
    // Each slot's own contribution w_j·FFN_j(x_t), from the float64 reference with one slot at a time.
    const slot = (j: number) => moeRef(X, Int32Array.from({ length: N }, (_, t) => idx[t * k + j]), Float64Array.from({ length: N }, (_, t) => w[t * k + j]), ex, N, d, F, 1, 'silu', 'weighted').out;
    const a = slot(0), b = slot(1);
    let single = 0, both = 0, none = 0, bad = 0;
    for (let i = 0; i < N * d; i++) {
      const cands = [0, 2 * a[i], 2 * b[i], 2 * (a[i] + b[i])];
      const hit = cands.map((c) => Math.abs(got[i] - c) <= 1e-4 * (1 + Math.abs(c)));
      if (hit[1] || hit[2]) single++;
      else if (hit[3]) both++;
      else if (hit[0]) none++;
      else bad++;
    }
    console.log(`expert dropout p 0.5: one expert kept ${single}, both ${both}, none ${none}, other ${bad} of ${N * d}`);
    expect(bad).toBe(0);
    // One mask per expert output: about half the elements keep exactly one expert (one shared mask would give none).
    expect(single).toBeGreaterThan(0.3 * N * d);
    expect(both).toBeGreaterThan(0.1 * N * d);
    expect(() => moeExperts(fromData(X, [N, d]), route, experts, 'silu', 'sum', { expertOutput: (ye) => reshape(ye, [ye.size]) })).toThrow(/expertOutput must keep the shape/);
  });

  it('routing plan: segments padded to whole tiles, slots in order, capacity N·k + E·(tile−1)', async () => {
    const N = 11, k = 2, E = 5, tile = 32;
    const { idx } = randomRoute(R, N, k, [0, 1, 2, 4]);
    const plan = moePlan(fromData(idx, [N, k], 'i32'), E, tile);
    await realize([plan.pos, plan.rowSlot, plan.tileExpert, plan.segs]);
    const [pos, rowSlot, tileExpert, segs] = [await read(plan.pos), await read(plan.rowSlot), await read(plan.tileExpert), await read(plan.segs)];
    expect(plan.rows).toBe(Math.ceil((N * k + E * (tile - 1)) / tile) * tile);
    let base = 0;
    for (let e = 0; e < E; e++) {
      const slots = [...Array(N * k).keys()].filter((s) => idx[s] === e);
      expect([segs[2 * e], segs[2 * e + 1]]).toEqual([base, base + slots.length]);
      slots.forEach((s, i) => {
        expect(pos[s]).toBe(base + i);
        expect(rowSlot[base + i]).toBe(s);
      });
      const tiles = Math.ceil(slots.length / tile);
      for (let t = 0; t < tiles; t++) expect(tileExpert[base / tile + t]).toBe(e);
      for (let r = base + slots.length; r < base + tiles * tile; r++) expect(rowSlot[r]).toBe(-1);
      base += tiles * tile;
    }
    for (let t = base / tile; t < tileExpert.length; t++) expect(tileExpert[t]).toBe(-1);
  });

  it('gate → weighted experts: the task loss reaches gateW through the weights', async () => {
    const N = 24, d = 16, F = 24, E = 4, k = 2;
    const X = R.randn(N * d), Wg = R.randn(E * d), G = R.randn(N * d);
    const ex = randomExperts(R, E, d, F);
    const x = param(fromData(X, [N, d])), wg = param(fromData(Wg, [E, d]));
    const experts = ex.map((e) => ({ w1: fromData(e.w1, [F, d]), w3: fromData(e.w3, [F, d]), w2: fromData(e.w2, [d, F]) }));
    const route = topkGate(x, wg, k);
    const out = moeExperts(x, route, experts, 'silu', 'weighted');
    const [gx, gwg] = grad(sumTo(mul(out, fromData(G, [N, d])), []), [x, wg]);
    await realize([out, gx!, gwg!]);
    const gr = gateRef(X, Wg, N, d, E, k);
    const m = moeRef(X, gr.indices, gr.weights, ex, N, d, F, k, 'silu', 'weighted', G);
    const gg = gateGradRef(X, Wg, N, d, E, k, new Float64Array(N * E), m.dWeights);
    const got = { out: await read(out), dx: await read(gx!), dGateW: await read(gwg!) };
    const dxRef = m.dx.map((v, i) => v + gg.dx[i]);
    const errs = { out: relL2(got.out, m.out), dx: relL2(got.dx, dxRef), dGateW: relL2(got.dGateW, gg.dW) };
    console.log(`gate → weighted experts: rel L2 ${fmt(errs)}`);
    // Error models chained: the gate's weights (gateBounds) carry their error into the experts
    // (moeBounds' weightErr), whose weight gradient carries its error back into the gate's.
    const gb = gateBounds(X, Wg, N, d, E, k);
    const mb = moeBounds(X, gr.indices, gr.weights, ex, N, d, F, k, 'silu', 'weighted', G, unaryErr, unaryGradErr, gb.weights);
    const gbb = gateBounds(X, Wg, N, d, E, k, undefined, false, m.dWeights, mb.dWeights.map((v, s) => v + Math.abs(m.dWeights[s]) * 2 ** -24));
    expectWithin(got.out, m.out, mb.out, 'gate → experts out');
    expectWithin(got.dx, dxRef, mb.dx.map((v, i) => v + gbb.dx![i] + 2 ** -24 * Math.abs(dxRef[i])), 'gate → experts dx (the sum of both paths)');
    expectWithin(got.dGateW, gg.dW, gbb.dW!, 'gate → experts dGateW');
  });
});

describe('golden (PyTorch): routing and load-balancing loss from the stored gate probabilities', () => {
  for (const [name, layers] of [['tiny', 2], ['tiny-telu', 3], ['paper', 2]] as const) it(`${name}: top-k of gate_probs and lb_loss`, async () => {
    const io = readSafetensors(await readFileBytes(new URL(`../../shared/golden/${name}/io.safetensors`, import.meta.url).pathname)).tensors;
    const get = (n: string) => {
      const t = io.get(n);
      if (!t) throw new Error(`golden ${name}: ${n} missing`);
      return t;
    };
    for (let l = 0; l < layers; l++) {
      const probs = get(`moe.decoder.${l}.gate_probs`);
      const [N, E] = probs.shape;
      const idxT = get(`moe.decoder.${l}.topk_indices`);
      const k = idxT.shape[1];
      const P32 = toFloat32(probs);
      const wantIdx = Array.from(new BigInt64Array(idxT.data.slice().buffer), Number);
      // softmax(log p) = p: route the stored probabilities through the gate with gateW = I.
      const eye = new Float32Array(E * E).map((_, i) => (i % (E + 1) === 0 ? 1 : 0));
      const gate = topkGate(fromData(P32.map(Math.log), [N, E]), fromData(eye, [E, E]), k);
      const lb = loadBalancingLoss(fromData(P32, [N, E]));
      await realize([gate.indices, gate.weights, gate.probs, lb]);
      expect(Array.from(await read(gate.indices))).toEqual(wantIdx);
      const eW = relL2(await read(gate.weights), toFloat32(get(`moe.decoder.${l}.topk_scores`)));
      const eP = relL2(await read(gate.probs), P32);
      const want = toFloat32(get(`moe.decoder.${l}.lb_loss`))[0];
      const eLb = Math.abs((await read(lb))[0] - want) / Math.abs(want);
      console.log(`golden ${name} decoder ${l} (N=${N}, E=${E}, k=${k}): topk indices equal, rel err weights ${eW.toExponential(2)}, probs ${eP.toExponential(2)}, lb_loss ${eLb.toExponential(2)}`);
      expect(eW).toBeLessThan(1e-5);
      expect(eP).toBeLessThan(1e-5);
      expect(eLb).toBeLessThan(1e-5);
    }
  });
});
