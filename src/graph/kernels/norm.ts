// Kernel family `norm` (shaders/norm.wgsl): RMS norm over the last axis; the uniform schema
// shared by FWD, DX and DW, and the tunable row reduction of FWD and DX (`normFamily`: WG lanes
// per row).
import type { DeviceProfile } from '../../gpu/profile.ts';
import { type KernelFamily, pow2Bucket } from './catalogue.ts';
import { kernelOverride } from './overrides.ts';
import { uniformSchema } from './uniforms.ts';
import { parseRowConfig, type RowConfig, rowCandidates, rowConfigKey, rowGpuWidth } from './rows.ts';

export const normParams = uniformSchema('norm', { rows: 'u32', D: 'u32', eps: 'f32' });

/** `rows` rows of D features, element type `dtype`. */
export interface NormGeometry {
  rows: number; D: number; dtype: 'f32' | 'f16';
}

/** One workgroup of WG lanes per row (src/graph/kernels/rows.ts). */
export type NormConfig = RowConfig;

/**
 * Hand pick: on software adapters one SIMD vector (8 lanes) per row — each barrier of a wider
 * workgroup switches between all its groups of lanes, and the row reductions were
 * barrier-bound on llvmpipe; elsewhere the GPU width. An `rmsNormWidth` override forces it.
 */
export function normHandConfig(g: NormGeometry, profile: DeviceProfile): NormConfig {
  const forced = kernelOverride('rmsNormWidth');
  return { WG: forced === 8 || (forced === undefined && profile.software) ? 8 : rowGpuWidth(g.D) };
}

export const normFamily: KernelFamily<NormGeometry, NormConfig> = {
  name: 'norm',
  bucket: (g) => `${pow2Bucket(g.rows)}x${pow2Bucket(g.D)}:${g.dtype}`,
  handPicked: normHandConfig,
  candidates: (g, profile) => rowCandidates(normHandConfig(g, profile), g.D, profile),
  configKey: rowConfigKey,
  parseConfig: parseRowConfig,
  forced: () => kernelOverride('rmsNormWidth') !== undefined,
};

/**
 * Largest |difference| between two configurations' outputs y = x·r·w for x, w in [−1, 1]: the
 * sum of squares (positive terms) is within γ_D relative in any order, so r = 1/√(Σ/D + eps)
 * within γ_D/2 + 3u and y within γ_D/2 + 5u of |y| ≤ √D (|x_j|·√D/‖x‖ ≤ √D); twice that,
 * plus one f16 rounding each (2⁻¹¹ relative) when the output is f16.
 */
export function normTrialTolerance(g: NormGeometry): number {
  const u = 2 ** -24, gam = (n: number) => (n * u) / (1 - n * u);
  return 2 * (gam(g.D) / 2 + 5 * u + (g.dtype === 'f16' ? 2 ** -11 : 0)) * Math.sqrt(g.D) * 1.01;
}
