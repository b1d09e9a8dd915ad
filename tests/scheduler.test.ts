// The scheduler (src/graph/scheduler.ts) without a GPU: hand-built graphs with known node order,
// lifetimes, buffer reuse and peak bytes, and random graphs against a brute-force reference
// (ancestors by closure, lifetimes from the readers' positions, peak as the largest sum over
// steps of the tensors live there, no two tensors in one buffer at once).
import { describe, expect, it } from 'vitest';
import { bufferBytes, planSchedule, REMATERIALIZE_GAP, type SchedulePlan, scheduleNodes } from '../src/graph/scheduler.ts';
import { makeNode, type Node, Tensor } from '../src/graph/tensor.ts';
import { rng } from './util.ts';

/** A leaf that already has data (a weight): the scheduler never runs or frees it. */
function leaf(n: number): Tensor {
  const t = new Tensor([n]);
  t.storage = { buffer: {} as GPUBuffer, bytes: t.bytes };
  t.kept = true;
  return t;
}

const op = (name: string, inputs: Tensor[], ...sizes: number[]) => makeNode(name, inputs, sizes.map((n) => ({ shape: [n] })), { encode() {} });
const view = (x: Tensor) => makeNode('reshape', [x], [{ shape: [x.size] }], { view: true })[0];
const names = (ns: Node[]) => ns.map((n) => n.op);

describe('scheduler (no GPU)', () => {
  it('a diamond: order, lifetimes, peak, and a released buffer reused without aliasing a live one', () => {
    const x = leaf(256);
    const [a] = op('a', [x], 256); // 1 KiB
    const [b] = op('b', [a], 1024); // 4 KiB
    const [c] = op('c', [a, b], 256); // 1 KiB
    const [d] = op('d', [c], 256); // 1 KiB, the target
    const plan = planSchedule([d], [], (t) => t === d);
    expect(names(plan.steps.map((s) => s.node))).toEqual(['a', 'b', 'c', 'd']);
    const lt = (t: Tensor) => plan.lifetimes.get(t)!;
    expect([lt(a).start, lt(a).end]).toEqual([0, 2]);
    expect([lt(b).start, lt(b).end]).toEqual([1, 2]);
    expect([lt(c).start, lt(c).end]).toEqual([2, 3]);
    expect([lt(d).start, lt(d).end]).toEqual([3, Infinity]);
    expect(plan.steps[2].release).toEqual([a, b]);
    // c is allocated while a is still live (c reads a): a new buffer. d reuses a's buffer (free
    // since step 2), not c's, which d reads.
    expect(lt(c).slot).not.toBe(lt(a).slot);
    expect(lt(d).slot).toBe(lt(a).slot);
    expect(lt(d).slot).not.toBe(lt(c).slot);
    expect(plan.slotBytes).toEqual([1024, 4096, 1024]);
    // Step 2 holds a, b and c: 1 + 4 + 1 KiB.
    expect(plan.peakBytes).toBe(6144);
    expect(plan.largest.bytes).toBe(4096);
    expect(plan.largest.what).toMatch(/^b\(f32\[256\]\) → f32\[1024\]$/);
  });

  it('views allocate nothing and extend their root; unread outputs are freed at once; effects run last', () => {
    const x = leaf(64);
    const [e] = makeNode('update', [x], [{ shape: [1] }], { encode() {}, effect: true });
    const [p, unused] = op('two_out', [x], 64, 512);
    const v = view(p);
    const [q] = op('q', [v], 64);
    const [r] = op('r', [v, q], 64);
    const plan = planSchedule([r], [e], (t) => t === r);
    expect(names(plan.steps.map((s) => s.node))).toEqual(['two_out', 'reshape', 'q', 'r', 'update']);
    expect(plan.steps[1].allocate).toEqual([]);
    expect(plan.lifetimes.has(v)).toBe(false);
    // The second output has no reader: released right after its producer.
    expect(plan.lifetimes.get(unused)!.end).toBe(0);
    expect(plan.steps[0].release).toEqual([unused]);
    // p lives until r, its last reader through the view.
    expect(plan.lifetimes.get(p)!.end).toBe(3);
    // Peak at step 0: p (256 B class) + unused (2048 B).
    expect(plan.peakBytes).toBe(256 + 2048);
    // The effect's output is unread and not kept: freed after it.
    expect(plan.lifetimes.get(e)!.end).toBe(4);
  });

  it('tensors with data are not run again; a freed one is an error naming it', () => {
    const x = leaf(8);
    const [a] = op('a', [x], 8);
    a.storage = { buffer: {} as GPUBuffer, bytes: a.bytes };
    const [b] = op('b', [a], 8);
    expect(names(scheduleNodes([b]))).toEqual(['b']);
    a.storage = null;
    a.freed = true;
    expect(() => scheduleNodes([b])).toThrow(/already freed after its last use/);
  });

  it('a training step: weight gradients run in the order the backward made them, not the order they are listed', () => {
    // L layers: forward a_i = fwd(a_{i-1}, w_i); backward from g_L: per layer the activation
    // gradient g_{i-1} = dx(g_i, w_i), then the weight gradient dw_i = dw(g_i, a_{i-1}), as
    // autograd builds them (last layer first). The optimiser's updates (effects), and under mixed
    // precision a norm over the weight gradients (a target: the overflow guard), list them
    // first layer first (parameter order). Visited in that order, dw_1 would pull in the whole
    // dx chain while every a_i and g_i waits for its dw: peak (2L - 1) activations + one dw. In
    // creation order each dw runs right after its g and frees the activation it read: peak
    // L + 1 activations (a_1..a_L and g_L).
    const L = 4, A = 1024, D = 256; // activations 4 KiB, weight gradients 1 KiB
    for (const withNorm of [true, false]) {
      const x = leaf(A);
      const w = Array.from({ length: L }, () => leaf(D));
      const a: Tensor[] = [x];
      for (let i = 1; i <= L; i++) a.push(op(`fwd${i}`, [a[i - 1], w[i - 1]], A)[0]);
      const [loss] = op('loss', [a[L]], 1);
      const g: Tensor[] = [];
      g[L] = op('dloss', [a[L]], A)[0];
      const dw: Tensor[] = [];
      for (let i = L; i >= 1; i--) {
        if (i > 1) g[i - 1] = op(`dx${i}`, [g[i], w[i - 1]], A)[0];
        dw[i] = op(`dw${i}`, [g[i], a[i - 1]], D)[0];
      }
      const listed = dw.slice(1); // dw1 … dwL: parameter order
      const targets = [loss];
      if (withNorm) targets.push(op('norm', listed, 1)[0]);
      const updates = listed.map((d, i) => makeNode(`update${i + 1}`, [w[i], d, ...targets.slice(1)], [{ shape: [1] }], { encode() {}, effect: true })[0]);
      const plan = planSchedule(targets, updates, (t) => targets.includes(t));
      const order = names(plan.steps.map((s) => s.node));
      // With the norm every update reads it, the newest computed input of each: the updates keep
      // their listed order. Without it, each update's place is its gradient's.
      expect(order, withNorm ? 'with a norm' : 'updates only').toEqual([
        'fwd1', 'fwd2', 'fwd3', 'fwd4', 'loss', 'dloss', 'dw4', 'dx4', 'dw3', 'dx3', 'dw2', 'dx2', 'dw1',
        ...(withNorm ? ['norm', 'update1', 'update2', 'update3', 'update4'] : ['update4', 'update3', 'update2', 'update1']),
      ]);
      // Each forward activation is released by the weight gradient that reads it.
      for (let i = 1; i < L; i++) expect(plan.lifetimes.get(a[i])!.end, `a${i}`).toBe(order.indexOf(`dw${i + 1}`));
      // Peak at dloss: a_1..a_L, g_L and the loss (4-byte class).
      expect(plan.peakBytes).toBe((L + 1) * 4 * A + bufferBytes(4));
      expect(plan.peakBytes).toBeLessThan((2 * L - 1) * 4 * A);
    }
  });

  it('random graphs match a brute-force reference', () => {
    const R = rng('scheduler random graphs');
    for (let trial = 0; trial < 40; trial++) {
      const pool: Tensor[] = Array.from({ length: R.int(1, 3) }, () => leaf(R.int(1, 4) * 64));
      const nodes: Node[] = [];
      const nNodes = R.int(1, 30);
      for (let i = 0; i < nNodes; i++) {
        const pick = () => pool[R.int(0, pool.length - 1)];
        let outs: Tensor[];
        if (R.next() < 0.15) outs = [view(pick())];
        else {
          const ins = Array.from({ length: R.int(1, 3) }, pick);
          outs = op(`n${i}`, ins, ...Array.from({ length: R.int(1, 2) }, () => R.int(1, 2000)));
        }
        nodes.push(outs[0].node!);
        pool.push(...outs);
      }
      const made = pool.filter((t) => t.node);
      const targets = Array.from({ length: R.int(1, 3) }, () => made[R.int(0, made.length - 1)]);
      const kept = new Set(targets.map((t) => t.root));
      const plan = planSchedule(targets, [], (t) => kept.has(t));
      const order = plan.steps.map((s) => s.node);
      const at = new Map(order.map((n, i) => [n, i]));

      // The nodes run: exactly the ancestors of the targets (closure over inputs) whose outputs
      // have no data yet (a view of a leaf shares the leaf's data), once each.
      const need = new Set<Node>();
      const producer = (t: Tensor) => (t.root.storage ? null : t.node);
      const stack: (Node | null)[] = targets.map(producer);
      while (stack.length) {
        const n = stack.pop();
        if (!n || need.has(n)) continue;
        need.add(n);
        for (const i of n.inputs) stack.push(producer(i));
      }
      expect(order.every((n) => need.has(n))).toBe(true);
      expect(order.length).toBe(need.size);
      // Each after the producers of its inputs.
      for (const n of order) {
        for (const i of n.inputs) {
          const pi = producer(i);
          if (pi) expect(at.get(pi)!).toBeLessThan(at.get(n)!);
        }
      }

      // Lifetimes: allocated at the producer (not views); live until the last reader of the
      // root (or the producer when unread); kept ones forever.
      const allocated = order.filter((n) => !n.view).flatMap((n) => n.outputs);
      expect(new Set(plan.lifetimes.keys())).toEqual(new Set(allocated));
      for (const t of allocated) {
        const lt = plan.lifetimes.get(t)!;
        const readers = order.filter((n) => n.inputs.some((i) => i.root === t)).map((n) => at.get(n)!);
        expect(lt.start).toBe(at.get(t.node!)!);
        expect(lt.end).toBe(kept.has(t) ? Infinity : Math.max(lt.start, ...readers));
        expect(lt.bytes).toBe(bufferBytes(t.bytes));
        expect(plan.slotBytes[lt.slot]).toBe(lt.bytes);
      }
      // No two tensors share a buffer while both are live (a reuse starts after the release step).
      for (const s of allocated) for (const t of allocated) {
        if (s === t) continue;
        const a = plan.lifetimes.get(s)!, b = plan.lifetimes.get(t)!;
        if (a.slot === b.slot) expect(a.end < b.start || b.end < a.start, `${s} and ${t} share buffer ${a.slot}`).toBe(true);
      }
      // Peak: the largest sum of bytes live at one step.
      let peak = 0;
      for (let i = 0; i < order.length; i++) {
        if (order[i].view) continue;
        let sum = 0;
        for (const lt of plan.lifetimes.values()) if (lt.start <= i && i <= lt.end) sum += lt.bytes;
        peak = Math.max(peak, sum);
      }
      expect(plan.peakBytes).toBe(peak);
    }
  });
});

/**
 * Plays a plan step by step as the runtime does (allocate into the step's slots, encode, release)
 * and checks what a rematerializing plan must never do: read a tensor that is not live, put a
 * tensor in a buffer another live tensor holds, release what is not live. Returns, per tensor,
 * how many times it was computed, and the largest sum of live bytes.
 */
function replay(plan: SchedulePlan): { runs: Map<Tensor, number>; peak: number } {
  const live = new Map<Tensor, number>(), slotOwner = new Map<number, Tensor>(), runs = new Map<Tensor, number>();
  let bytes = 0, peak = 0;
  plan.steps.forEach((s, i) => {
    s.allocate.forEach((o, k) => {
      expect(live.has(o), `step ${i}: ${o} allocated while live`).toBe(false);
      const slot = s.slots[k];
      expect(slotOwner.has(slot), `step ${i}: ${o} takes buffer ${slot}, held by ${slotOwner.get(slot)}`).toBe(false);
      expect(plan.slotBytes[slot]).toBe(bufferBytes(o.bytes));
      slotOwner.set(slot, o);
      live.set(o, slot);
      bytes += plan.slotBytes[slot];
      runs.set(o, (runs.get(o) ?? 0) + 1);
    });
    if (!s.node.view) peak = Math.max(peak, bytes);
    for (const x of s.node.inputs) {
      const r = x.root;
      expect(!!r.storage || live.has(r), `step ${i} (${s.node.op}) reads ${r}, which is not live`).toBe(true);
    }
    for (const t of s.release) {
      expect(live.has(t), `step ${i}: releases ${t}, which is not live`).toBe(true);
      slotOwner.delete(live.get(t)!);
      bytes -= plan.slotBytes[live.get(t)!];
      live.delete(t);
    }
  });
  return { runs, peak };
}

describe('scheduler: rematerialization (no GPU)', () => {
  // A weight's cast read by the forward op and, far later, by the backward op; a chain of
  // activations in between (as in a training step).
  const chain = (x: Tensor, n: number) => {
    let h = x;
    for (let i = 0; i < n; i++) h = op(`h${i}`, [h], 256)[0];
    return h;
  };

  it('a cast read again after a long gap is freed after its forward reader and run again just before the far one', () => {
    const w = leaf(4096), x = leaf(256);
    const [c] = op('cast', [w], 4096);
    c.node!.rematerialize = true;
    const [fwd] = op('fwd', [x, c], 256);
    // One large activation in the gap: holding the cast across it would add the two.
    const [big] = op('big', [chain(fwd, 2)], 8192);
    const h = chain(big, REMATERIALIZE_GAP);
    const [bwd] = op('bwd', [h, c], 256);
    const plan = planSchedule([bwd], [], (t) => t === bwd || t.kept);
    const ops = names(plan.steps.map((s) => s.node));
    expect(ops.filter((o) => o === 'cast')).toHaveLength(2);
    const second = ops.lastIndexOf('cast');
    expect(ops[second + 1]).toBe('bwd');
    expect(plan.steps[second].rerun).toBe(true);
    // Released after fwd (step 1) and after bwd.
    expect(plan.steps[1].release).toContain(c);
    expect(plan.steps[second + 1].release).toContain(c);
    const { runs, peak } = replay(plan);
    expect(runs.get(c)).toBe(2);
    expect(plan.peakBytes).toBe(peak);
    // Rematerialized, the 16 KiB cast and the 32 KiB activation are never live together.
    expect(plan.peakBytes).toBeLessThan(bufferBytes(4096 * 4) + bufferBytes(8192 * 4));

    // Without the flag: one run, live from fwd to bwd.
    c.node!.rematerialize = false;
    const held = planSchedule([bwd], [], (t) => t === bwd || t.kept);
    expect(replay(held).runs.get(c)).toBe(1);
    expect(held.peakBytes).toBeGreaterThanOrEqual(bufferBytes(4096 * 4) + bufferBytes(8192 * 4));
  });

  it('readers within the gap share one run; a node whose input is not kept, or whose output is, is never run again', () => {
    const w = leaf(512), x = leaf(64);
    const [c] = op('cast', [w], 512);
    c.node!.rematerialize = true;
    const [a] = op('a', [x, c], 64);
    const h = chain(a, REMATERIALIZE_GAP - 2);
    const [b] = op('b', [h, c], 64);
    expect(replay(planSchedule([b], [], (t) => t === b || t.kept)).runs.get(c)).toBe(1);

    // Input computed in this realize and not kept: it would be gone when the node runs again.
    const [y] = op('y', [x], 512);
    const [d] = op('cast_y', [y], 512);
    d.node!.rematerialize = true;
    const [e] = op('e', [x, d], 64);
    const [f] = op('f', [chain(e, REMATERIALIZE_GAP + 4), d], 64);
    expect(replay(planSchedule([f], [], (t) => t === f || t.kept)).runs.get(d)).toBe(1);
    // Output kept: it must stay.
    const [g] = op('g', [chain(a, REMATERIALIZE_GAP + 4), c], 64);
    expect(replay(planSchedule([g, c], [], (t) => t === g || t === c || t.kept)).runs.get(c)).toBe(1);
  });

  it('random graphs with rematerializable casts of leaves: every read sees a live tensor, no buffer is shared, the peak is no higher', () => {
    const R = rng('scheduler rematerialization');
    for (let trial = 0; trial < 40; trial++) {
      const weights = Array.from({ length: R.int(1, 4) }, () => leaf(R.int(1, 8) * 64));
      const casts = weights.map((w) => op('cast', [w], w.size)[0]);
      const pool: Tensor[] = [leaf(R.int(1, 4) * 64)];
      const nNodes = R.int(1, 60);
      for (let i = 0; i < nNodes; i++) {
        const pick = () => (R.next() < 0.25 ? casts[R.int(0, casts.length - 1)] : pool[R.int(0, pool.length - 1)]);
        if (R.next() < 0.1) { pool.push(view(pick())); continue; }
        const ins = Array.from({ length: R.int(1, 3) }, pick);
        pool.push(...op(`n${i}`, ins, ...Array.from({ length: R.int(1, 2) }, () => R.int(1, 2000))));
      }
      const made = pool.filter((t) => t.node);
      if (!made.length) continue;
      const targets = Array.from({ length: R.int(1, 3) }, () => made[R.int(0, made.length - 1)]);
      const kept = new Set(targets.map((t) => t.root));
      const isKept = (t: Tensor) => kept.has(t) || t.kept;
      for (const c of casts) c.node!.rematerialize = false;
      const plain = planSchedule(targets, [], isKept);
      for (const c of casts) c.node!.rematerialize = true;
      const plan = planSchedule(targets, [], isKept);
      const { runs, peak } = replay(plan);
      expect(plan.peakBytes).toBe(peak);
      // A rematerialized cast is live at a subset of the steps it was live at when held (a rerun
      // step holds what its reader's step held), so no step holds more bytes.
      expect(plan.peakBytes).toBeLessThanOrEqual(plain.peakBytes);
      // Every node other than the casts runs once; a cast runs once per group of readers.
      const order = plan.steps.filter((s) => !s.rerun).map((s) => s.node);
      expect(order).toEqual(plain.steps.map((s) => s.node));
      for (const c of casts) {
        const at = order.flatMap((n, i) => (n.inputs.some((x) => x.root === c) && n !== c.node ? [i] : []));
        const groups = at.length ? 1 + at.slice(1).filter((p, j) => p - at[j] > REMATERIALIZE_GAP).length : 0;
        // A kept cast (a target, or the root of a target view) stays from its one run.
        const expected = !at.length && !order.includes(c.node!) ? 0 : isKept(c) ? 1 : groups;
        expect(runs.get(c) ?? 0, `cast read at ${at}${isKept(c) ? ', kept' : ''}`).toBe(expected);
      }
    }
  });
});
