// The runtime: realizes lazy tensors by recording every needed node's dispatches into one
// command buffer, following the scheduler's plan (scheduler.ts: order, allocation just before
// a producer runs, release right after the last reader, buffer reuse), so a whole training
// step is one submission with no CPU read-back inside; reads back and profiles.
import { assertAlive, getGpu, type Gpu } from '../gpu/device.ts';
import type { DeviceProfile } from '../gpu/profile.ts';
import { BufferPool, sizeClass } from '../gpu/buffers.ts';
import { compilePipelines, getPipeline, pipelineBindingTypes, pipelineErrors } from '../gpu/pipelines.ts';
import { loadShader } from '../gpu/shaders.ts';
import { flushErrors, GpuOpError, popScopes, pushScopes, scoped } from '../gpu/errors.ts';
import { BindGroupCache, type BufferEntry } from '../gpu/bindgroups.ts';
import { type Bindable, type Dispatch, isWindow, type DType, dtypeBytes, type EncodeCtx, type Node, Params, shapeStr, type Storage, Tensor } from './tensor.ts';
import { planSchedule } from './scheduler.ts';

export interface Runtime {
  gpu: Gpu;
  /** The adapter's profile (same object as gpu.profile). */
  profile: DeviceProfile;
  device: GPUDevice;
  pool: BufferPool;
  /** Bind groups kept across realizes (src/gpu/bindgroups.ts). */
  bindGroups: BindGroupCache;
  /**
   * The uniform arena every realize writes its dispatches' parameters into, kept (and grown)
   * across realizes so that their bind groups can be found again. A realize's writeBuffer is
   * ordered after the work already submitted, which keeps reading what it was given.
   */
  arena: GPUBuffer | null;
  /**
   * The buffer each slot of a recent plan had, and each scratch buffer in order, by the plan's
   * slot sizes: the same plan run again (a training or decoding step) takes those buffers where
   * they are free, so its bind groups are found again even when other tensors held in between
   * (a decoding step's logits waiting for a batched read) shift what the pool would hand out.
   * A preference only: it never makes the pool create a buffer it would not have.
   */
  slotBuffers: Map<string, { slots: GPUBuffer[]; scratch: GPUBuffer[] }>;
}

let rt: Runtime | null = null;

export interface InitOptions {
  /**
   * Kernel autotuning (src/graph/tuner.ts): 'off' (default for the library: hand-picked kernels),
   * 'cached' (use measured choices, measure what is missing within a budget), 'full' (measure
   * again), or the full options (budget, cache folder, progress log).
   */
  tune?: import('./tuner.ts').TuneMode | import('./tuner.ts').TuneOptions;
}

/** Acquires the GPU once; every op needs it. */
export async function init(opts: InitOptions = {}): Promise<Runtime> {
  if (!rt || rt.gpu.lost) {
    const gpu = await getGpu();
    rt = { gpu, profile: gpu.profile, device: gpu.device, pool: new BufferPool(gpu.device), bindGroups: new BindGroupCache(gpu.device), arena: null, slotBuffers: new Map() };
  }
  if (opts.tune !== undefined) await (await import('./tuner.ts')).configureTuning(opts.tune);
  return rt;
}

export function runtime(): Runtime {
  if (!rt) throw new Error('micar runtime not initialised: await init() first');
  return rt;
}

const finalizer = new FinalizationRegistry<{ pool: BufferPool; buffer: GPUBuffer }>((s) => s.pool.release(s.buffer));

function allocate(t: Tensor, label: string, resident = false, avoid?: ReadonlySet<GPUBuffer>): Storage {
  const r = runtime();
  const buffer = resident ? r.pool.acquireResident(t.bytes, label) : r.pool.acquire(Math.max(4, t.bytes), label, avoid);
  const st = { buffer, bytes: t.bytes };
  t.storage = st;
  t.freed = false;
  return st;
}

function releaseStorage(t: Tensor): void {
  const st = t.storage;
  if (!st) return;
  finalizer.unregister(t);
  runtime().pool.release(st.buffer);
  t.storage = null;
}

/** Frees a tensor's GPU memory now (back to the pool). */
export function dispose(...ts: (Tensor | null | undefined)[]): void {
  for (const t of ts) {
    if (!t || t.base) continue;
    releaseStorage(t);
    t.freed = true;
  }
}

function trackKept(t: Tensor): void {
  const st = t.storage!;
  finalizer.register(t, { pool: runtime().pool, buffer: st.buffer }, t);
}

/** A leaf tensor holding CPU data (kept: it lives until disposed or garbage-collected). */
/**
 * A kept tensor holding `data`. `resident`: it lives as long as the model (weights, optimiser
 * state), so its buffer is its own size (256-byte multiple), not a pooled size class.
 */
export function fromData(data: ArrayLike<number> | ArrayBufferView, shape: number[], dtype: DType = 'f32', name?: string, opts: { resident?: boolean } = {}): Tensor {
  const t = new Tensor(shape, dtype);
  t.name = name;
  if ((data as ArrayLike<number>).length !== t.size)
    throw new Error(`${name ?? 'tensor'}: ${(data as ArrayLike<number>).length} values given for shape [${shape}]`);
  const arr = toTyped(data, dtype);
  const st = allocate(t, name ?? 'data', opts.resident);
  t.kept = true;
  trackKept(t);
  runtime().device.queue.writeBuffer(st.buffer, 0, arr.buffer, arr.byteOffset, padTo4(arr.byteLength));
  return t;
}

function padTo4(n: number): number {
  return Math.ceil(n / 4) * 4;
}

function toTyped(data: ArrayLike<number> | ArrayBufferView, dtype: DType): Float32Array | Int32Array | Uint32Array | Uint16Array {
  const src = data as ArrayLike<number>;
  let out: Float32Array | Int32Array | Uint32Array | Uint16Array;
  if (dtype === 'f32') out = data instanceof Float32Array ? data : Float32Array.from(src);
  else if (dtype === 'i32') out = data instanceof Int32Array ? data : Int32Array.from(src, (x) => Number(x));
  else if (dtype === 'u32') out = data instanceof Uint32Array ? data : Uint32Array.from(src, (x) => Number(x));
  else out = data instanceof Uint16Array ? data : toHalfBitsArray(src);
  if (out.byteLength % 4 !== 0) {
    const padded = new Uint16Array(out.length + 1);
    padded.set(out as Uint16Array);
    return padded;
  }
  return out;
}

const halfScratch = new Float32Array(1);
const halfScratchBits = new Uint32Array(halfScratch.buffer);

/** f32 → IEEE half bits (round to nearest even). */
export function toHalfBits(v: number): number {
  halfScratch[0] = v;
  return halfBitsOf(halfScratchBits[0]);
}

/** Many values → half bits (one pass over their f32 bits; no per-value allocation). */
export function toHalfBitsArray(v: ArrayLike<number>): Uint16Array {
  const f = v instanceof Float32Array ? v : Float32Array.from(v);
  const u = new Uint32Array(f.buffer, f.byteOffset, f.length);
  const out = new Uint16Array(f.length);
  for (let i = 0; i < f.length; i++) out[i] = halfBitsOf(u[i]);
  return out;
}

function halfBitsOf(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  let exp = ((x >>> 23) & 0xff) - 127 + 15;
  let mant = x & 0x7fffff;
  if (((x >>> 23) & 0xff) === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  if (exp >= 0x1f) return sign | 0x7c00;
  if (exp <= 0) {
    if (exp < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - exp;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1), half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (exp << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
  return sign | h;
}

export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** Overwrites a realized leaf's data. */
export function writeData(t: Tensor, data: ArrayLike<number> | ArrayBufferView): void {
  if (!t.storage) throw new Error(`writeData(${t}): tensor has no storage`);
  const arr = toTyped(data, t.dtype);
  runtime().device.queue.writeBuffer(t.storage.buffer, 0, arr.buffer, arr.byteOffset, padTo4(arr.byteLength));
}

export interface RealizeOptions {
  /** Nodes with side effects (optimiser updates), run after everything else. */
  effects?: Tensor[];
  label?: string;
  /** Time every dispatch with timestamp queries (when the adapter has them); see `lastProfile`. */
  profile?: boolean;
  /**
   * Prefix of a node's `lastProfile` key (`prefix:op/family`), to tell apart nodes of the same op
   * in one realize (the tuner times several configurations in one submission).
   */
  profileKey?: (node: Node) => string | undefined;
}

/** Per-op GPU time (ms) of the last realize run with `profile`, by op name. */
export let lastProfile: Map<string, { ms: number; count: number }> | null = null;
/** Dispatches of that realize left untimed (past the query set's 4096 timestamps). */
export let lastProfileUntimed = 0;

export interface StepStats {
  nodes: number;
  dispatches: number;
  submissions: number;
  /** Highest pool bytes in use during this realize. */
  peakBytes: number;
  /** Bind groups this realize had to create (the rest were found in the runtime's cache). */
  bindGroupsCreated: number;
}

export let lastStats: StepStats = { nodes: 0, dispatches: 0, submissions: 0, peakBytes: 0, bindGroupsCreated: 0 };

let queue: Promise<unknown> = Promise.resolve();

/** Runs after each realize, outside the realize queue (the tuner measures kernels met for the first time). */
let afterRealize: (() => Promise<unknown>) | null = null;
export function setAfterRealize(fn: (() => Promise<unknown>) | null): void {
  afterRealize = fn;
}

/** Computes `targets` (and runs `effects`), all in one command buffer. Targets stay realized. */
export function realize(targets: Tensor[], opts: RealizeOptions = {}): Promise<StepStats> {
  const run = queue.then(() => realizeNow(targets, opts));
  queue = run.catch(() => undefined);
  const after = afterRealize;
  return after ? run.then(async (s) => (await after(), s)) : run;
}

interface Recorded {
  kind: 'dispatch' | 'copy' | 'clear';
  node: Node;
  d?: Dispatch;
  src?: GPUBuffer;
  dst?: GPUBuffer;
  bytes?: number;
  srcOffset?: number;
  dstOffset?: number;
  buffers?: GPUBuffer[];
}

/** What one realize of `targets` would allocate, from the schedule and liveness alone. */
export interface MemoryPlan {
  /** Highest sum of live output buffers (pool size classes) during the step; op scratch not included. */
  peakBytes: number;
  /** Buffers already on the device (weights, optimiser state, kept tensors). */
  residentBytes: number;
  /** The largest single buffer the step allocates, and the op/tensor it is for. */
  largest: { bytes: number; what: string };
}

/**
 * Plans a realize of `targets` (and `effects`) without running it: the same schedule and
 * liveness as `realize`, counting buffer sizes instead of allocating them. Nothing changes.
 */
export function planMemory(targets: Tensor[], effects: Tensor[] = []): MemoryPlan {
  const keep = new Set<Tensor>(targets.map((t) => t.root));
  const plan = planSchedule(targets, effects, (t) => t.kept || keep.has(t));
  return { peakBytes: plan.peakBytes, residentBytes: rt ? rt.pool.liveBytes : 0, largest: plan.largest };
}

async function realizeNow(targets: Tensor[], opts: RealizeOptions): Promise<StepStats> {
  const r = runtime();
  assertAlive(r.gpu, opts.label ?? 'realize');
  const effects = opts.effects ?? [];
  for (const t of targets) t.root.kept = true;
  // Order, lifetimes and buffer reuse come from the scheduler; this function only carries them out.
  const plan = planSchedule(targets, effects);

  peakMark = Math.max(peakMark, r.pool.peakBytes);
  r.pool.resetPeak();
  const recorded: Recorded[] = [];
  const families = new Set<string>();
  let current: Node;
  let scratch: GPUBuffer[] = [];
  const bufOf = (b: Bindable, what: string): GPUBuffer => {
    if (isWindow(b)) return bufOf(b.of, what);
    if (!(b instanceof Tensor)) return b;
    const st = b.root.storage;
    if (!st) throw new Error(`${current.op}: ${what} ${b} has no storage (freed or not computed)`);
    return st.buffer;
  };
  const ctx: EncodeCtx = {
    profile: r.profile,
    dispatch(d) {
      families.add(d.kernel.family);
      // Element type: kernels declare their float tensors `array<${T}>` (`#if ${F16}` for the
      // `enable f16;`), specialised here from the bound tensors so no op repeats it. SUBGROUPS
      // (lib/reduce's subgroup folds) is off unless a tuned configuration turns it on.
      const f16 = d.bindings.some((b) => b instanceof Tensor && b.dtype === 'f16');
      d = { ...d, kernel: { ...d.kernel, defs: { T: f16 ? 'f16' : 'f32', F16: f16, SUBGROUPS: false, ...d.kernel.defs } } };
      d.bindings.forEach((b, j) => bufOf(b, `binding ${j + 1}`));
      for (const w of d.workgroups) if (w !== undefined && (!Number.isInteger(w) || w < 0 || w > 65535))
        throw new Error(`${current.op}: bad workgroup count [${d.workgroups}] for ${d.kernel.family}`);
      recorded.push({ kind: 'dispatch', node: current, d, buffers: d.bindings.map((b, j) => bufOf(b, `binding ${j + 1}`)) });
    },
    scratch(bytes) {
      // (the k-th scratch buffer of this plan's last run, if free and of this size class)
      const prefer = before?.scratch[scratchTaken.length];
      if (prefer) reserved.delete(prefer);
      const b = prefer && prefer.size === sizeClass(Math.max(4, bytes)) && r.pool.takeIfFree(prefer)
        ? prefer
        : r.pool.acquire(Math.max(4, bytes), `${current.op}:scratch`, reserved);
      scratch.push(b);
      scratchTaken.push(b);
      return b;
    },
    copy(src, dst, bytes, so = 0, doff = 0) {
      const s = bufOf(src, 'copy source'), d = bufOf(dst, 'copy target');
      const n = bytes ?? (src instanceof Tensor ? src.bytes : s.size);
      recorded.push({ kind: 'copy', node: current, src: s, dst: d, bytes: Math.ceil(n / 4) * 4, srcOffset: so, dstOffset: doff });
    },
    clear(dst) {
      const d = bufOf(dst, 'clear target');
      recorded.push({ kind: 'clear', node: current, dst: d, bytes: dst instanceof Tensor ? Math.ceil(dst.bytes / 4) * 4 : d.size });
    },
  };

  const produced: Tensor[] = [];
  // Slot → the buffer holding it (a released slot's buffer waits in the pool's free list until reused).
  const slotBuffer: GPUBuffer[] = [];
  const planKey = plan.slotBytes.join(',');
  const before = r.slotBuffers.get(planKey);
  // Those not taken yet: other allocations (new slots, scratch) leave them to their slots.
  const reserved = new Set([...before?.slots ?? [], ...before?.scratch ?? []]);
  const scratchTaken: GPUBuffer[] = [];
  const owned = new Set<GPUBuffer>();   // this realize's slot buffers
  for (const step of plan.steps) {
    const n = step.node;
    current = n;
    for (const [k, o] of step.allocate.entries()) {
      const slot = step.slots[k];
      const held = slotBuffer[slot];
      // A kept output would hold its slot's buffer past the realize, and the slot's earlier
      // tensors would get another buffer when the plan runs again (bind groups not found): it
      // takes another free buffer instead where there is one (never a new one).
      const other = held && o.kept ? r.pool.takeOldestFree(held.size, owned, reserved) : null;
      if (other) {
        o.storage = { buffer: other, bytes: o.bytes };
        o.freed = false;
      } else if (held) {
        o.storage = { buffer: r.pool.take(held), bytes: o.bytes };
        o.freed = false;
      } else {
        const prefer = before?.slots[slot];
        if (prefer) reserved.delete(prefer);
        if (prefer && r.pool.takeIfFree(prefer)) {
          o.storage = { buffer: prefer, bytes: o.bytes };
          o.freed = false;
          slotBuffer[slot] = prefer;
        } else slotBuffer[slot] = allocate(o, `${n.op}:${o.describe()}`, false, reserved).buffer;
        owned.add(slotBuffer[slot]);
      }
      produced.push(o);
    }
    if (!n.view) {
      try {
        n.encode!(ctx);
      } catch (e) {
        throw new Error(`op ${n.op}(${shapeStr(n.inputs)}): ${(e as Error).message}`);
      }
      for (const b of scratch) r.pool.release(b);
      scratch = [];
    }
    for (const t of step.release) {
      releaseStorage(t);
      t.freed = true;
    }
  }
  for (const t of produced) if (t.kept && t.storage) trackKept(t);
  r.slotBuffers.delete(planKey);
  r.slotBuffers.set(planKey, { slots: slotBuffer, scratch: scratchTaken });
  if (r.slotBuffers.size > 16) r.slotBuffers.delete(r.slotBuffers.keys().next().value!);

  // Pipelines need their WGSL: load any family not loaded yet; then compile the new ones side
  // by side (compilePipelines), before the encoding below takes them from the cache.
  await Promise.all([...families].map(loadShader));
  assertAlive(r.gpu, opts.label ?? 'realize');
  const { pipelines } = await compilePipelines(r.device, recorded.filter((rec) => rec.kind === 'dispatch').map((rec) => rec.d!.kernel));
  assertAlive(r.gpu, opts.label ?? 'realize');

  // One uniform arena for the whole step; each dispatch gets its own 256-byte-aligned slot.
  const align = r.device.limits.minUniformBufferOffsetAlignment;
  let arenaBytes = 0;
  const offsets: number[] = [];
  for (const rec of recorded) if (rec.kind === 'dispatch') {
    offsets.push(arenaBytes);
    arenaBytes += Math.ceil(rec.d!.params.byteLength / align) * align;
  }
  const device = r.device;
  const U = (globalThis as unknown as { GPUBufferUsage: Record<string, number> }).GPUBufferUsage;
  if (!r.arena || r.arena.size < arenaBytes) {
    // Grown to a power of two: a few sizes over a run, each an end to the groups bound to the last.
    r.arena?.destroy();
    r.arena = device.createBuffer({ size: Math.max(4096, 2 ** Math.ceil(Math.log2(Math.max(1, arenaBytes)))), usage: U.UNIFORM | U.COPY_DST, label: 'params' });
  }
  const arena = r.arena;
  const arenaData = new ArrayBuffer(Math.max(256, arenaBytes));
  const view = new DataView(arenaData);
  let di = 0;
  for (const rec of recorded) if (rec.kind === 'dispatch') rec.d!.params.writeTo(view, offsets[di++]);
  device.queue.writeBuffer(arena, 0, arenaData);

  const createdBefore = r.bindGroups.created;
  const label = opts.label ?? `realize(${targets.slice(0, 3).join(',')}${targets.length > 3 ? ',…' : ''})`;
  const encoder = device.createCommandEncoder({ label });
  const nDispatch = recorded.filter((r) => r.kind === 'dispatch').length;
  const profiling = !!opts.profile && r.gpu.hasTimestamps && nDispatch > 0;
  const querySet = profiling ? device.createQuerySet({ type: 'timestamp', count: Math.min(4096, 2 * nDispatch) }) : null;
  const profOps: string[] = [];
  di = 0;
  let dispatches = 0;
  // Without timestamps, consecutive dispatches share one compute pass (WebGPU orders them);
  // copies and clears end it. Pass begin/end has a cost on software adapters.
  // Pass-level validation runs at end(): its errors name the pass's first and last ops.
  const env = (globalThis as { Deno?: { env: { get(k: string): string | undefined } } }).Deno?.env;
  let onePassPerOp = false;
  try {
    onePassPerOp = !!env?.get('MICAR_GPU_DEBUG');
  } catch {
    // no env permission: shared passes
  }
  let shared: GPUComputePassEncoder | null = null;
  let sharedOps: string[] = [];
  const endShared = () => {
    if (!shared) return;
    pushScopes(device);
    shared.end();
    popScopes(device, `compute pass ${sharedOps[0]} … ${sharedOps[sharedOps.length - 1]} (set MICAR_GPU_DEBUG=1 for one pass per op)`);
    shared = null;
    sharedOps = [];
  };
  for (const rec of recorded) {
    const opName = `${rec.node.op}(${shapeStr(rec.node.inputs)})`;
    if (rec.kind === 'copy') {
      endShared();
      encoder.copyBufferToBuffer(rec.src!, rec.srcOffset!, rec.dst!, rec.dstOffset!, rec.bytes!);
      continue;
    }
    if (rec.kind === 'clear') {
      endShared();
      encoder.clearBuffer(rec.dst!, 0, rec.bytes!);
      continue;
    }
    const d = rec.d!;
    // Error scopes: an op with a pass of its own (profiling, MICAR_GPU_DEBUG) is scoped whole.
    // In the shared pass, a dispatch's own commands are validated when the pass ends (scoped
    // there, naming its first and last ops), so only making its bind group can fail on the spot:
    // that alone is scoped, when it happens (a group found again was made before, and an error
    // in making it was reported then). Three scopes per dispatch had cost ~10 µs a dispatch, a
    // quarter of a training step's encoding time.
    const ownPass = !!querySet || onePassPerOp;
    if (ownPass) pushScopes(device);
    // (one that did not compile above: getPipeline makes it and reports its error with the key)
    const pipeline = pipelines[di] ?? getPipeline(device, d.kernel);
    checkBindingTypes(pipeline, d, rec.node);
    const entries: BufferEntry[] = [{ binding: 0, resource: { buffer: arena, offset: offsets[di++], size: d.params.byteLength } }];
    rec.buffers!.forEach((b, j) => {
      const w = d.bindings[j];
      entries.push({ binding: j + 1, resource: isWindow(w) ? { buffer: b, offset: w.offset, size: w.size } : { buffer: b } });
    });
    const bindGroup = r.bindGroups.get(pipeline, entries, opName, ownPass ? undefined : (make) => scoped(device, opName, make));
    const qi = 2 * profOps.length;
    const timed = querySet && qi + 1 < querySet.count;
    if (!querySet && !onePassPerOp) {
      shared ??= encoder.beginComputePass({ label });
      sharedOps.push(opName);
      shared.setPipeline(pipeline);
      shared.setBindGroup(0, bindGroup);
      const [x, y = 1, z = 1] = d.workgroups;
      if (x > 0 && y > 0 && z > 0) shared.dispatchWorkgroups(x, y, z);
      dispatches++;
      continue;
    }
    const pass = encoder.beginComputePass({
      label: `${opName} ${d.label ?? d.kernel.family}`,
      ...(timed ? { timestampWrites: { querySet: querySet!, beginningOfPassWriteIndex: qi, endOfPassWriteIndex: qi + 1 } } : {}),
    });
    if (timed) {
      const prefix = opts.profileKey?.(rec.node);
      profOps.push(`${prefix === undefined ? '' : `${prefix}:`}${rec.node.op}/${d.kernel.family}`);
    }
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    const [x, y = 1, z = 1] = d.workgroups;
    if (x > 0 && y > 0 && z > 0) pass.dispatchWorkgroups(x, y, z);
    pass.end();
    popScopes(device, opName);
    dispatches++;
  }
  endShared();
  let resolveBuf: GPUBuffer | null = null, readBuf: GPUBuffer | null = null;
  if (querySet && profOps.length) {
    const bytes = 16 * profOps.length;
    resolveBuf = device.createBuffer({ size: bytes, usage: U.QUERY_RESOLVE | U.COPY_SRC });
    readBuf = device.createBuffer({ size: bytes, usage: U.MAP_READ | U.COPY_DST });
    encoder.resolveQuerySet(querySet, 0, 2 * profOps.length, resolveBuf, 0);
    encoder.copyBufferToBuffer(resolveBuf, 0, readBuf, 0, bytes);
  }
  pushScopes(device);
  device.queue.submit([encoder.finish()]);
  popScopes(device, label);
  r.bindGroups.endRealize();
  if (readBuf) {
    const M = (globalThis as unknown as { GPUMapMode: Record<string, number> }).GPUMapMode;
    await readBuf.mapAsync(M.READ);
    const ts = new BigInt64Array(readBuf.getMappedRange().slice(0));
    readBuf.unmap();
    const prof = new Map<string, { ms: number; count: number }>();
    profOps.forEach((name, i) => {
      const e = prof.get(name) ?? { ms: 0, count: 0 };
      e.ms += Number(ts[2 * i + 1] - ts[2 * i]) / 1e6;
      e.count++;
      prof.set(name, e);
    });
    lastProfile = prof;
    lastProfileUntimed = nDispatch - profOps.length;
    readBuf.destroy();
    resolveBuf!.destroy();
    querySet!.destroy();
  }
  if (pipelineErrors.length) throw pipelineErrors.shift();
  lastStats = { nodes: plan.steps.length, dispatches, submissions: 1, peakBytes: r.pool.peakBytes, bindGroupsCreated: r.bindGroups.created - createdBefore };
  peakMark = Math.max(peakMark, r.pool.peakBytes);
  collectBindGroups(lastStats.bindGroupsCreated);
  return lastStats;
}

/**
 * Bind groups have no destroy() in WebGPU: their driver memory goes when the garbage collector
 * drops the JS objects. On Mesa's lavapipe each one is a memory mapping of its own, and a
 * process has at most vm.max_map_count of them (65530 by default); one training step makes a
 * bind group per dispatch (~1000), and V8 sees only small objects, so it may not collect
 * before the limit. Past it every mmap fails and the process dies: the intermittent Deno
 * segfaults (memset on MAP_FAILED) and "failed to set up alternative stack guard page:
 * Cannot allocate memory" panics of long jobs, seen with 57 000 mappings a few seconds before.
 * So after every BIND_GROUPS_PER_GC bind groups a full collection runs where the host exposes
 * one (scripts/run-deno.sh sets DENO_V8_FLAGS=--expose-gc; ~50 ms per ~10 training steps),
 * and once a warning says how to expose it where it is not.
 */
const BIND_GROUPS_PER_GC = 16384;
let bindGroupsSinceGc = 0;
let gcWarned = false;
export function collectBindGroups(created: number): void {
  bindGroupsSinceGc += created;
  if (bindGroupsSinceGc < BIND_GROUPS_PER_GC) return;
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc) {
    gc();
    bindGroupsSinceGc = 0;
  } else if (!gcWarned && bindGroupsSinceGc >= 2 * BIND_GROUPS_PER_GC && 'Deno' in globalThis) {
    // (Browsers: Dawn pools descriptor memory, and a page cannot expose gc().)
    gcWarned = true;
    console.warn(`micar: ${bindGroupsSinceGc} bind groups since start await garbage collection; on drivers that map each one (Mesa lavapipe: vm.max_map_count, 65530) a long job can run out of mappings. Run Deno with DENO_V8_FLAGS=--expose-gc (scripts/run-deno.sh does) so micar can collect them.`);
  }
}

/**
 * Buffers are untyped in WebGPU: an f16 tensor read as array<f32> (or the reverse) would be
 * silently wrong, so every f16 tensor must meet an f16 binding and every f16 binding an f16
 * tensor (f32 bindings may still read i32/u32 bits, as copies do).
 */
function checkBindingTypes(pipeline: GPUComputePipeline, d: Dispatch, node: Node): void {
  const types = pipelineBindingTypes(pipeline);
  if (!types) return;
  d.bindings.forEach((b, j) => {
    if (!(b instanceof Tensor)) return;
    const want = types.get(j + 1);
    if (want === undefined) return;
    if ((want === 'f16') !== (b.dtype === 'f16'))
      throw new Error(`op ${node.op}(${shapeStr(node.inputs)}): kernel ${d.kernel.family} binding ${j + 1} is array<${want}> but ${b} is ${b.dtype}`);
  });
}

let peakMark = 0;
/** Starts measuring the pool's peak bytes in use (weights, caches and every realize's intermediates). */
export function markPeak(): void {
  peakMark = runtime().pool.peakBytes = runtime().pool.liveBytes;
}
/** Highest pool bytes in use since `markPeak` (across realizes, which each reset the pool's own peak). */
export function peakSinceMark(): number {
  return Math.max(peakMark, runtime().pool.peakBytes);
}

/** Reads a tensor back to the CPU (realizing it first). */
export async function read(t: Tensor): Promise<Float32Array | Int32Array | Uint32Array> {
  if (!t.realized) await realize([t]);
  await queue;
  const r = runtime();
  const U = (globalThis as unknown as { GPUBufferUsage: Record<string, number>; GPUMapMode: Record<string, number> });
  const bytes = Math.max(4, Math.ceil(t.bytes / 4) * 4);
  const staging = r.device.createBuffer({ size: bytes, usage: U.GPUBufferUsage.MAP_READ | U.GPUBufferUsage.COPY_DST, label: `read ${t}` });
  const enc = r.device.createCommandEncoder();
  enc.copyBufferToBuffer(t.root.storage!.buffer, 0, staging, 0, bytes);
  r.device.queue.submit([enc.finish()]);
  await flushErrors();
  if (pipelineErrors.length) throw pipelineErrors.shift();
  await staging.mapAsync(U.GPUMapMode.READ);
  const copy = staging.getMappedRange().slice(0);
  staging.unmap();
  staging.destroy();
  return hostArray(t, copy, 0);
}

/** `t`'s values at byte `offset` of read-back bytes, typed by its dtype (f16 widened to f32). */
function hostArray(t: Tensor, bytes: ArrayBuffer, offset: number): Float32Array | Int32Array | Uint32Array {
  if (t.dtype === 'f32') return new Float32Array(bytes, offset, t.size);
  if (t.dtype === 'i32') return new Int32Array(bytes, offset, t.size);
  if (t.dtype === 'u32') return new Uint32Array(bytes, offset, t.size);
  return Float32Array.from(new Uint16Array(bytes, offset, t.size), halfToFloat);
}

/** Bytes per staging buffer of `readMany` (a tensor larger than this gets its own). */
const READ_MANY_CHUNK = 64 * 1024 * 1024;

/**
 * Reads many tensors at once: every copy in one submission, then one map per staging buffer
 * (instead of a submission and a map round trip per tensor, which dominates checkpoints on
 * adapters where each round trip costs milliseconds).
 */
export async function readMany(ts: Tensor[], chunkBytes = READ_MANY_CHUNK): Promise<(Float32Array | Int32Array | Uint32Array)[]> {
  const pending = ts.filter((t) => !t.realized);
  if (pending.length) await realize(pending);
  await queue;
  const r = runtime();
  const U = (globalThis as unknown as { GPUBufferUsage: Record<string, number>; GPUMapMode: Record<string, number> });
  const groups: { bytes: number; items: { t: Tensor; offset: number; bytes: number }[] }[] = [];
  for (const t of ts) {
    const bytes = Math.max(4, Math.ceil(t.bytes / 4) * 4);
    let g = groups[groups.length - 1];
    if (!g || (g.bytes + bytes > chunkBytes && g.items.length)) groups.push((g = { bytes: 0, items: [] }));
    g.items.push({ t, offset: g.bytes, bytes });
    g.bytes += bytes;
  }
  const enc = r.device.createCommandEncoder({ label: `readMany(${ts.length})` });
  const staging = groups.map((g) => {
    const buf = r.device.createBuffer({ size: g.bytes, usage: U.GPUBufferUsage.MAP_READ | U.GPUBufferUsage.COPY_DST, label: `readMany staging` });
    for (const it of g.items) {
      if (!it.t.root.storage) throw new Error(`readMany: ${it.t} has no storage (freed or not computed)`);
      enc.copyBufferToBuffer(it.t.root.storage.buffer, 0, buf, it.offset, it.bytes);
    }
    return buf;
  });
  pushScopes(r.device);
  r.device.queue.submit([enc.finish()]);
  popScopes(r.device, `readMany(${ts.length} tensors)`);
  await flushErrors();
  if (pipelineErrors.length) throw pipelineErrors.shift();
  const out: (Float32Array | Int32Array | Uint32Array)[] = [];
  for (const [gi, g] of groups.entries()) {
    const buf = staging[gi];
    await buf.mapAsync(U.GPUMapMode.READ);
    const all = buf.getMappedRange().slice(0);
    buf.unmap();
    buf.destroy();
    for (const it of g.items) out.push(hostArray(it.t, all, it.offset));
  }
  return out;
}

/** Waits for all submitted work and reports any GPU error raised by it. */
export async function sync(): Promise<void> {
  await queue;
  await runtime().device.queue.onSubmittedWorkDone();
  await flushErrors();
  if (pipelineErrors.length) throw pipelineErrors.shift();
}

export { GpuOpError, Params };
