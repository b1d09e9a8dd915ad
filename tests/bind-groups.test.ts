// Bind groups are freed only when the garbage collector drops them, and Mesa's lavapipe holds a
// memory mapping per bind group (vm.max_map_count, 65530 by default): long jobs died in a failed
// mmap. The runtime runs a full collection after every 16384 bind groups (collectBindGroups).
// Bind groups are also kept across realizes (src/gpu/bindgroups.ts), found again by what they
// bind, with the pool order that lets a repeated step find them: a unit test of the cache's key
// and ageing on a stand-in device (no GPU), and on the GPU a repeated training-like step that
// makes no bind group after its first run, with the same results, while a changed buffer gets
// a group of its own.
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { collectBindGroups, dispose, fromData, init, lastStats, read, realize, runtime } from '../src/graph/runtime.ts';
import { add, addScalar, mul, sumTo } from '../src/graph/ops/elementwise.ts';
import { BindGroupCache, type BufferEntry } from '../src/gpu/bindgroups.ts';
import { BufferPool } from '../src/gpu/buffers.ts';
import { grad, param } from '../src/graph/autograd.ts';
import { matmul } from '../src/graph/ops/matmul.ts';
import { rng } from './util.ts';
import { readFileSync } from 'node:fs';

type WithGc = { gc?: () => void };
const host = globalThis as unknown as WithGc;
const realGc = host.gc;

afterEach(() => {
  host.gc = realGc;
  vi.restoreAllMocks();
});

describe('bind groups are collected before the driver runs out of mappings', () => {
  it('a full collection after every 16384 bind groups, counted across realizes', () => {
    const gc = vi.fn();
    host.gc = gc;
    collectBindGroups(16384);   // whatever earlier realizes left pending, this reaches the bound
    gc.mockClear();
    collectBindGroups(10000);
    expect(gc).not.toHaveBeenCalled();
    collectBindGroups(6383);
    expect(gc).not.toHaveBeenCalled();
    collectBindGroups(1);       // 16384 since the last collection
    expect(gc).toHaveBeenCalledTimes(1);
    collectBindGroups(16383);
    expect(gc).toHaveBeenCalledTimes(1);
  });

  it('without an exposed gc(), one warning says how to expose it', () => {
    host.gc = undefined;
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    for (let i = 0; i < 8; i++) collectBindGroups(16384);
    // The warning may already have been given earlier in this process; never more than once.
    expect(warn.mock.calls.length).toBeLessThanOrEqual(1);
    if (warn.mock.calls.length) expect(String(warn.mock.calls[0][0])).toMatch(/DENO_V8_FLAGS=--expose-gc/);
    host.gc = realGc;
    if (realGc) collectBindGroups(0);
  });

  // On Linux, the process's memory mappings stay bounded through 24 000 dispatches (each a bind
  // group); without collections they grow by one per bind group on lavapipe until V8 collects.
  it.skipIf(!realGc || !canReadMaps())('24 000 dispatches leave the mapping count bounded (lavapipe: one mapping per bind group)', { timeout: 600_000 }, async () => {
    await init();
    const before = mappings();
    let x = fromData(new Float32Array([1, 2, 3, 4]), [4]);
    for (let r = 0; r < 24; r++) {
      let y = x;
      for (let i = 0; i < 1000; i++) y = addScalar(y, 1);
      await realize([y]);
      x = y;
    }
    expect(Array.from(await read(x))).toEqual([24001, 24002, 24003, 24004]);
    const grown = mappings() - before;
    // ≤ 16384 bind groups pending at any time, plus one realize's worth and some slack for the
    // pool's new buffers and compiled shaders.
    console.log(`[bind-groups] mappings grew by ${grown} over 24 000 dispatches`);
    expect(grown).toBeLessThan(16384 + 1000 + 2000);
  });
});

function canReadMaps(): boolean {
  try {
    return readFileSync('/proc/self/maps', 'utf8').length > 0;
  } catch {
    return false;
  }
}

function mappings(): number {
  return readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.length > 0).length;
}

/** A device that only counts the bind groups it is asked to make. */
function fakeDevice() {
  const made: GPUBindGroupDescriptor[] = [];
  const device = { createBindGroup: (d: GPUBindGroupDescriptor) => (made.push(d), { label: d.label } as unknown as GPUBindGroup) } as unknown as GPUDevice;
  return { device, made };
}
const fakePipeline = () => ({ getBindGroupLayout: () => ({}) }) as unknown as GPUComputePipeline;
const fakeBuffer = () => ({}) as GPUBuffer;
const entries = (...bs: [GPUBuffer, number?, number?][]): BufferEntry[] =>
  bs.map(([buffer, offset, size], binding) => ({ binding, resource: offset === undefined ? { buffer } : { buffer, offset, size } }));

describe('bind group cache (no GPU)', () => {
  it('finds a group by pipeline, buffers, offsets and sizes, and by nothing less', () => {
    const { device, made } = fakeDevice();
    const cache = new BindGroupCache(device);
    const p = fakePipeline(), q = fakePipeline();
    const arena = fakeBuffer(), a = fakeBuffer(), b = fakeBuffer();
    const g = cache.get(p, entries([arena, 0, 64], [a], [b]), 'op');
    expect(cache.get(p, entries([arena, 0, 64], [a], [b]), 'op')).toBe(g);
    expect(made.length).toBe(1);
    // Each difference is a group of its own: another pipeline, buffer, order, offset, window size.
    cache.get(q, entries([arena, 0, 64], [a], [b]), 'op');
    cache.get(p, entries([arena, 0, 64], [b], [a]), 'op');
    cache.get(p, entries([arena, 256, 64], [a], [b]), 'op');
    cache.get(p, entries([arena, 0, 64], [a, 0, 512], [b]), 'op');
    cache.get(p, entries([arena, 0, 64], [a, 0, 256], [b]), 'op');
    cache.get(p, entries([arena, 0, 64], [a], [fakeBuffer()]), 'op');
    expect(made.length).toBe(7);
    expect([cache.created, cache.reused]).toEqual([7, 1]);
    // The runtime scopes the making (GPU errors named by op): only a group made now goes through it.
    const wrapped: string[] = [];
    const making = (make: () => GPUBindGroup) => (wrapped.push('made'), make());
    cache.get(p, entries([arena, 0, 64], [a], [b]), 'op', making);
    cache.get(p, entries([arena, 512, 64], [a], [b]), 'op', making);
    expect(wrapped).toEqual(['made']);
    expect(made.length).toBe(8);
  });

  it('drops groups unused for keepRealizes realizes, and the oldest beyond maxEntries', () => {
    const { device, made } = fakeDevice();
    const cache = new BindGroupCache(device, 2, 3);
    const p = fakePipeline();
    const bufs = Array.from({ length: 5 }, fakeBuffer);
    cache.get(p, entries([bufs[0]]), 'a');
    cache.endRealize();
    cache.get(p, entries([bufs[1]]), 'b');
    cache.endRealize();
    expect(cache.size).toBe(2);
    cache.endRealize();   // a: unused for 3 realizes
    expect(cache.size).toBe(1);
    cache.get(p, entries([bufs[0]]), 'a');
    expect(made.length).toBe(3);
    for (const b of bufs.slice(2)) cache.get(p, entries([b]), 'c');
    cache.endRealize();   // 5 used this realize (b is gone by age), 3 kept: the oldest dropped
    expect(cache.size).toBe(3);
  });
});

describe('bind groups on the GPU', () => {
  beforeAll(async () => {
    await init();
  });

  it('the pool hands out the oldest free buffer of a class, so the same allocations get the same buffers', () => {
    const pool = new BufferPool(runtime().device);
    const bufs = Array.from({ length: 4 }, () => pool.acquire(1000, 'order'));
    // Released in a scrambled order, handed out oldest first.
    for (const i of [2, 0, 3, 1]) pool.release(bufs[i]);
    const got = Array.from({ length: 4 }, () => pool.acquire(1000, 'order'));
    expect(got.map((b) => bufs.indexOf(b))).toEqual([0, 1, 2, 3]);
    for (const b of bufs) pool.release(b);
    pool.trim();
  });

  it('a step run again binds what it bound before: no new bind group, the same results; with its input in another buffer, still the right values', async () => {
    const R = rng('bindgroups');
    const n = R.int(8, 40), k = R.int(8, 40);
    const W = param(fromData(R.randn(n * k), [n, k])), X = R.randn(4 * n);
    const step = async (xData: Float64Array, keepInput = false) => {
      const x = fromData(xData, [4, n]);
      const h = matmul(x, W);
      const loss = sumTo(mul(add(h, h), h), []);
      const [g] = grad(loss, [W]);
      await realize([loss, g!]);
      const stats = { ...lastStats };
      const out = [await read(loss), await read(g!)];
      dispose(loss, g!);
      if (!keepInput) dispose(x);
      return { stats, out, x, buffer: x.storage?.buffer };
    };
    await step(X);
    const again = await step(X);
    const third = await step(X, true);
    // After its first run the step finds every group: its tensors take the same pooled buffers
    // (the same allocations in the same order) at the same arena offsets.
    expect(third.stats.bindGroupsCreated).toBe(0);
    expect(third.stats.dispatches).toBeGreaterThan(3);
    expect(third.out).toEqual(again.out);
    // The third step's input is still held, so the next step's input is in another buffer. Its
    // results must be its own (a group that bound the held buffer, which still has X, would give
    // the third step's values): the same as the step computed with the cache emptied.
    const other = R.randn(4 * n);
    const moved = await step(other, true);
    expect(moved.buffer).toBeDefined();
    expect(moved.buffer).not.toBe(third.buffer);
    runtime().bindGroups.clear();
    const ref = await step(other);
    expect(ref.stats.bindGroupsCreated).toBe(ref.stats.dispatches);
    expect(moved.out).toEqual(ref.out);
    expect(moved.out[0]).not.toEqual(third.out[0]);
    dispose(third.x, moved.x, W);
  });

  it('a decoding-like loop whose outputs wait for a batched read still finds its groups: only the dispatches that touch those outputs make new ones', async () => {
    // Each step feeds on the last step's output and keeps its own until a read every 12 steps
    // (as greedy decoding does, every 8; 12 is past the 8 realizes a group is kept unused, so
    // groups of an earlier cycle cannot stand in for stable buffers). Kept outputs then share a size class with the step's
    // intermediates: without the runtime's slot preferences the held ones shift which buffers
    // the intermediates get, and most of a step's groups are made again.
    const R = rng('bindgroups-decode');
    const d = 4 * R.int(4, 12);
    const W1 = param(fromData(R.randn(d * d, 0.2), [d, d])), W2 = param(fromData(R.randn(d * d, 0.2), [d, d]));
    let feed = fromData(R.randn(d), [1, d]);
    const held: ReturnType<typeof fromData>[] = [];
    const made: number[] = [];
    let dispatches = 0;
    for (let step = 0; step < 48; step++) {
      // Several intermediates of the output's size class, then the output.
      let h = feed;
      for (let l = 0; l < 4; l++) h = add(matmul(h, l % 2 ? W2 : W1), h);
      const out = addScalar(mul(h, h), 1e-3);
      await realize([out]);
      made.push(lastStats.bindGroupsCreated);
      dispatches = lastStats.dispatches;
      held.push(out);
      feed = out;
      if (held.length === 12) {
        await read(out);
        dispose(...held.slice(0, -1));   // (the last one feeds the next step)
        held.splice(0, held.length - 1);
      }
    }
    // Steady state (after two read cycles): the step's first matmul and add read the fed output
    // and its last op writes the new one, 3 groups; the step after a read (the held outputs just
    // freed) may make more. Without a kept output's own buffer every step made 9 of 10.
    const steady = made.slice(24).sort((a, b) => a - b);
    console.log(`[bind-groups] groups made per step: ${made.join(' ')} (of ${dispatches} dispatches)`);
    expect(steady[steady.length >> 1], 'median groups made per steady step').toBeLessThanOrEqual(3);
    dispose(...held, W1, W2);
  });
});

