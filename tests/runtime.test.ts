// Runtime behaviour: GPU errors surface with the op and shapes that caused them; f16 storage
// round trips; pool size classes; the buffer pool reuses memory across steps.
import { beforeAll, describe, expect, it } from 'vitest';
import { dispose, fromData, halfToFloat, init, planMemory, read, readMany, realize, runtime, sync, toHalfBits } from '../src/graph/runtime.ts';
import { compilePipelines, getPipeline, pipelineErrors } from '../src/gpu/pipelines.ts';
import { preloadShaders } from '../src/gpu/shaders.ts';
import { makeNode } from '../src/graph/tensor.ts';
import { cast } from '../src/graph/ops/cast.ts';
import { add, scale } from '../src/graph/ops/elementwise.ts';
import { REMATERIALIZE_GAP } from '../src/graph/scheduler.ts';
import { BufferPool, sizeClass } from '../src/gpu/buffers.ts';
import { copyParams } from '../src/graph/kernels/copy.ts';
import { rng } from './util.ts';

beforeAll(async () => {
  await init();
});

const R = rng('runtime');

describe('runtime', () => {
  it('a GPU validation error is reported with the op name and input shapes', async () => {
    const x = fromData([1, 2, 3, 4], [4]);
    // A node whose dispatch binds the wrong number of buffers for its kernel.
    const [y] = makeNode('broken_op', [x], [{ shape: [4] }], {
      encode(ctx) {
        ctx.dispatch({ kernel: { family: 'copy', defs: { ACCUMULATE: false }, gen: { PARAMS: copyParams.wgsl } }, bindings: [x, x, x], params: copyParams.pack({ n: 4, rank: 1, srcOff: 0, dstOff: 0, dims: [4], ss: [1], ds: [1] }), workgroups: [1] });
        void y;
      },
    });
    await realize([y]);
    await expect(read(y)).rejects.toThrow(/broken_op\(f32\[4\]\)/);
  });

  it('new pipelines are compiled together before encoding (compilePipelines) and cached; one that does not compile is still reported with its kernel key and op', async () => {
    const rt = runtime();
    // Copy kernels of a rank no other test uses: new keys, compiled by this realize.
    // (with the defaults the runtime adds to every dispatch: element type, no subgroups)
    const base = { T: 'f32', F16: false, SUBGROUPS: false };
    const ref = (acc: boolean, label: string) => ({ family: 'copy', defs: { ...base, ACCUMULATE: acc, TEST_KEY: label }, gen: { PARAMS: copyParams.wgsl } });
    const tag = `t${R.int(0, 1e9)}`;
    const refs = [ref(false, `${tag}a`), ref(true, `${tag}b`)];
    await preloadShaders(['copy']);
    const { made, pipelines } = await compilePipelines(rt.device, refs);
    if (typeof rt.device.createComputePipelineAsync === 'function') {
      expect(made).toBe(2);
      // Cached: getPipeline hands out the compiled objects, and a second call compiles nothing.
      const p0 = getPipeline(rt.device, refs[0]);
      expect(p0).toBe(pipelines[0]);
      expect(getPipeline(rt.device, refs[1])).toBe(pipelines[1]);
      const again = await compilePipelines(rt.device, refs);
      expect(again.made).toBe(0);
      expect(again.pipelines).toEqual(pipelines);
    } else expect(made).toBe(0);
    // A template hole filled with WGSL that does not parse: not cached by compilePipelines, so
    // the realize's getPipeline makes it and its error names the kernel; the dispatch fails
    // with the op's name.
    const x = fromData([1, 2, 3, 4], [4]);
    const bad = { family: 'copy', defs: { ...base, ACCUMULATE: false, TEST_KEY: `${tag}bad` }, gen: { PARAMS: 'struct Params { n: u32' } };
    expect(await compilePipelines(rt.device, [bad])).toEqual({ made: 0, pipelines: [undefined] });
    const [y] = makeNode('uncompilable_op', [x], [{ shape: [4] }], {
      encode(ctx) {
        ctx.dispatch({ kernel: bad, bindings: [x, y], params: copyParams.pack({ n: 4, rank: 1, srcOff: 0, dstOff: 0, dims: [4], ss: [1], ds: [1] }), workgroups: [1] });
      },
    });
    let err: Error | null = null;
    try {
      await realize([y]);
      await read(y);
    } catch (e) {
      err = e as Error;
    }
    await sync().catch(() => undefined);
    const said = [err?.message ?? 'no error', ...pipelineErrors.splice(0).map((e) => e.message)].join('\n');
    // Either the compile error or the dispatch's: both name the kernel (its key), the latter the op.
    expect(said).toMatch(/copy:main:[^']*TEST_KEY=t\d+bad/);
    expect(said).toMatch(/uncompilable_op\(f32\[4\]\)|compile copy:main/);
  });

  it('shape errors are thrown when the graph is built, naming op and shapes', () => {
    expect(() => add(fromData([1, 2], [2]), fromData([1, 2, 3], [3]))).toThrow(/add: shapes \[2\] and \[3\] do not broadcast/);
  });

  it('f16 storage: cast f32 → f16 → f32 equals round-to-nearest-even on the CPU', async () => {
    if (!runtime().gpu.hasF16) {
      expect(() => cast(fromData([1], [1]), 'f16')).toThrow(/shader-f16/);
      return;
    }
    const n = R.int(1, 5000);
    const X = R.randn(n, 3);
    const h = cast(fromData(X, [n]), 'f16');
    const back = cast(h, 'f32');
    await realize([h, back]);
    const ref = Array.from(X, (v) => halfToFloat(toHalfBits(v)));
    expect(Array.from(await read(back))).toEqual(ref);
    expect(Array.from(await read(h))).toEqual(ref); // read() widens f16 to f32
  });

  it('readMany returns what read returns for each tensor (dtypes, odd sizes, computed and leaf tensors, staging split in several buffers)', async () => {
    const ts = [];
    for (let i = 0; i < R.int(5, 12); i++) {
      const n = R.int(1, 700);
      const kind = R.int(0, 3);
      if (kind === 0) ts.push(fromData(R.randn(n), [n]));
      else if (kind === 1) ts.push(fromData(Int32Array.from({ length: n }, () => R.int(-1e6, 1e6)), [n], 'i32'));
      else if (kind === 2) ts.push(add(fromData(R.randn(n), [n]), fromData(R.randn(n), [n]))); // not realized yet
      else if (runtime().gpu.hasF16) ts.push(cast(fromData(R.randn(n), [n]), 'f16'));
      else ts.push(fromData(Uint32Array.from({ length: n }, () => R.int(0, 2 ** 31)), [n], 'u32'));
    }
    // 1000-byte staging buffers: several groups, and tensors larger than one buffer.
    const many = await readMany(ts, 1000);
    expect(many.length).toBe(ts.length);
    for (const [i, t] of ts.entries()) {
      const one = await read(t);
      expect(many[i].constructor).toBe(one.constructor);
      expect(Array.from(many[i])).toEqual(Array.from(one));
    }
  });

  it('pool size classes waste at most a quarter and are reused', async () => {
    for (const b of [1, 255, 256, 4097, 100000, 123456789]) {
      const c = sizeClass(b);
      expect(c).toBeGreaterThanOrEqual(b);
      expect(c).toBeLessThanOrEqual(Math.max(256, b * 1.25 + 256));
    }
    const pool = runtime().pool;
    const a = fromData(R.randn(1000), [1000]);
    await realize([add(a, a)]);
    const total = pool.totalBytes;
    for (let i = 0; i < 5; i++) await realize([add(add(a, a), a)]);
    // Each step keeps its target (5 buffers); its intermediate needs at most one new buffer
    // in all, after which freed intermediates are reused.
    expect(pool.totalBytes - total).toBeLessThanOrEqual(6 * sizeClass(4000));
  });

  it('resident tensors (weights, optimiser state) take buffers of their own size, destroyed when released', async () => {
    // 9 MiB + 4 bytes: a size class would be 10 MiB (11% more), a resident buffer 9 MiB + 256.
    const n = (9 << 18) + 1;
    const t = fromData(new Float32Array(n).fill(2), [n], 'f32', 'resident test', { resident: true });
    expect(t.storage!.buffer.size).toBe(Math.ceil((4 * n) / 256) * 256);
    expect(sizeClass(4 * n)).toBe(10 << 20);
    const y = add(t, t);
    expect(Array.from((await read(y)).subarray(n - 3))).toEqual([4, 4, 4]);
    dispose(y, t);
    // The pool's own accounting, on a pool of its own: the runtime's pool also receives, at any
    // moment, buffers of tensors the collector finalises (earlier tests' garbage).
    const pool = new BufferPool(runtime().device);
    const b = pool.acquireResident(4 * n, 'resident');
    expect([b.size, pool.liveBytes, pool.totalBytes]).toEqual([Math.ceil((4 * n) / 256) * 256, b.size, b.size]);
    pool.release(b);
    // Destroyed, not pooled: no size class would hand it out again.
    expect([pool.liveBytes, pool.totalBytes]).toEqual([0, 0]);
    // One whose size is a class is pooled like any other, and handed out again.
    const c = pool.acquireResident(4096, 'resident class');
    pool.release(c);
    expect([pool.liveBytes, pool.totalBytes]).toEqual([0, 4096]);
    expect(pool.acquire(4000)).toBe(c);
    pool.trim();
  });

  it('a rematerialized cast runs again for its far reader: the same values bit for bit, a lower peak', async () => {
    // A weight's f16 cast read at the start and again after a chain with one large activation,
    // as mixed-precision training reads it in the forward and the backward.
    const n = 1 << 16;
    const w = fromData(R.randn(n), [n]).keep();
    const x = fromData(R.randn(n), [n]).keep();
    const build = (remat: boolean) => {
      const c = cast(w, 'f16');
      c.node!.rematerialize = remat;
      let h = add(cast(x, 'f16'), c);
      const wide = add(cast(h, 'f32'), cast(h, 'f32')); // f32: twice the cast's bytes, live in the gap
      h = cast(wide, 'f16');
      for (let i = 0; i < REMATERIALIZE_GAP + 2; i++) h = scale(h, 0.5);
      return add(h, c);
    };
    const run = async (remat: boolean) => {
      const y = build(remat);
      // The plan's peak (what realize allocates; the pool's own count also moves when the
      // collector finalises earlier tests' tensors).
      const peak = planMemory([y]).peakBytes;
      const stats = await realize([y]);
      return { y: await read(y), peak, dispatches: stats.dispatches };
    };
    const held = await run(false), remat = await run(true);
    expect(remat.dispatches).toBe(held.dispatches + 1);
    expect(remat.y).toEqual(held.y);
    // The cast (n f16 = 128 KiB) is not live while `wide` (n f32) and its inputs are.
    expect(held.peak - remat.peak).toBeGreaterThanOrEqual(2 * n);
  });
});
