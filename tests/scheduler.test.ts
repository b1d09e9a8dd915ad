// The scheduler (src/graph/scheduler.ts) without a GPU: hand-built graphs with known node order,
// lifetimes, buffer reuse and peak bytes, and random graphs against a brute-force reference
// (ancestors by closure, lifetimes from the readers' positions, peak as the largest sum over
// steps of the tensors live there, no two tensors in one buffer at once).
import { describe, expect, it } from 'vitest';
import { bufferBytes, planSchedule, scheduleNodes } from '../src/graph/scheduler.ts';
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
