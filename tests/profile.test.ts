import { describe, expect, it } from 'vitest';
import { measureFmaCeiling, profileFrom } from '../src/gpu/profile.ts';
import { init } from '../src/graph/runtime.ts';
import { clearKernelOverrides, kernelOverride, setKernelOverrides } from '../src/graph/kernels/overrides.ts';

const none = new Set<string>();

describe('device profile', () => {
  it('classifies software adapters from what they report (not only by name)', () => {
    const mesa = profileFrom({ vendor: '65541', device: '0', description: 'llvmpipe (LLVM 15.0.6, 256 bits)', subgroupMinSize: 8 }, none, {});
    expect([mesa.software, mesa.softwareKind, mesa.unrolledKernels, mesa.registerBlockLimit, mesa.subgroupSize]).toEqual([true, 'mesa', true, 128, 8]);
    // Mesa's vendor id alone is enough.
    expect(profileFrom({ vendor: '65541' }, none, {}).softwareKind).toBe('mesa');
    const swift = profileFrom({ vendor: 'google', architecture: 'swiftshader', description: '' }, new Set(['timestamp-query']), {});
    expect([swift.software, swift.softwareKind, swift.unrolledKernels, swift.registerBlockLimit, swift.features.timestampQuery]).toEqual([true, 'swiftshader', false, 32, true]);
    expect(profileFrom({ vendor: 'x', isFallbackAdapter: true }, none, {}).software).toBe(true);
    const nv = profileFrom({ vendor: 'nvidia', architecture: 'ada', description: 'NVIDIA GeForce RTX 4090' }, new Set(['shader-f16', 'subgroups']), { maxComputeWorkgroupStorageSize: 32768 });
    expect([nv.software, nv.unrolledKernels, nv.registerBlockLimit, nv.features.shaderF16, nv.features.subgroups, nv.limits.maxComputeWorkgroupStorageSize]).toEqual([false, true, 128, true, true, 32768]);
    // The cache key tells adapters and drivers apart.
    expect(new Set([mesa.key, swift.key, nv.key]).size).toBe(3);
  });

  it('the running adapter has a profile, and the FMA ceiling is measured on request', async () => {
    const r = await init();
    console.log(`profile: ${JSON.stringify(r.profile)}`);
    expect(r.profile).toBe(r.gpu.profile);
    expect(r.profile.adapterName.length).toBeGreaterThan(0);
    const g = await measureFmaCeiling(r.device, { targetMs: 20, reps: 1 });
    console.log(`FMA ceiling ${g.toFixed(1)} GFLOP/s`);
    expect(g).toBeGreaterThan(0);
    expect(Number.isFinite(g)).toBe(true);
  });
});

describe('kernel overrides', () => {
  it('set, read back, restore and validate', () => {
    const prev = setKernelOverrides({ matmul: 'tiled', conv: 'gemm4' });
    expect(prev).toEqual({ matmul: undefined, conv: undefined });
    expect(kernelOverride('matmul')).toBe('tiled');
    setKernelOverrides(prev);
    expect(kernelOverride('matmul')).toBeUndefined();
    expect(() => setKernelOverrides({ matmulRegisterBlock: { WG: 8, RM: 3, RN: 4 } })).toThrow(/multiples of 4/);
    clearKernelOverrides();
    expect(kernelOverride('conv')).toBeUndefined();
  });
});
