// Kernel family `loss` (shaders/loss.wgsl): cross entropy with an ignored label; the uniform
// schema shared by CE_ROWS, CE_MEAN and CE_GRAD, and the tunable row reduction of CE_ROWS
// (`lossFamily`: WG lanes per row of logits, tree or subgroup folds).
import { pow2Bucket } from './catalogue.ts';
import { type RowConfig, rowFamily } from './rows.ts';
import { uniformSchema } from './uniforms.ts';

export const lossParams = uniformSchema('loss', {
  N: 'u32', // rows
  V: 'u32', // classes
  ignore: 'i32', // the ignored label
  total: 'u32', // threads (CE_GRAD: N·V)
});

/** N rows of V logits, element type `dtype`. */
export interface LossGeometry {
  N: number; V: number; dtype: 'f32' | 'f16';
}

/** CE_ROWS: one workgroup of WG lanes per row (src/graph/kernels/rows.ts). */
export type LossConfig = RowConfig;

/** Hand pick: 8 lanes on software adapters, else the GPU width (rows.ts rowHandConfig). */
export const lossFamily = rowFamily<LossGeometry>('loss', (g) => `${pow2Bucket(g.N)}x${pow2Bucket(g.V)}:${g.dtype}`, (g) => g.V);

/**
 * Largest |difference| between two configurations' mean loss (the tuner's trial: every label
 * counted) for logits in [−1, 1]. Per row the max is exact in any order and Σ exp (positive
 * terms, s in [1, V]) within γ_V relative, so log s differs by 2γ_V, plus WGSL's log error
 * (2⁻²¹ absolute or 3 ULP ≤ 6u·ln V) in each; the row loss l = (max − x_label) + log s,
 * |l| ≤ 2 + ln V, adds one rounding each. CE_MEAN is the same kernel in both: its sum of N row
 * losses differs by the rows' differences plus γ_N·Σ|l| each, the division 2.5 ULP each.
 */
export function lossTrialTolerance(g: LossGeometry): number {
  const u = 2 ** -24, gam = (n: number) => (n * u) / (1 - n * u), L = 2 + Math.log(g.V);
  const row = 2 * gam(g.V) + 2 * (2 ** -21 + 6 * u * Math.log(g.V)) + 2 * u * L;
  return (row + 2 * gam(g.N) * L + 10 * u * L) * 1.01;
}
