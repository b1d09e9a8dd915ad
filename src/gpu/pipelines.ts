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

export function getPipeline(device: GPUDevice, k: KernelRef): GPUComputePipeline {
  let m = cache.get(device);
  if (!m) cache.set(device, (m = new Map()));
  const key = kernelKey(k);
  let p = m.get(key);
  if (p) return p;
  const code = specialise(k.family, shaderSourceSync(k.family), { ...k.defs, ...k.gen });
  device.pushErrorScope('validation');
  const module = device.createShaderModule({ code, label: key });
  p = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: k.entry ?? 'main' }, label: key });
  // Compilation errors are reported asynchronously with the kernel key; the pipeline is
  // unusable then and the first dispatch also fails validation with this label.
  device.popErrorScope().then((e) => {
    if (e) pipelineErrors.push(new GpuOpError(`compile ${key}`, 'validation', e.message));
  });
  m.set(key, p);
  return p;
}

export const pipelineErrors: GpuOpError[] = [];
