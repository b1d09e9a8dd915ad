// Kernel family `norm` (shaders/norm.wgsl): RMS norm over the last axis; the uniform schema
// shared by FWD, DX and DW, and the tunable row reduction of FWD and DX (`normFamily`: WG lanes
// per row).
import type { DeviceProfile } from '../../gpu/profile.ts';
import { type KernelFamily, pow2Bucket } from './catalogue.ts';
import { kernelOverride } from './overrides.ts';
import { uniformSchema } from './uniforms.ts';

export const normParams = uniformSchema('norm', { rows: 'u32', D: 'u32', eps: 'f32' });

/** `rows` rows of D features, element type `dtype`. */
export interface NormGeometry {
  rows: number; D: number; dtype: 'f32' | 'f16';
}

/**
 * One workgroup of WG lanes per row (a power of two); sg: the row sum folds through subgroup
 * operations (lib/reduce, SUBGROUPS) instead of a tree in workgroup memory — a candidate only
 * where the device has the `subgroups` feature.
 */
export interface NormConfig {
  WG: number;
  sg?: boolean;
}

/** GPU width for rows of D: about 4 elements per lane, 32 to 256 lanes. */
const gpuWidth = (D: number) => (D <= 128 ? 32 : D <= 256 ? 64 : D <= 512 ? 128 : 256);

/**
 * Hand pick: on software adapters one SIMD vector (8 lanes) per row — each barrier of a wider
 * workgroup switches between all its groups of lanes, and the row reductions were
 * barrier-bound on llvmpipe; elsewhere the GPU width. An `rmsNormWidth` override forces it.
 */
export function normHandConfig(g: NormGeometry, profile: DeviceProfile): NormConfig {
  const forced = kernelOverride('rmsNormWidth');
  return { WG: forced === 8 || (forced === undefined && profile.software) ? 8 : gpuWidth(g.D) };
}

const key = (c: NormConfig) => `wg${c.WG}${c.sg ? ':sg' : ''}`;

export const normFamily: KernelFamily<NormGeometry, NormConfig> = {
  name: 'norm',
  bucket: (g) => `${pow2Bucket(g.rows)}x${pow2Bucket(g.D)}:${g.dtype}`,
  handPicked: normHandConfig,
  candidates(g, profile) {
    const widths = profile.software ? [8, 16, 32] : [32, 64, 128, 256];
    const plain: NormConfig[] = [normHandConfig(g, profile), { WG: gpuWidth(g.D) }, ...widths.map((WG) => ({ WG }))];
    const out = profile.features.subgroups ? [...plain, ...plain.map((c) => ({ ...c, sg: true }))] : plain;
    const seen = new Set<string>();
    return out.filter((c) => c.WG <= profile.limits.maxComputeInvocationsPerWorkgroup && !seen.has(key(c)) && !!seen.add(key(c)));
  },
  configKey: key,
  parseConfig(s) {
    const m = /^wg(\d+)(:sg)?$/.exec(s);
    const WG = m ? Number(m[1]) : 0;
    return WG >= 1 && WG <= 256 && (WG & (WG - 1)) === 0 ? (m![2] ? { WG, sg: true } : { WG }) : null;
  },
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
