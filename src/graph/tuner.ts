// The autotuner: the first time a (family, geometry class, adapter) is met, time the family's
// candidate configurations on this adapter, keep the fastest whose output matches the hand-picked
// configuration's within the family's tolerance, and cache the choice on disk (Deno: JSON in the
// user's cache directory) or in OPFS (browsers), keyed by adapter + driver and project version.
//
// Modes: 'off' (hand-picked kernels, nothing measured), 'cached' (use the cache; tune what is
// missing after each realize, within the time budget), 'full' (re-measure every class met, also
// those cached). Geometry classes are sizes bucketed to powers of two (Burn/CubeCL's rule), so a
// model meets a few dozen classes; candidates are pruned per family before timing.
import { SHADER_SOURCES } from '../gpu/shader-sources.ts';
import { type KernelFamily, misses, setRecordMisses, setTuned, tunedChoice, withTrial } from './kernels/catalogue.ts';
import { dispose, fromData, lastProfile, lastProfileUntimed, read, readMany, realize, runtime, setAfterRealize } from './runtime.ts';
import { makeNode, type Node, type Tensor } from './tensor.ts';
import { copyParams } from './kernels/copy.ts';

export type TuneMode = 'off' | 'cached' | 'full';

/** Bump with package.json's version: cached choices of another version are ignored. */
export const PROJECT_VERSION = '0.1.0';
const CACHE_FORMAT = 'micar-tune';

export interface TuneOptions {
  mode?: TuneMode;
  /** Seconds of measuring allowed in this process, all passes together (default 30; `micar tune` uses more). */
  budgetS?: number;
  /** Folder of the cache file (Deno). Default $MICAR_CACHE_DIR, $XDG_CACHE_HOME/micar or ~/.cache/micar. */
  cacheDir?: string;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

/** A geometry made runnable: inputs in [-1, 1] and the op built on them. */
export interface Trial {
  /** The op's node name (its timestamp-query entry), or the names of the nodes it builds. */
  op: string | string[];
  /** Builds the op's output on the trial inputs (called inside the family's trial). */
  build(): Tensor;
  /** Largest allowed |candidate − reference| per element for these inputs (an error bound). */
  tolerance: number;
  /** Useful floating-point operations per build (for reports). */
  flops: number;
  dispose(): void;
}

export interface Tunable<G> {
  family: KernelFamily<G, unknown>;
  trial(g: G): Trial;
}

const tunables = new Map<string, Tunable<unknown>>();

/** Declares a family tunable (ops files register theirs). */
export function registerTunable<G>(t: Tunable<G>): void {
  tunables.set(t.family.name, t as Tunable<unknown>);
  // Cached entries read before this family's module was imported (the CLI loads the cache
  // before importing a verb's code) are checked and applied now, not dropped.
  for (const [id, e] of state.entries) if (familyOf(id) === t.family.name && state.unchecked.delete(id)) admitEntry(id, e);
}

const familyOf = (id: string) => id.slice(0, id.indexOf('/'));
const bucketOf = (id: string) => id.slice(id.indexOf('/') + 1);

/** Checks a cached entry of a registered family and applies it; a bad or outdated one is dropped. */
function admitEntry(id: string, e: TuneEntry): void {
  const t = tunables.get(familyOf(id))!;
  if (!(e && typeof e.config === 'string' && t.family.parseConfig(e.config) !== null && typeof e.src === 'string')) {
    console.warn(`micar: tune cache ${state.where}: entry ${id} is invalid: ignored, it will be measured again`);
    state.entries.delete(id);
    state.dropped.add(id);
    state.dirty = true;
    return;
  }
  if (e.src !== sourceHash(familyOf(id))) {
    state.entries.delete(id); // the kernel changed since: measure again
    state.dropped.add(id);
    state.dirty = true;
    return;
  }
  // 'full' measures every class met again, so cached choices are not applied.
  if (state.mode === 'cached') setTuned(familyOf(id), bucketOf(id), e.config);
}

export function tunableFamilies(): Tunable<unknown>[] {
  return [...tunables.values()];
}

export interface TuneEntry {
  config: string;
  /** Best ms per op of the chosen configuration and of the hand pick, when measured. */
  ms: number;
  handMs: number;
  hand: string;
  /** Hash of the family's WGSL when measured: a changed kernel is measured again. */
  src: string;
  /** The geometry measured (for `micar tune` reports). */
  geometry?: unknown;
}

interface CacheFile {
  format: string;
  project: string;
  adapter: string;
  entries: Record<string, TuneEntry>;
}

interface State {
  mode: TuneMode;
  budgetS: number;
  cacheDir?: string;
  log: (line: string) => void;
  entries: Map<string, TuneEntry>;
  /** Loaded entries whose family has not registered yet in this process. */
  unchecked: Set<string>;
  /** Entries dropped this process (invalid or outdated): not merged back from disk at save. */
  dropped: Set<string>;
  loaded: boolean;
  dirty: boolean;
  busy: boolean;
  /** Measured classes this process (full mode re-measures each once). */
  measured: Set<string>;
  /** Classes given up on this process (budget spent mid-way, failed trial). */
  skipped: Set<string>;
  /** Where the cache lives, for messages. */
  where: string;
  /** Seconds spent measuring in this process. */
  spentS: number;
  budgetWarned: boolean;
}

const state: State = { mode: 'off', budgetS: 30, log: () => {}, entries: new Map(), unchecked: new Set(), dropped: new Set(), loaded: false, dirty: false, busy: false, measured: new Set(), skipped: new Set(), where: '', spentS: 0, budgetWarned: false };

/** FNV-1a, 32 bits, as 8 hex digits (cache file names and kernel-source fingerprints). */
export function fnv1a(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, '0');
}

/**
 * Fingerprint of a family's WGSL (its `shader` file, else the file named like the family, and the
 * shared lib pieces): cached choices are per kernel version.
 */
export function sourceHash(family: string): string {
  const files = tunables.get(family)?.family.shader ?? family;
  const src = (Array.isArray(files) ? files : [files]).map((f) => SHADER_SOURCES[f] ?? '').join('\n');
  const libs = Object.keys(SHADER_SOURCES).filter((k) => k.startsWith('lib/')).sort().map((k) => SHADER_SOURCES[k]).join('\n');
  return fnv1a(src + libs);
}

// ---- storage ------------------------------------------------------------------------------------

interface DenoLike {
  env: { get(k: string): string | undefined };
  readTextFile(p: string): Promise<string>;
  writeTextFile(p: string, s: string): Promise<void>;
  rename(a: string, b: string): Promise<void>;
  mkdir(p: string, o?: { recursive?: boolean }): Promise<void>;
  remove(p: string): Promise<void>;
}
const deno = (globalThis as { Deno?: DenoLike }).Deno;

/** The cache file's folder in Deno (null in browsers). */
export function defaultCacheDir(): string | null {
  if (!deno) return null;
  const env = (k: string) => deno.env.get(k);
  const dir = env('MICAR_CACHE_DIR') ?? (env('XDG_CACHE_HOME') ? `${env('XDG_CACHE_HOME')}/micar` : env('HOME') ? `${env('HOME')}/.cache/micar` : null);
  return dir;
}

function cacheName(): string {
  return `tune-${fnv1a(runtime().profile.key)}.json`;
}

/** Path (Deno) or OPFS name (browser) of this adapter's cache. */
export function cachePath(): string {
  const dir = state.cacheDir ?? defaultCacheDir();
  return dir ? `${dir}/${cacheName()}` : `opfs:micar/${cacheName()}`;
}

async function opfsDir(): Promise<FileSystemDirectoryHandle | null> {
  const storage = (globalThis as { navigator?: { storage?: { getDirectory?: () => Promise<FileSystemDirectoryHandle> } } }).navigator?.storage;
  if (!storage?.getDirectory) return null;
  const root = await storage.getDirectory();
  return root.getDirectoryHandle('micar', { create: true });
}

async function readStore(): Promise<string | null> {
  const path = cachePath();
  try {
    if (!path.startsWith('opfs:')) return await deno!.readTextFile(path);
    const dir = await opfsDir();
    if (!dir) return null;
    const fh = await dir.getFileHandle(cacheName());
    return await (await fh.getFile()).text();
  } catch (e) {
    const name = (e as Error).name;
    if (name === 'NotFound' || name === 'NotFoundError') return null;
    throw e;
  }
}

async function writeStore(text: string): Promise<void> {
  const path = cachePath();
  if (!path.startsWith('opfs:')) {
    // Atomic: write beside, then rename over (a crash leaves the old file or the new one).
    await deno!.mkdir(path.slice(0, path.lastIndexOf('/')), { recursive: true });
    const tmp = `${path}.${fnv1a(String(Math.random()))}.tmp`;
    await deno!.writeTextFile(tmp, text);
    await deno!.rename(tmp, path);
    return;
  }
  const dir = await opfsDir();
  if (!dir) return;
  const fh = await dir.getFileHandle(cacheName(), { create: true });
  const w = await (fh as FileSystemFileHandle & { createWritable(): Promise<{ write(s: string): Promise<void>; close(): Promise<void> }> }).createWritable();
  await w.write(text);
  await w.close();
}

/**
 * Loads this adapter's cached choices. A file for another adapter or project version is
 * ignored (and replaced at the next save); a corrupt file is reported and rebuilt, never trusted.
 */
async function loadCache(): Promise<void> {
  state.loaded = true;
  state.where = cachePath();
  let text: string | null;
  try {
    text = await readStore();
  } catch (e) {
    state.log(`tune cache ${state.where} unreadable (${(e as Error).message}): starting empty`);
    return;
  }
  if (text === null) return;
  const key = runtime().profile.key;
  let file: CacheFile;
  try {
    file = JSON.parse(text);
    if (!file || typeof file !== 'object' || file.format !== CACHE_FORMAT || typeof file.entries !== 'object' || file.entries === null || Array.isArray(file.entries))
      throw new Error(`not a ${CACHE_FORMAT} file`);
  } catch (e) {
    console.warn(`micar: tune cache ${state.where} is corrupt (${(e as Error).message}): ignored, it will be rebuilt`);
    state.dirty = true;
    return;
  }
  if (file.adapter !== key || file.project !== PROJECT_VERSION) {
    state.log(`tune cache ${state.where} is for ${file.adapter !== key ? `another adapter (${file.adapter})` : `version ${file.project}`}: ignored`);
    state.dirty = true;
    return;
  }
  for (const [id, e] of Object.entries(file.entries)) {
    state.entries.set(id, e);
    if (tunables.has(familyOf(id))) admitEntry(id, e);
    else state.unchecked.add(id); // its family registers later (or never in this process: kept as it is)
  }
}

async function saveCache(): Promise<void> {
  if (!state.dirty) return;
  // Another process (a second CLI run, a test file) may have saved since this one loaded:
  // keep its entries unless this process measured the same class or dropped it as invalid.
  try {
    const disk = JSON.parse((await readStore()) ?? 'null') as CacheFile | null;
    if (disk && disk.format === CACHE_FORMAT && disk.adapter === runtime().profile.key && disk.project === PROJECT_VERSION && disk.entries && typeof disk.entries === 'object')
      for (const [id, e] of Object.entries(disk.entries)) if (!state.entries.has(id) && !state.dropped.has(id)) state.entries.set(id, e);
  } catch { /* unreadable or corrupt: this process's entries replace it */ }
  const file: CacheFile = { format: CACHE_FORMAT, project: PROJECT_VERSION, adapter: runtime().profile.key, entries: Object.fromEntries([...state.entries].sort(([a], [b]) => (a < b ? -1 : 1))) };
  try {
    await writeStore(JSON.stringify(file, null, 1) + '\n');
    state.dirty = false;
  } catch (e) {
    console.warn(`micar: could not write tune cache ${state.where}: ${(e as Error).message}`);
  }
}

// ---- configuration --------------------------------------------------------------------------

/**
 * Sets the tuning mode (the runtime must be initialised). 'off' drops tuned choices from this
 * process; 'cached'/'full' load this adapter's cache and tune what is met after each realize.
 */
export async function configureTuning(opts: TuneOptions | TuneMode): Promise<void> {
  const o = typeof opts === 'string' ? { mode: opts } : opts;
  if (o.mode && !['off', 'cached', 'full'].includes(o.mode)) throw new Error(`tune mode must be off, cached or full, got ${JSON.stringify(o.mode)}`);
  const dirChanged = o.cacheDir !== undefined && o.cacheDir !== state.cacheDir;
  state.mode = o.mode ?? state.mode;
  if (o.budgetS !== undefined) (state.budgetS = o.budgetS), (state.spentS = 0), (state.budgetWarned = false);
  if (o.cacheDir !== undefined) state.cacheDir = o.cacheDir;
  if (o.log) state.log = o.log;
  if (dirChanged) resetTuning();
  setRecordMisses(state.mode !== 'off');
  setAfterRealize(state.mode === 'off' ? null : tunePending);
  if (state.mode === 'off') {
    for (const id of state.entries.keys()) setTuned(familyOf(id), bucketOf(id), null);
    return;
  }
  if (!state.loaded) await loadCache();
  else for (const [id, e] of state.entries) if (!state.unchecked.has(id) && (state.mode === 'cached' || state.measured.has(id))) setTuned(familyOf(id), bucketOf(id), e.config);
}

/** Forgets everything loaded or measured in this process (tests: simulate a restart). */
export function resetTuning(): void {
  for (const id of state.entries.keys()) setTuned(familyOf(id), bucketOf(id), null);
  state.entries.clear();
  state.unchecked.clear();
  state.dropped.clear();
  state.measured.clear();
  state.skipped.clear();
  state.loaded = false;
  state.dirty = false;
  misses.clear();
}

export function tuningMode(): TuneMode {
  return state.mode;
}

/** The cached entries (for reports and tests). */
export function tuneEntries(): ReadonlyMap<string, TuneEntry> {
  return state.entries;
}

// ---- measuring ------------------------------------------------------------------------------

/** ms per op of `trial` under `config`: timestamp queries where the adapter has them, else wall clock. */
async function timeConfig(tun: Tunable<unknown>, trial: Trial, config: unknown, copies: number): Promise<number> {
  const outs = withTrial(tun.family.name, config, () => Array.from({ length: copies }, () => trial.build()));
  const t0 = performance.now();
  const profile = runtime().gpu.hasTimestamps;
  await realize(outs, { profile, label: `tune ${tun.family.name}` });
  // (a profiled realize has waited for its timestamps, so for the GPU; waiting again would add
  // Deno's ~11 ms poll to every sample)
  if (!profile) await runtime().device.queue.onSubmittedWorkDone();
  const wall = (performance.now() - t0) / copies;
  dispose(...outs);
  return gpuMs(trial, copies) ?? wall;
}

/** Builds per timed sample so that one sample lasts ~10 ms (1 to 16) for an op of `ms`. */
function sampleCopies(ms: number): number {
  return Math.max(1, Math.min(16, Math.ceil(10 / Math.max(ms, 0.05))));
}

/** Output bytes one batched realize may hold (configurations × copies × output); above it, one realize each. */
const BATCH_BYTES = 64 * 1024 * 1024;

/** Tags the nodes each group of outputs needs computed (back to realized tensors) with the group's index. */
function tagGroups(groups: Tensor[][]): Map<Node, string> {
  const tags = new Map<Node, string>();
  groups.forEach((outs, i) => {
    const stack = [...outs];
    while (stack.length) {
      const t = stack.pop()!;
      if (t.realized || !t.node || tags.has(t.node)) continue;
      tags.set(t.node, String(i));
      stack.push(...t.node.inputs);
    }
  });
  return tags;
}

/**
 * Realizes `copies` builds of `trial` under each of `configs` in one profiled submission, each
 * configuration's nodes timed apart: every GPU wait costs Deno ~11 ms (its map poll sleeps 10 ms),
 * more than most kernels measured here, so one wait serves them all. Returns ms per op for each
 * configuration (null where the timestamps miss some of its dispatches) and the first copy's output
 * of each when `readOutputs`.
 */
async function runBatch(tun: Tunable<unknown>, trial: Trial, configs: unknown[], copies: number, readOutputs: boolean): Promise<{ ms: (number | null)[]; outs: Float32Array[] }> {
  const groups = configs.map((c) => withTrial(tun.family.name, c, () => Array.from({ length: copies }, () => trial.build())));
  const tags = tagGroups(groups);
  try {
    await realize(groups.flat(), { profile: true, profileKey: (n) => tags.get(n), label: `tune ${tun.family.name} ×${configs.length}` });
    const ms = configs.map((_, i) => gpuMs(trial, copies, `${i}:`));
    const outs = readOutputs ? ((await readMany(groups.map((g) => g[0]))) as Float32Array[]) : [];
    return { ms, outs };
  } finally {
    dispose(...groups.flat());
  }
}

/**
 * ms per op of `trial` under each of `configs` (`copies` runs each), in the order given: one
 * submission where timestamps allow it and the outputs fit BATCH_BYTES, else one realize each.
 */
async function timeConfigs(tun: Tunable<unknown>, trial: Trial, configs: unknown[], copies: number, outBytes: number): Promise<number[]> {
  if (runtime().gpu.hasTimestamps && configs.length * copies * outBytes <= BATCH_BYTES) {
    const { ms } = await runBatch(tun, trial, configs, copies, false);
    if (ms.every((x) => x !== null)) return ms as number[];
  }
  const ms: number[] = [];
  for (const c of configs) ms.push(await timeConfig(tun, trial, c, copies));
  return ms;
}

/** Times `a` and `b` side by side (b first when `swap`: callers alternate the order); returns [a, b] ms. */
async function timePair(tun: Tunable<unknown>, trial: Trial, a: unknown, b: unknown, copies: number, outBytes: number, swap: boolean): Promise<[number, number]> {
  const [m0, m1] = await timeConfigs(tun, trial, swap ? [b, a] : [a, b], copies, outBytes);
  return swap ? [m1, m0] : [m0, m1];
}

/**
 * First runs of `configs`: each one's output and, where timestamps give it, its time (compiling
 * is outside the timed passes). Batched as in runBatch; a batch that fails (a candidate that does
 * not compile) is run again one configuration at a time, so the failure is the candidate's own.
 */
async function screenConfigs(tun: Tunable<unknown>, trial: Trial, configs: unknown[], outBytes: number, deadline: number): Promise<({ out: Float32Array; ms: number | null } | Error)[]> {
  const res: ({ out: Float32Array; ms: number | null } | Error)[] = [];
  const per = runtime().gpu.hasTimestamps ? Math.max(1, Math.floor(BATCH_BYTES / Math.max(outBytes, 1))) : 1;
  for (let i = 0; i < configs.length && performance.now() <= deadline; i += per) {
    const chunk = configs.slice(i, i + per);
    if (chunk.length > 1) {
      try {
        const { ms, outs } = await runBatch(tun, trial, chunk, 1, true);
        chunk.forEach((_, j) => res.push({ out: outs[j], ms: ms[j] }));
        continue;
      } catch {
        // one by one below
      }
    }
    for (const c of chunk) {
      try {
        res.push(await outputOf(tun, trial, c));
      } catch (e) {
        res.push(e as Error);
      }
    }
  }
  return res;
}

/**
 * What one more dispatch costs a step beyond its kernel's own GPU time (encoding, bind group,
 * launch), ms: the wall-clock slope between realizes of 32 and 288 chained 4-float copies (best
 * of 3), measured once per process. Timestamps see only the kernels, so without it a candidate
 * that splits its work over many dispatches (matmul's WINDOW: one per 64 KiB of B, plus packs)
 * times cheaper than a step pays for it (llvmpipe: ~0.06 ms a dispatch, a 256³ product ~2 ms).
 */
export async function dispatchCostMs(): Promise<number> {
  if (dispatchCost !== null) return dispatchCost;
  const x = fromData(new Float32Array(4), [4]);
  const chain = (n: number) => {
    let h = x;
    for (let i = 0; i < n; i++) {
      const src = h;
      const [dst] = makeNode('dispatch_probe', [src], [{ shape: [4] }], {
        encode(ctx) {
          ctx.dispatch({ kernel: { family: 'copy', defs: { ACCUMULATE: false }, gen: { PARAMS: copyParams.wgsl } }, bindings: [src, dst], params: copyParams.pack({ n: 4, rank: 1, srcOff: 0, dstOff: 0, dims: [4], ss: [1], ds: [1] }), workgroups: [1] });
        },
      });
      h = dst;
    }
    return h;
  };
  const wall = async (n: number) => {
    let best = Infinity;
    for (let r = 0; r < 3; r++) {
      const y = chain(n);
      const t0 = performance.now();
      await realize([y], { label: 'dispatch cost probe' });
      await runtime().device.queue.onSubmittedWorkDone();
      best = Math.min(best, performance.now() - t0);
      dispose(y);
    }
    return best;
  };
  await wall(1); // compile the copy pipeline outside the timing
  const few = await wall(32), many = await wall(288);
  dispose(x);
  return (dispatchCost = Math.max(0, (many - few) / 256));
}
let dispatchCost: number | null = null;

/**
 * Time per copy of the nodes named `ops` in a profiled realize: their kernels' timestamps plus
 * `perDispatch` ms for each of their dispatches (null when none was timed).
 */
export function trialTimeMs(profile: ReadonlyMap<string, { ms: number; count: number }>, ops: string[], copies: number, perDispatch: number): number | null {
  // Timestamp entries are keyed op/kernel-family; a trial's graph holds only its op's nodes.
  let ms = 0, count = 0;
  const prefixes = ops.map((o) => `${o}/`);
  for (const [k, v] of profile) if (prefixes.some((o) => k.startsWith(o))) (ms += v.ms), (count += v.count);
  return count > 0 && ms > 0 ? (ms + count * perDispatch) / copies : null;
}

/**
 * The trial op's time per copy in the last realize (trialTimeMs; null without timestamps or when
 * some dispatches went untimed). `prefix`: the profile keys of one configuration of a batch.
 */
function gpuMs(trial: Trial, copies: number, prefix = ''): number | null {
  if (!runtime().gpu.hasTimestamps || !lastProfile || lastProfileUntimed) return null;
  return trialTimeMs(lastProfile, (Array.isArray(trial.op) ? trial.op : [trial.op]).map((o) => prefix + o), copies, dispatchCost ?? 0);
}

/**
 * The trial's output under `config`, and its GPU time where timestamps give it (compiling the
 * pipeline is outside the timed passes); without timestamps the time is measured separately.
 */
async function outputOf(tun: Tunable<unknown>, trial: Trial, config: unknown): Promise<{ out: Float32Array; ms: number | null }> {
  const out = withTrial(tun.family.name, config, () => trial.build());
  const profile = runtime().gpu.hasTimestamps;
  if (profile) await realize([out], { profile, label: `tune ${tun.family.name}` });
  const v = (await read(out)) as Float32Array;
  const ms = profile ? gpuMs(trial, 1) : null;
  dispose(out);
  return { out: v, ms };
}

/** A candidate replaces the hand pick only when at most this fraction of its time. */
export const SWITCH_MARGIN = 0.9;
/**
 * Side-by-side pairs timed before a candidate replaces the hand pick, and how many of them it must
 * win by SWITCH_MARGIN. On llvmpipe here one configuration's ~10 ms samples spread over ±30% (30
 * pairs of two tied conv configurations: 5.1–9.2 ms each), and a tie wins a pair by 10% about one
 * time in eight: 3 of 4 pairs let ~1% of ties through, and bench tune met such a switch in most
 * runs; 5 of 6 lets ~2e-4 through.
 */
const CONFIRM_PAIRS = 6;
const CONFIRM_WINS = 5;

export interface TuneResult {
  id: string;
  entry: TuneEntry;
  /** Candidates timed and rejected (wrong output or compile failure). */
  rejected: string[];
  seconds: number;
}

/**
 * Measures one geometry class now: every candidate compiled, checked against the hand pick's
 * output, timed in alternating rounds (best of rounds: the machine may be
 * shared); the fastest correct one is kept. Stops early, keeping the best so far, past `deadline`.
 */
export async function tuneGeometry<G>(family: KernelFamily<G, unknown>, g: G, deadline = Infinity): Promise<TuneResult | null> {
  const tun = tunables.get(family.name);
  if (!tun) throw new Error(`tune: family ${family.name} is not tunable`);
  const t0 = performance.now();
  const profile = runtime().profile;
  const hand = family.handPicked(g, profile);
  const handKey = family.configKey(hand);
  const cands = family.candidates(g, profile).filter((c) => family.configKey(c) !== handKey);
  if (runtime().gpu.hasTimestamps) await dispatchCostMs();
  const trial = tun.trial(g);
  const rejected: string[] = [];
  try {
    // First pass: the hand pick's run is the reference; each candidate compiled, checked against
    // it and timed once (the checking run's own timing, where timestamps give it); pick copies
    // so a sample is ~10 ms.
    const handRun = await outputOf(tun, trial, hand);
    const ref = handRun.out;
    // A reference that is not finite checks nothing (|Δ| is NaN against it): the class is not tuned.
    if (!ref.every(Number.isFinite)) return null;
    const outBytes = ref.length * 4;
    const alive: { c: unknown; key: string; best: number }[] = [{ c: hand, key: handKey, best: handRun.ms ?? await timeConfig(tun, trial, hand, 1) }];
    const screened = await screenConfigs(tun, trial, cands, outBytes, deadline);
    for (let i = 0; i < screened.length; i++) {
      const c = cands[i], key = family.configKey(c), r = screened[i];
      if (r instanceof Error) {
        rejected.push(`${key} (${r.message.split('\n')[0]})`);
        continue;
      }
      let worst = 0;
      for (let j = 0; j < ref.length; j++) worst = Math.max(worst, Math.abs(r.out[j] - ref[j]));
      if (!(worst <= trial.tolerance)) {
        rejected.push(`${key} (max |Δ| ${worst.toExponential(2)} > ${trial.tolerance.toExponential(2)})`);
        continue;
      }
      alive.push({ c, key, best: r.ms ?? await timeConfig(tun, trial, c, 1) });
    }
    const copies = sampleCopies(alive[0].best);
    // The first pass only screens: single runs, right after compiling. Alternating rounds of
    // ~10 ms samples then time the hand pick and the (up to 3) candidates that screened faster
    // than it, and only those samples decide. None faster: the hand pick stays, unmeasured
    // further. (Bench tune, llvmpipe: 129 of 132 classes kept the hand pick, and re-timing
    // slower candidates was 45% of the tuning time.) A round is one submission where it fits,
    // its order reversed each round.
    const handX = alive.find((x) => x.key === handKey)!;
    const lead = alive.filter((x) => x !== handX && x.best < handX.best).sort((a, b) => a.best - b.best).slice(0, 3);
    if (lead.length) {
      for (const x of [handX, ...lead]) x.best = Infinity;
      for (let round = 0; round < 3 && (round === 0 || performance.now() < deadline); round++) {
        const order = round % 2 ? [...lead].reverse().concat(handX) : [handX, ...lead];
        const ms = await timeConfigs(tun, trial, order.map((x) => x.c), copies, outBytes);
        order.forEach((x, i) => (x.best = Math.min(x.best, ms[i])));
      }
    }
    let win = [handX, ...lead].reduce((a, b) => (b.best < a.best ? b : a));
    let pairsWon = 0;
    if (win !== handX) {
      // Confirm against the hand pick in pairs (the order alternating), even past the deadline:
      // a few disturbed samples must not replace it (the machine may be shared).
      for (let pair = 0; pair < CONFIRM_PAIRS; pair++) {
        const [h, w] = await timePair(tun, trial, handX.c, win.c, copies, outBytes, pair % 2 === 1);
        handX.best = Math.min(handX.best, h);
        win.best = Math.min(win.best, w);
        if (w < SWITCH_MARGIN * h) pairsWon++;
        if (pair + 1 - pairsWon > CONFIRM_PAIRS - CONFIRM_WINS) break; // it can no longer win enough
      }
    }
    // Keep the hand pick unless the winner is clearly faster: by a 10% margin in its best time
    // and in nearly all the side-by-side pairs, because on a shared CPU adapter choices won by 3%
    // lost by up to 3x when timed again, and best-of alone still switched to choices that
    // measured 0.55–0.9 of the hand pick side by side (bench tune, llvmpipe, loaded machine).
    if (win !== handX && !(win.best < SWITCH_MARGIN * handX.best && pairsWon >= CONFIRM_WINS)) win = handX;
    const entry: TuneEntry = { config: win.key, ms: win.best, handMs: handX.best, hand: handKey, src: sourceHash(family.name), geometry: g };
    return { id: `${family.name}/${family.bucket(g)}`, entry, rejected, seconds: (performance.now() - t0) / 1000 };
  } finally {
    trial.dispose();
  }
}

/**
 * Times configurations `a` and `b` of one geometry side by side: `rounds` alternating pairs,
 * best of each (benchmarks: tuned against hand-picked).
 */
export async function timeTrialPair<G>(family: KernelFamily<G, unknown>, g: G, a: unknown, b: unknown, rounds = 3): Promise<{ aMs: number; bMs: number }> {
  const tun = tunables.get(family.name)!;
  if (runtime().gpu.hasTimestamps) await dispatchCostMs();
  const trial = tun.trial(g);
  try {
    const { out } = await outputOf(tun, trial, a);
    await outputOf(tun, trial, b);
    const one = await timeConfig(tun, trial, a, 1);
    const copies = sampleCopies(one);
    let aMs = Infinity, bMs = Infinity;
    for (let r = 0; r < rounds; r++) {
      const [ma, mb] = await timePair(tun, trial, a, b, copies, out.length * 4, r % 2 === 1);
      aMs = Math.min(aMs, ma);
      bMs = Math.min(bMs, mb);
    }
    return { aMs, bMs };
  } finally {
    trial.dispose();
  }
}

/** Records a measured choice (used by the next encodes) and marks the cache for saving. */
export function adoptResult(r: TuneResult): void {
  adopt(r);
}

function adopt(r: TuneResult): void {
  state.entries.set(r.id, r.entry);
  state.measured.add(r.id);
  state.dirty = true;
  const [family, bucket] = [familyOf(r.id), bucketOf(r.id)];
  setTuned(family, bucket, r.entry.config);
}

/**
 * Tunes the geometry classes met since the last pass (runs after each realize while tuning is
 * on), within the time budget; saves the cache. Returns the results measured.
 */
export async function tunePending(budgetS = state.budgetS - state.spentS): Promise<TuneResult[]> {
  if (state.busy || state.mode === 'off' || !misses.size) return [];
  state.busy = true;
  const done: TuneResult[] = [];
  const t0 = performance.now();
  try {
    if (!state.loaded) await loadCache();
    const deadline = t0 + budgetS * 1000;
    for (const [id, m] of [...misses]) {
      misses.delete(id);
      if (state.skipped.has(id) || (state.mode !== 'full' && state.entries.has(id)) || state.measured.has(id)) continue;
      if (!tunables.has(m.family.name)) continue;
      if (performance.now() > deadline) {
        if (!state.budgetWarned) state.log(`tune: time budget spent; ${id} and ${misses.size} more stay hand-picked this run (measured next time)`);
        state.budgetWarned = true;
        for (const k of misses.keys()) if (!state.entries.has(k)) misses.delete(k);
        break;
      }
      try {
        const r = await tuneGeometry(m.family, m.geometry, deadline);
        if (!r) {
          state.skipped.add(id);
          continue;
        }
        adopt(r);
        done.push(r);
        state.log(`tune ${id}: ${r.entry.config} ${r.entry.ms.toFixed(3)} ms vs hand ${r.entry.hand} ${r.entry.handMs.toFixed(3)} ms (${(r.entry.handMs / r.entry.ms).toFixed(2)}x, ${r.seconds.toFixed(1)} s)${r.rejected.length ? `; rejected ${r.rejected.join(', ')}` : ''}`);
      } catch (e) {
        state.skipped.add(id);
        state.log(`tune ${id}: failed (${(e as Error).message}); keeping the hand pick`);
      }
    }
    await saveCache();
  } finally {
    state.spentS += (performance.now() - t0) / 1000;
    state.busy = false;
  }
  return done;
}
