// Compute pipelines cached by kernel family + entry point + specialisation.
import { type Defs, shaderSourceSync, specialise } from './shaders.ts';
import { GpuOpError } from './errors.ts';

const cache = new WeakMap<GPUDevice, Map<string, GPUComputePipeline>>();

export interface KernelRef {
  /** File in shaders/ without extension. */
  family: string;
  entry?: string;
  defs?: Defs;
  /**
   * Generated WGSL pieces filling `${NAME}` holes (the Params struct, unrolled bodies): each is
   * a function of family + entry + defs, so they are not part of the pipeline key.
   */
  gen?: Record<string, string>;
}

export function kernelKey(k: KernelRef): string {
  const defs = k.defs ? Object.keys(k.defs).sort().map((n) => `${n}=${k.defs![n]}`).join(',') : '';
  return `${k.family}:${k.entry ?? 'main'}:${defs}`;
}

/** Scalar element type of each storage binding (index = @binding), from the specialised WGSL. */
export type BindingTypes = Map<number, string>;
const bindingTypes = new WeakMap<GPUComputePipeline, BindingTypes>();

export function pipelineBindingTypes(p: GPUComputePipeline): BindingTypes | undefined {
  return bindingTypes.get(p);
}

/** `@binding(n) var<storage, …> name: array<vec4<T>>` → n ↦ its scalar type (aliases resolved). */
function parseBindingTypes(code: string): BindingTypes {
  const aliases = new Map<string, string>();
  for (const m of code.matchAll(/\balias\s+(\w+)\s*=\s*([\w<>]+)\s*;/g)) aliases.set(m[1], m[2]);
  const scalar = (t: string): string => {
    for (let i = 0; i < 8; i++) {
      const inner = /^(?:vec\d|atomic|mat\dx\d)<(\w+)>$/.exec(t);
      if (inner) t = inner[1];
      else if (aliases.has(t)) t = aliases.get(t)!;
      else break;
    }
    return t;
  };
  const out: BindingTypes = new Map();
  const re = /@binding\((\d+)\)\s*var<storage[^>]*>\s*\w+\s*:\s*array<([\w<>]+?)(?:,\s*\d+)?>\s*;/g;
  for (let m = re.exec(code); m; m = re.exec(code)) out.set(Number(m[1]), scalar(m[2]));
  return out;
}

function cacheOf(device: GPUDevice): Map<string, GPUComputePipeline> {
  let m = cache.get(device);
  if (!m) cache.set(device, (m = new Map()));
  return m;
}

/** The specialised WGSL and the pipeline descriptor of `k` (one place for both compile paths). */
function describePipeline(device: GPUDevice, k: KernelRef, key: string): { code: string; desc: GPUComputePipelineDescriptor } {
  const code = specialise(k.family, shaderSourceSync(k.family), { ...k.defs, ...k.gen });
  const module = device.createShaderModule({ code, label: key });
  return { code, desc: { layout: 'auto', compute: { module, entryPoint: k.entry ?? 'main' }, label: key } };
}

function remember(m: Map<string, GPUComputePipeline>, key: string, p: GPUComputePipeline, code: string): GPUComputePipeline {
  bindingTypes.set(p, parseBindingTypes(code));
  m.set(key, p);
  return p;
}

export interface CompiledPipelines {
  /** How many were compiled by this call (not cached before). */
  made: number;
  /** Per ref, in order: its pipeline, or undefined where it did not compile (getPipeline reports why). */
  pipelines: (GPUComputePipeline | undefined)[];
}

/**
 * Compiles every pipeline of `refs` that is not cached yet, all at once through
 * createComputePipelineAsync, caches them, and hands back each ref's pipeline (its key computed
 * once here, not again per dispatch at encoding). A browser compiles them off its main thread
 * (the page stays responsive) and Dawn on worker threads side by side, where getPipeline's
 * createComputePipeline compiles one at a time on the calling thread: a step that meets new
 * kernels (the first training step, a tuner's candidates) waits for the slowest compile instead
 * of their sum. One that fails here is not cached: getPipeline then makes it and reports its
 * error with the kernel key, as it always has.
 */
export async function compilePipelines(device: GPUDevice, refs: KernelRef[]): Promise<CompiledPipelines> {
  const m = cacheOf(device);
  const keys = refs.map(kernelKey);
  const todo = new Map<string, KernelRef>();
  keys.forEach((key, i) => {
    if (!m.has(key)) todo.set(key, refs[i]);
  });
  let made = 0;
  if (typeof device.createComputePipelineAsync === 'function') {
    await Promise.all([...todo].map(async ([key, k]) => {
      let code: string;
      let pending: Promise<GPUComputePipeline>, scope: Promise<GPUError | null>;
      try {
        // (some implementations report a bad module through the error scope, not a rejection)
        device.pushErrorScope('validation');
        const d = describePipeline(device, k, key);
        code = d.code;
        pending = device.createComputePipelineAsync(d.desc);
        scope = device.popErrorScope();
      } catch {
        return;   // getPipeline throws the same error where the op is known
      }
      const [p, err] = await Promise.all([pending.catch(() => null), scope.catch(() => null)]);
      if (!p || err || m.has(key)) return;
      remember(m, key, p, code);
      made++;
    }));
  }
  return { made, pipelines: keys.map((key) => m.get(key)) };
}

export function getPipeline(device: GPUDevice, k: KernelRef): GPUComputePipeline {
  const m = cacheOf(device);
  const key = kernelKey(k);
  const cached = m.get(key);
  if (cached) return cached;
  device.pushErrorScope('validation');
  const { code, desc } = describePipeline(device, k, key);
  const p = device.createComputePipeline(desc);
  // Compilation errors are reported asynchronously with the kernel key; the pipeline is
  // unusable then and the first dispatch also fails validation with this label.
  device.popErrorScope().then((e) => {
    if (e) pipelineErrors.push(new GpuOpError(`compile ${key}`, 'validation', e.message));
  });
  return remember(m, key, p, code);
}

export const pipelineErrors: GpuOpError[] = [];
