// The kernel catalogue: one descriptor per tunable family (its geometry classes, hand-picked
// configuration, candidate configurations, and a stable text key per configuration), and the
// one selection rule every op uses: a trial forced by the tuner, else a test's override, else a
// pinned choice (a resumed training run keeps the kernels its checkpoint was computed with),
// else the configuration measured fastest on this adapter (src/graph/tuner.ts), else the hand
// pick. Every choice made is recorded (kernelChoices) so a checkpoint can keep it.
import type { DeviceProfile } from '../../gpu/profile.ts';

export interface KernelFamily<G, C> {
  name: string;
  /** Its kernels' shaders/<shader>.wgsl when that is not `name` (a changed file invalidates cached choices). */
  shader?: string | string[];
  /** Geometry class: sizes bucketed to powers of two, plus layout flags. */
  bucket(g: G): string;
  /** Today's hand-picked configuration (the reference the tuner compares against). */
  handPicked(g: G, profile: DeviceProfile): C;
  /** Configurations worth timing for this geometry on this adapter (the hand pick included). */
  candidates(g: G, profile: DeviceProfile): C[];
  configKey(c: C): string;
  /** Inverse of configKey for cached choices (null: not a valid configuration). */
  parseConfig(s: string): C | null;
  /** A test override forces a variant: no tuned choice applies. */
  forced(): boolean;
}

/**
 * A software adapter that runs register kernels only in small blocks (SwiftShader: registerBlockLimit
 * 32): its families time small register blocks and no workgroup tiles.
 */
export function smallRegisterBlocks(p: DeviceProfile): boolean {
  return p.software && p.registerBlockLimit > 0 && p.registerBlockLimit < 128;
}

/** Smallest power of two ≥ n (1 for n ≤ 1). */
export function pow2Bucket(n: number): number {
  return n <= 1 ? 1 : 2 ** Math.ceil(Math.log2(n));
}

/** Tuned choices: family → bucket → config key (filled by the tuner, read by every encode). */
const tuned = new Map<string, Map<string, string>>();
/** A trial the tuner is timing: ops of `family` built inside `withTrial` use `config`. */
let trial: { family: string; config: unknown } | null = null;
/** Geometry classes met without a tuned choice (the tuner's work list). */
export const misses = new Map<string, { family: KernelFamily<unknown, unknown>; bucket: string; geometry: unknown }>();
/** Whether encodes report misses (the tuner turns this on unless tuning is off). */
let recordMisses = false;

export function setRecordMisses(on: boolean): void {
  recordMisses = on;
}

export function setTuned(family: string, bucket: string, configKey: string | null): void {
  let m = tuned.get(family);
  if (!m) tuned.set(family, (m = new Map()));
  if (configKey === null) m.delete(bucket);
  else m.set(bucket, configKey);
}

export function tunedChoice(family: string, bucket: string): string | undefined {
  return tuned.get(family)?.get(bucket);
}

export function clearTuned(): void {
  tuned.clear();
  misses.clear();
}

/** Classes met in this process (family/bucket). */
const met = new Set<string>();
/** kernelChoices' word for "the hand pick" (its configuration may differ within a class). */
export const HAND_PICK = 'hand';
/** Choices that take precedence over tuned ones (family/bucket → config key). */
const pinned = new Map<string, string>();

/**
 * The configuration each geometry class met so far gets from now on, as `family/bucket` →
 * config key (pinned, else tuned, else HAND_PICK; classes met only under test overrides or
 * tuner trials are not listed). Different configurations of a family may sum in different
 * orders, so a training checkpoint keeps these: with them a resumed run computes bit for bit
 * what the uninterrupted run did after that step.
 */
export function kernelChoices(): Record<string, string> {
  const out: [string, string][] = [];
  for (const id of met) {
    const slash = id.indexOf('/');
    out.push([id, pinned.get(id) ?? tunedChoice(id.slice(0, slash), id.slice(slash + 1)) ?? HAND_PICK]);
  }
  return Object.fromEntries(out.sort(([a], [b]) => (a < b ? -1 : 1)));
}

/**
 * Pins choices (as kernelChoices returns them) over tuned ones for the rest of the process, or
 * until unpinned; a class pinned is not tuned (HAND_PICK: it keeps its hand picks). A key its
 * family cannot parse is dropped with a warning when first met.
 */
export function pinKernelChoices(choices: Record<string, string>): void {
  for (const [id, key] of Object.entries(choices)) if (typeof key === 'string') pinned.set(id, key);
}

export function unpinKernelChoices(): void {
  pinned.clear();
}

/**
 * Builds (synchronously) the graph of `fn` with every op of `family` in it using `config`: the
 * op captures the trial when it is built, so other graphs realized meanwhile are unaffected.
 */
export function withTrial<T>(family: string, config: unknown, fn: () => T): T {
  const prev = trial;
  trial = { family, config };
  try {
    return fn();
  } finally {
    trial = prev;
  }
}

/** The trial configuration for an op of `family` being built now (undefined: none). */
export function trialConfig(family: string): unknown {
  return trial && trial.family === family ? trial.config : undefined;
}

/** The configuration an op uses for geometry `g` (see the header for the order). */
export function chooseConfig<G, C>(fam: KernelFamily<G, C>, g: G, profile: DeviceProfile, trialCfg?: unknown): C {
  if (trialCfg !== undefined) return trialCfg as C;
  if (fam.forced()) return fam.handPicked(g, profile);
  const bucket = fam.bucket(g);
  const id = `${fam.name}/${bucket}`;
  met.add(id);
  const pin = pinned.get(id);
  if (pin !== undefined) {
    if (pin === HAND_PICK) return fam.handPicked(g, profile);
    const c = fam.parseConfig(pin);
    if (c) return c;
    console.warn(`micar: pinned kernel choice ${id} = ${JSON.stringify(pin)} is not a ${fam.name} configuration: ignored`);
    pinned.delete(id);
  }
  const key = tunedChoice(fam.name, bucket);
  if (key !== undefined) {
    const c = fam.parseConfig(key);
    if (c) return c;
  } else if (recordMisses && !misses.has(id)) {
    misses.set(id, { family: fam as KernelFamily<unknown, unknown>, bucket, geometry: g });
  }
  return fam.handPicked(g, profile);
}
