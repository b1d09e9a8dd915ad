// What the running adapter is and can do, built once per device from adapter.info, limits and
// features. Every kernel choice reads this (through the runtime / encode context), never the
// adapter's name: the name matching that decides "software adapter" lives here and only here.
import { getPipeline } from './pipelines.ts';
import { loadShader } from './shaders.ts';

export interface DeviceProfile {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** One line naming the adapter, e.g. "llvmpipe (LLVM 15.0.6, 256 bits) / 65541". */
  adapterName: string;
  /**
   * A CPU implementation of WebGPU (Mesa llvmpipe/lavapipe, SwiftShader, WARP): workgroups run
   * as SIMD lanes of a few cores, so one-SIMD-vector workgroups and few barriers win there.
   */
  software: boolean;
  /** Which software implementation, when `software`. */
  softwareKind: 'mesa' | 'swiftshader' | 'warp' | 'other' | null;
  /**
   * Large fully unrolled register-blocked kernels compile in acceptable time. True on Mesa
   * (its shader cache keeps them); false on SwiftShader, where they cost about 80 s more
   * before the tiny model's first report in the demo; true on hardware adapters.
   */
  unrolledKernels: boolean;
  /**
   * Most scalar accumulators per invocation in a register-blocked body that still compiles in
   * acceptable time (0: none wanted). 128 on Mesa and hardware; 32 on SwiftShader, where conv
   * bodies of 8×16 accumulators took 220 s to compile for the tiny model's step but 4×8 blocks
   * compiled within its first step and ran the step 1.9× faster than the GEMM4 tiles (Chromium,
   * bench page, 13.1 s against 25.0 s on a loaded 2-core machine); the MoE expert products in
   * blocks of tile/8 × 4 then took it to 10.9 s.
   */
  registerBlockLimit: number;
  /** SIMD lanes per subgroup when the adapter says (subgroupMinSize), else null. */
  subgroupSize: number | null;
  features: { shaderF16: boolean; subgroups: boolean; timestampQuery: boolean };
  limits: {
    maxComputeWorkgroupStorageSize: number;
    maxComputeInvocationsPerWorkgroup: number;
    maxStorageBufferBindingSize: number;
    maxBufferSize: number;
  };
  /** Identifies adapter + driver for caches of measured choices (tuning). */
  key: string;
}

type InfoLike = Partial<Pick<GPUAdapterInfo, 'vendor' | 'architecture' | 'device' | 'description'>> & {
  isFallbackAdapter?: boolean;
  subgroupMinSize?: number;
  subgroupMaxSize?: number;
};

/** Mesa's Vulkan vendor id (VK_VENDOR_ID_MESA), which llvmpipe/lavapipe report. */
const MESA_VENDOR_ID = 0x10005;

function classifySoftware(info: InfoLike): DeviceProfile['softwareKind'] {
  const text = [info.description, info.architecture, info.device, info.vendor].join(' ');
  if (/llvmpipe|lavapipe/i.test(text) || Number(info.vendor) === MESA_VENDOR_ID) return 'mesa';
  if (/swiftshader/i.test(text)) return 'swiftshader';
  if (/\bwarp\b|microsoft basic render/i.test(text)) return 'warp';
  if (info.isFallbackAdapter || /software|\bcpu\b/i.test(text)) return 'other';
  return null;
}

/** Builds the profile from what the adapter reports (pure: tests feed it made-up adapters). */
export function profileFrom(info: InfoLike, features: ReadonlySet<string> | { has(f: string): boolean }, limits: GPUSupportedLimits | Record<string, number>): DeviceProfile {
  const L = limits as unknown as Record<string, number>;
  const softwareKind = classifySoftware(info);
  const vendor = info.vendor ?? '', architecture = info.architecture ?? '', device = info.device ?? '', description = info.description ?? '';
  const adapterName = [description, vendor, architecture, device].filter((s) => s && s !== '0').join(' / ') || 'unknown adapter';
  return {
    vendor, architecture, device, description, adapterName,
    software: softwareKind !== null,
    softwareKind,
    unrolledKernels: softwareKind === null || softwareKind === 'mesa',
    registerBlockLimit: softwareKind === null || softwareKind === 'mesa' ? 128 : softwareKind === 'swiftshader' ? 32 : 0,
    subgroupSize: info.subgroupMinSize ?? null,
    features: { shaderF16: features.has('shader-f16'), subgroups: features.has('subgroups'), timestampQuery: features.has('timestamp-query') },
    limits: {
      maxComputeWorkgroupStorageSize: L.maxComputeWorkgroupStorageSize ?? 16384,
      maxComputeInvocationsPerWorkgroup: L.maxComputeInvocationsPerWorkgroup ?? 256,
      maxStorageBufferBindingSize: L.maxStorageBufferBindingSize ?? 134217728,
      maxBufferSize: L.maxBufferSize ?? 268435456,
    },
    key: [vendor, architecture, device, description, info.subgroupMinSize ?? '', info.subgroupMaxSize ?? ''].join('|'),
  };
}

/** A GPU-like profile for code that runs before any device exists (no software layouts). */
export const GENERIC_PROFILE: DeviceProfile = profileFrom({ description: 'generic' }, new Set<string>(), {});

/**
 * Measures the FMA ceiling (GFLOP/s) with shaders/peak.wgsl: wall clock of one dispatch of
 * independent vec4 FMA chains sized to about `targetMs`, best of `reps`. On request only
 * (benchmarks compare against it); a few hundred milliseconds.
 */
export async function measureFmaCeiling(device: GPUDevice, opts: { targetMs?: number; reps?: number } = {}): Promise<number> {
  await loadShader('peak');
  const targetMs = opts.targetMs ?? 100;
  const threads = 64 * 1024, WG = 64, CHAINS = 8;
  const pipeline = getPipeline(device, { family: 'peak', defs: { WG, CHAINS } });
  const out = device.createBuffer({ size: threads * 4, usage: GPUBufferUsage.STORAGE });
  const uni = device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  const bind = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: uni } }, { binding: 1, resource: { buffer: out } }] });
  const run = async (iters: number): Promise<number> => {
    const data = new ArrayBuffer(16);
    const v = new DataView(data);
    v.setUint32(0, iters, true); // struct Params { iters: u32, seed: f32, pad0, pad1 }
    v.setFloat32(4, 1, true);
    device.queue.writeBuffer(uni, 0, data);
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bind);
    pass.dispatchWorkgroups(threads / WG);
    pass.end();
    const t0 = performance.now();
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone();
    return performance.now() - t0;
  };
  await run(1); // compiles the pipeline
  let iters = 64, ms = await run(iters);
  while (ms < targetMs / 4 && iters < 1 << 22) ms = await run((iters *= 4));
  iters = Math.max(1, Math.round((iters * targetMs) / Math.max(ms, 1e-3)));
  let best = Infinity;
  for (let r = 0; r < (opts.reps ?? 3); r++) best = Math.min(best, await run(iters));
  out.destroy();
  uni.destroy();
  return (threads * CHAINS * 8 * iters) / (best * 1e6);
}
