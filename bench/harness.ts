// Shared benchmark harness (Deno): one runtime, the adapter's measured FMA ceiling, timing
// helpers, and tfjs-backend-webgpu on the SAME GPUDevice, so every number in a benchmark
// is a ratio against baselines measured in the same process on the same adapter.
//
// A benchmark is bench/<name>.ts exporting `async function main(args: string[])`; it is run by
// `npm run bench -- <name> [args]` (bench/run.ts) and prints a JSON object as its last line.
// Typical use (see bench/matmul.ts):
//   const h = await setup();                       // runtime + adapter description
//   const peak = await peakGflops();               // arithmetic ceiling, GFLOP/s
//   const t = await timeRealize(() => [matmul(a, b)], { inner: 4 });
//   const tf = await initTfjs();                    // tfjs on the same device
//   const u = await timeTfjs(() => tf.matMul(x, y));
//   printJson({ bench: 'matmul', gflops: gflops(2 * n ** 3, t.bestMs), … });  // last line
//
// Timing: wall clock from just before the submission to `queue.onSubmittedWorkDone()`,
// repeated; report the best sample (the machine is shared, so the best is the least
// disturbed run) and the median. `timeKernel` records one raw dispatch many times in one
// command buffer and uses timestamp-query (GPU time) when the device has it.
import { dispose, init, lastProfile, realize, type Runtime } from '../src/graph/runtime.ts';
import { Params, type Tensor } from '../src/graph/tensor.ts';
import { getPipeline, type KernelRef } from '../src/gpu/pipelines.ts';
import { loadShader } from '../src/gpu/shaders.ts';

export interface BenchEnv {
  rt: Runtime;
  device: GPUDevice;
  adapterName: string;
  hasTimestamps: boolean;
}

export interface Timing {
  /** Fastest sample, milliseconds per run. */
  bestMs: number;
  medianMs: number;
  /** Every sample, ms per run. */
  samples: number[];
  method: 'wallclock' | 'timestamp';
}

export interface TimeOpts {
  /** Untimed runs first (pipeline compilation, pool warm-up). Default 1. */
  warmup?: number;
  /** At least this many timed samples. Default 3. */
  reps?: number;
  /** Keep sampling until this much time was spent (ms), up to maxReps. Default 0. */
  minTotalMs?: number;
  /** Upper bound on samples. Default 50. */
  maxReps?: number;
}

let env: BenchEnv | null = null;

/** Initialises the micar runtime once (same device for our kernels and for tfjs). */
export async function setup(): Promise<BenchEnv> {
  if (env) return env;
  const rt = await init();
  env = { rt, device: rt.device, adapterName: rt.gpu.adapterName, hasTimestamps: rt.gpu.hasTimestamps };
  return env;
}

function benv(): BenchEnv {
  if (!env) throw new Error('bench harness: await setup() first');
  return env;
}

export const now = (): number => performance.now();

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** GFLOP/s for `flops` floating-point operations done in `ms` milliseconds. */
export function gflops(flops: number, ms: number): number {
  return flops / (ms * 1e6);
}

/**
 * Times `run` (which submits GPU work, sync or async) by wall clock up to
 * onSubmittedWorkDone. `perRun` divides each sample (when `run` does several units of work).
 */
export async function timeAsync(run: () => unknown, opts: TimeOpts = {}, perRun = 1): Promise<Timing> {
  const { warmup = 1, reps = 3, minTotalMs = 0, maxReps = 50 } = opts;
  const q = benv().device.queue;
  for (let i = 0; i < warmup; i++) {
    await run();
    await q.onSubmittedWorkDone();
  }
  const samples: number[] = [];
  let total = 0;
  while (samples.length < reps || (total < minTotalMs && samples.length < maxReps)) {
    await q.onSubmittedWorkDone();
    const t0 = now();
    await run();
    await q.onSubmittedWorkDone();
    const dt = now() - t0;
    total += dt;
    samples.push(dt / perRun);
  }
  return { bestMs: Math.min(...samples), medianMs: median(samples), samples, method: 'wallclock' };
}

/**
 * Times realizing lazily built tensors through the micar runtime. `build` is called `inner`
 * times per sample (outside the timed region) and all results are realized in ONE
 * submission, so the per-submission overhead is amortised; each sample is divided by
 * `inner`. Results are disposed after each sample. Inputs must be kept leaves (fromData).
 */
export async function timeRealize(build: () => Tensor[], opts: TimeOpts & { inner?: number } = {}): Promise<Timing> {
  const inner = opts.inner ?? 1;
  const { warmup = 1, reps = 3, minTotalMs = 0, maxReps = 50 } = opts;
  const q = benv().device.queue;
  const once = async (timed: boolean): Promise<number> => {
    const targets: Tensor[] = [];
    for (let i = 0; i < inner; i++) targets.push(...build());
    await q.onSubmittedWorkDone();
    const t0 = now();
    await realize(targets, { label: 'bench' });
    await q.onSubmittedWorkDone();
    const dt = now() - t0;
    dispose(...targets);
    return timed ? dt / inner : 0;
  };
  for (let i = 0; i < warmup; i++) await once(false);
  const samples: number[] = [];
  let total = 0;
  while (samples.length < reps || (total < minTotalMs && samples.length < maxReps)) {
    const dt = await once(true);
    total += dt * inner;
    samples.push(dt);
  }
  return { bestMs: Math.min(...samples), medianMs: median(samples), samples, method: 'wallclock' };
}

/**
 * GPU time of realizing `build`'s tensors: every dispatch timed with timestamp queries (the
 * runtime's profile mode: a pass per dispatch) and summed, best of `reps` samples — the clock
 * `peakGflops` reads, without the submission's wait (Deno's wgpu answers a wait by polling,
 * ~11 ms after the work is done on llvmpipe). null where the adapter has no timestamps.
 */
export async function timeRealizeGpu(build: () => Tensor[], opts: { reps?: number; warmup?: boolean } = {}): Promise<number | null> {
  if (!benv().hasTimestamps) return null;
  let best = Infinity;
  const first = opts.warmup === false ? 0 : 1;
  for (let r = 1 - first; r < (opts.reps ?? 3) + 1; r++) {
    const targets = build();
    await realize(targets, { label: 'bench gpu', profile: true });
    const ms = [...(lastProfile?.values() ?? [])].reduce((s, e) => s + e.ms, 0);
    dispose(...targets);
    // (the first sample, unless warmup is false, compiles and warms up)
    if (r > 0 && ms > 0) best = Math.min(best, ms);
  }
  return Number.isFinite(best) ? best : null;
}

export interface RawDispatch {
  kernel: KernelRef;
  params: Params;
  /** Storage buffers at bindings 1..n. */
  buffers: GPUBuffer[];
  workgroups: [number, number?, number?];
}

/**
 * Times one raw dispatch, recorded `inner` times into one command buffer per sample.
 * With timestamp-query: GPU time between the first pass's start and the last pass's end;
 * otherwise wall clock to onSubmittedWorkDone. ms per dispatch.
 */
export async function timeKernel(d: RawDispatch, opts: TimeOpts & { inner?: number; useTimestamps?: boolean } = {}): Promise<Timing> {
  const { device, hasTimestamps } = benv();
  const inner = opts.inner ?? 1;
  await loadShader(d.kernel.family);
  const pipeline = getPipeline(device, d.kernel);
  const U = GPUBufferUsage;
  const pbytes = d.params.byteLength;
  const ubuf = device.createBuffer({ size: pbytes, usage: U.UNIFORM | U.COPY_DST, label: 'bench params' });
  const data = new ArrayBuffer(pbytes);
  d.params.writeTo(new DataView(data), 0);
  device.queue.writeBuffer(ubuf, 0, data);
  const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: ubuf } }];
  d.buffers.forEach((b, j) => entries.push({ binding: j + 1, resource: { buffer: b } }));
  const bindGroup = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
  const useTs = (opts.useTimestamps ?? true) && hasTimestamps;
  const querySet = useTs ? device.createQuerySet({ type: 'timestamp', count: 2 }) : null;
  const resolve = useTs ? device.createBuffer({ size: 16, usage: U.QUERY_RESOLVE | U.COPY_SRC }) : null;
  const readback = useTs ? device.createBuffer({ size: 16, usage: U.MAP_READ | U.COPY_DST }) : null;
  const [x, y = 1, z = 1] = d.workgroups;
  const encodeSample = (): GPUCommandBuffer => {
    const enc = device.createCommandEncoder({ label: 'bench kernel' });
    for (let i = 0; i < inner; i++) {
      const tsw: GPUComputePassTimestampWrites | undefined = querySet && (i === 0 || i === inner - 1)
        ? {
          querySet,
          ...(i === 0 ? { beginningOfPassWriteIndex: 0 } : {}),
          ...(i === inner - 1 ? { endOfPassWriteIndex: 1 } : {}),
        }
        : undefined;
      const pass = enc.beginComputePass(tsw ? { timestampWrites: tsw } : {});
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(x, y, z);
      pass.end();
    }
    if (querySet) {
      enc.resolveQuerySet(querySet, 0, 2, resolve!, 0);
      enc.copyBufferToBuffer(resolve!, 0, readback!, 0, 16);
    }
    return enc.finish();
  };
  const sample = async (): Promise<number> => {
    const cb = encodeSample();
    await device.queue.onSubmittedWorkDone();
    const t0 = now();
    device.queue.submit([cb]);
    await device.queue.onSubmittedWorkDone();
    const wall = now() - t0;
    if (!readback) return wall / inner;
    await readback.mapAsync(GPUMapMode.READ);
    const ts = new BigUint64Array(readback.getMappedRange().slice(0));
    readback.unmap();
    const gpuMs = Number(ts[1] - ts[0]) / 1e6;
    // Some drivers return zeros or garbage for timestamps; fall back to the wall clock then.
    return gpuMs > 0 && gpuMs <= wall * 1.5 + 1 ? gpuMs / inner : wall / inner;
  };
  const { warmup = 1, reps = 3, minTotalMs = 0, maxReps = 50 } = opts;
  for (let i = 0; i < warmup; i++) await sample();
  const samples: number[] = [];
  let total = 0;
  while (samples.length < reps || (total < minTotalMs && samples.length < maxReps)) {
    const dt = await sample();
    total += dt * inner;
    samples.push(dt);
  }
  ubuf.destroy();
  querySet?.destroy();
  resolve?.destroy();
  readback?.destroy();
  return { bestMs: Math.min(...samples), medianMs: median(samples), samples, method: useTs ? 'timestamp' : 'wallclock' };
}

export interface PeakResult {
  /** Best GFLOP/s over the configurations tried (an FMA counts as 2 flops). */
  gflops: number;
  config: { WG: number; CHAINS: number; iters: number };
  all: { WG: number; CHAINS: number; gflops: number }[];
}

let peakCache: PeakResult | null = null;

/**
 * The adapter's FMA ceiling in GFLOP/s, measured now with shaders/peak.wgsl over a few
 * workgroup sizes / chain counts (best wins). Cached per process. `targetMs` sizes each
 * dispatch (longer = steadier on a shared machine).
 */
export async function peakGflops(opts: { targetMs?: number; reps?: number; remeasure?: boolean } = {}): Promise<PeakResult> {
  // `remeasure`: measure again and keep the better result (on a shared machine the ceiling
  // read at a busy moment is too low, which would flatter every fraction of it).
  if (peakCache && !opts.remeasure) return peakCache;
  const { device } = benv();
  const targetMs = opts.targetMs ?? 150;
  const threads = 64 * 1024;
  const out = device.createBuffer({ size: threads * 4, usage: GPUBufferUsage.STORAGE, label: 'peak out' });
  const all: (PeakResult['all'][number] & { iters: number })[] = [];
  for (const WG of [64, 256]) {
    for (const CHAINS of [4, 8, 16]) {
      const kernel: KernelRef = { family: 'peak', defs: { WG, CHAINS } };
      const flopsPerIter = threads * CHAINS * 4 * 2;
      // Calibrate the iteration count to ~targetMs with a short probe.
      let iters = 64;
      for (;;) {
        const t = await timeKernel(
          { kernel, params: new Params().u(iters).f(1.0).u(0, 0), buffers: [out], workgroups: [threads / WG] },
          { warmup: 1, reps: 1 },
        );
        if (t.bestMs > targetMs / 4 || iters > 1 << 22) {
          iters = Math.max(1, Math.round((iters * targetMs) / Math.max(t.bestMs, 1e-3)));
          break;
        }
        iters *= 4;
      }
      const t = await timeKernel(
        { kernel, params: new Params().u(iters).f(1.0).u(0, 0), buffers: [out], workgroups: [threads / WG] },
        { warmup: 0, reps: opts.reps ?? 3 },
      );
      all.push({ WG, CHAINS, iters, gflops: gflops(flopsPerIter * iters, t.bestMs) });
    }
  }
  out.destroy();
  const best = all.reduce((a, b) => (b.gflops > a.gflops ? b : a));
  if (!peakCache || best.gflops > peakCache.gflops) peakCache = { gflops: best.gflops, config: { WG: best.WG, CHAINS: best.CHAINS, iters: best.iters }, all };
  return peakCache;
}

/**
 * One quick ceiling sample (the best configuration of `peakGflops`, one dispatch of about
 * its target time): interleave these with the timed work so both see the same machine load.
 * Returns this sample's GFLOP/s (the cached best is raised when it is beaten).
 */
export async function peakSample(): Promise<number> {
  const pk = await peakGflops();
  const { device } = benv();
  const { WG, CHAINS, iters } = pk.config;
  const threads = 64 * 1024;
  const out = device.createBuffer({ size: threads * 4, usage: GPUBufferUsage.STORAGE, label: 'peak out' });
  const t = await timeKernel(
    { kernel: { family: 'peak', defs: { WG, CHAINS } }, params: new Params().u(iters).f(1.0).u(0, 0), buffers: [out], workgroups: [threads / WG] },
    { warmup: 0, reps: 1 },
  );
  out.destroy();
  const g = gflops(threads * CHAINS * 8 * iters, t.bestMs);
  if (g > pk.gflops) pk.gflops = g;
  return g;
}

// ---- tfjs on the same device -------------------------------------------------------------

// deno-lint-ignore no-explicit-any
export type Tfjs = typeof import('@tensorflow/tfjs-core');
let tfPromise: Promise<Tfjs> | null = null;

/**
 * tfjs-core with tfjs-backend-webgpu bound to OUR GPUDevice (so both run on one adapter in
 * one process). The package registers a 'webgpu' factory that would open its own device;
 * it is replaced (kernels are registered under the name 'webgpu', so the name is kept).
 */
export function initTfjs(): Promise<Tfjs> {
  if (!tfPromise) tfPromise = loadTfjs();
  return tfPromise;
}

async function loadTfjs(): Promise<Tfjs> {
  const { device, rt } = await setup();
  const tf = (await import('@tensorflow/tfjs-core')) as Tfjs;
  const { WebGPUBackend } = await import('@tensorflow/tfjs-backend-webgpu');
  // tfjs checks `navigator.gpu` exists (Deno has it); forward tiny ops to the CPU: off.
  tf.env().set('WEBGPU_CPU_FORWARD', false);
  const info = (rt.gpu.adapter as GPUAdapter & { info?: GPUAdapterInfo }).info;
  if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
  // deno-lint-ignore no-explicit-any
  tf.registerBackend('webgpu', () => new WebGPUBackend(device, info as any));
  const ok = await tf.setBackend('webgpu');
  if (!ok) throw new Error('tfjs: could not initialise the webgpu backend on the shared device');
  await tf.ready();
  // deno-lint-ignore no-explicit-any
  if ((tf.backend() as any).device !== device) throw new Error('tfjs: backend is not on the shared device');
  return tf;
}

/**
 * Times a tfjs computation: `run` returns tfjs tensors (one or several); each sample
 * flushes tfjs's command queue and waits for the device. Results are disposed.
 * `inner` calls per sample (amortises tfjs's per-submit overhead like timeRealize).
 */
export async function timeTfjs(run: () => unknown, opts: TimeOpts & { inner?: number } = {}): Promise<Timing> {
  const tf = await initTfjs();
  const inner = opts.inner ?? 1;
  // deno-lint-ignore no-explicit-any
  const backend = tf.backend() as any;
  return timeAsync(() => {
    const outs: unknown[] = [];
    for (let i = 0; i < inner; i++) outs.push(run());
    // tfjs keeps a compute pass open and batches submissions: close and submit it now.
    if (backend.commandEncoder) {
      backend.endComputePassEncoder();
      backend.submitQueue();
    }
    // deno-lint-ignore no-explicit-any
    tf.dispose(outs as any);
  }, opts, inner);
}

// ---- output ------------------------------------------------------------------------------

/** Prints an aligned text table (header = keys of the first row). */
export function printTable(rows: Record<string, string | number>[]): void {
  if (!rows.length) return;
  const keys = Object.keys(rows[0]);
  const cell = (v: string | number | undefined) => (typeof v === 'number' ? fmt(v) : String(v ?? ''));
  const w = keys.map((k) => Math.max(k.length, ...rows.map((r) => cell(r[k]).length)));
  console.log(keys.map((k, i) => k.padStart(w[i])).join('  '));
  for (const r of rows) console.log(keys.map((k, i) => cell(r[k]).padStart(w[i])).join('  '));
}

export function fmt(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 100 ? v.toFixed(1) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(3);
}

/** The machine-readable result: print it as the LAST line of a benchmark. */
export function printJson(result: Record<string, unknown>): void {
  const round = (x: unknown) => (typeof x === 'number' && !Number.isInteger(x) ? Number(x.toPrecision(4)) : x);
  console.log(JSON.stringify(Object.fromEntries(Object.entries(result).map(([k, v]) => [k, round(v)]))));
}

/** A header line naming the adapter and how timings are taken. */
export function printHeader(name: string): void {
  const e = benv();
  console.log(`bench ${name} on ${e.adapterName} (timestamp-query: ${e.hasTimestamps ? 'yes' : 'no'}); best of repeated runs, machine may be shared`);
}
