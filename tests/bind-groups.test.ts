// Bind groups are freed only when the garbage collector drops them, and Mesa's lavapipe holds a
// memory mapping per bind group (vm.max_map_count, 65530 by default): long jobs died in a failed
// mmap. The runtime runs a full collection after every 16384 bind groups (collectBindGroups).
import { afterEach, describe, expect, it, vi } from 'vitest';
import { collectBindGroups, fromData, init, read, realize } from '../src/graph/runtime.ts';
import { addScalar } from '../src/graph/ops/elementwise.ts';
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
