// Kernel family `norm` (shaders/norm.wgsl): RMS norm over the last axis; the uniform schema
// shared by FWD, DX and DW, and the tunable row reduction of FWD and DX (`normFamily`: WG lanes
// per row).
import { pow2Bucket } from './catalogue.ts';
import { kernelOverride } from './overrides.ts';
import { uniformSchema } from './uniforms.ts';
import { type RowConfig, rowFamily } from './rows.ts';

export const normParams = uniformSchema('norm', { rows: 'u32', D: 'u32', eps: 'f32' });

/** `rows` rows of D features, element type `dtype`. */
export interface NormGeometry {
  rows: number; D: number; dtype: 'f32' | 'f16';
}

/** One workgroup of WG lanes per row (src/graph/kernels/rows.ts). */
export type NormConfig = RowConfig;

/** Hand pick: 8 lanes on software adapters, else the GPU width (rows.ts); an `rmsNormWidth` override forces it. */
export const normFamily = rowFamily<NormGeometry>('norm', (g) => `${pow2Bucket(g.rows)}x${pow2Bucket(g.D)}:${g.dtype}`, (g) => g.D, () => kernelOverride('rmsNormWidth'));

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
