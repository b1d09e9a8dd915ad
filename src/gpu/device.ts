// Adapter and device acquisition for Deno, browsers and (optionally) Node.
// One device per process; every later layer asks `getGpu()`.
import { type DeviceProfile, profileFrom } from './profile.ts';

export interface Gpu {
  device: GPUDevice;
  adapter: GPUAdapter;
  /** Human-readable adapter description, e.g. "llvmpipe (LLVM 15, 256 bits)". */
  adapterName: string;
  hasF16: boolean;
  hasTimestamps: boolean;
  /** What the adapter is and can do; kernel choices read this, never the name. */
  profile: DeviceProfile;
  /** Set once the device is lost; every later use throws with this reason. */
  lost: GPUDeviceLostInfo | null;
}

let gpuPromise: Promise<Gpu> | null = null;

async function findNavigatorGpu(): Promise<GPU> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return nav.gpu;
  // Node: a working `webgpu` (Dawn) package is optional. Hide the specifier from bundlers.
  const g = globalThis as { process?: { versions?: { node?: string } } };
  if (g.process?.versions?.node) {
    try {
      const spec = 'webgpu';
      const mod = await import(/* @vite-ignore */ spec);
      Object.assign(globalThis, mod.globals ?? {});
      return mod.create([]) as GPU;
    } catch {
      /* fall through to the error below */
    }
  }
  throw new Error(
    'WebGPU is not available: navigator.gpu is missing. Use Deno 2 (with a Vulkan driver, e.g. Mesa lavapipe), ' +
      'a WebGPU-enabled browser, or Node with the `webgpu` package.',
  );
}

export function getGpu(): Promise<Gpu> {
  if (!gpuPromise) gpuPromise = createGpu();
  return gpuPromise;
}

async function createGpu(): Promise<Gpu> {
  const gpuApi = await findNavigatorGpu();
  const adapter = await gpuApi.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error('WebGPU: requestAdapter() returned null (no usable GPU adapter or driver)');
  const want: GPUFeatureName[] = [];
  const hasF16 = adapter.features.has('shader-f16');
  const hasTimestamps = adapter.features.has('timestamp-query');
  if (hasF16) want.push('shader-f16');
  if (hasTimestamps) want.push('timestamp-query');
  if (adapter.features.has('subgroups')) want.push('subgroups' as GPUFeatureName);
  const L = adapter.limits;
  // Ask for what the kernels need: big storage buffers and the full workgroup memory.
  const requiredLimits: Record<string, number> = {
    maxStorageBufferBindingSize: L.maxStorageBufferBindingSize,
    maxBufferSize: L.maxBufferSize,
    maxComputeWorkgroupStorageSize: L.maxComputeWorkgroupStorageSize,
    maxComputeInvocationsPerWorkgroup: L.maxComputeInvocationsPerWorkgroup,
    maxComputeWorkgroupSizeX: L.maxComputeWorkgroupSizeX,
    maxComputeWorkgroupSizeY: L.maxComputeWorkgroupSizeY,
    maxStorageBuffersPerShaderStage: L.maxStorageBuffersPerShaderStage,
    maxComputeWorkgroupsPerDimension: L.maxComputeWorkgroupsPerDimension,
  };
  const device = await adapter.requestDevice({ requiredFeatures: want, requiredLimits, label: 'micar' });
  const info = (adapter as GPUAdapter & { info?: GPUAdapterInfo }).info ?? {};
  const fallback = (adapter as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter;
  // Features as granted to the device (what its shaders may enable).
  const profile = profileFrom({ ...infoFields(info), ...(fallback ? { isFallbackAdapter: true } : {}) }, device.features, adapter.limits);
  const gpu: Gpu = { device, adapter, adapterName: profile.adapterName, hasF16, hasTimestamps, profile, lost: null };
  device.lost.then((lostInfo) => {
    gpu.lost = lostInfo;
    gpuPromise = null; // a later getGpu() makes a fresh device
    if (lostInfo.reason !== 'destroyed') console.error(`WebGPU device lost (${lostInfo.reason}): ${lostInfo.message}`);
  });
  device.addEventListener?.('uncapturederror', (ev: Event) => {
    const e = (ev as GPUUncapturedErrorEvent).error;
    console.error(`WebGPU uncaptured error: ${e.message}`);
  });
  return gpu;
}

export function assertAlive(gpu: Gpu, what: string): void {
  if (gpu.lost) throw new Error(`WebGPU device was lost (${gpu.lost.reason}: ${gpu.lost.message}); cannot run ${what}`);
}

/** adapter.info's fields as a plain object (GPUAdapterInfo's are prototype getters). */
function infoFields(info: GPUAdapterInfo | Record<string, unknown>): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (const k of ['vendor', 'architecture', 'device', 'description', 'subgroupMinSize', 'subgroupMaxSize', 'isFallbackAdapter']) {
    const v = (info as Record<string, unknown>)[k];
    if (v !== undefined) o[k] = v;
  }
  return o;
}
