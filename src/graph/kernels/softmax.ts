// Kernel family `softmax` (shaders/softmax.wgsl): softmax / log-softmax over the last axis with
// an optional broadcast mask, and their backward; the uniform schema shared by all kinds, and
// the tunable row reduction every kind uses (`softmaxFamily`: WG lanes per row, tree or
// subgroup folds).
import { pow2Bucket } from './catalogue.ts';
import { type RowConfig, rowFamily } from './rows.ts';
import { uniformSchema } from './uniforms.ts';

export const softmaxParams = uniformSchema('softmax', {
  rows: 'u32',
  K: 'u32', // row length (last axis)
  lrank: 'u32', // number of leading (row) axes of x
  mlast: 'u32', // mask stride along the last axis (0 or 1)
  dims: 'array<vec4<u32>, 2>', // x.shape[:-1]
  ms: 'array<vec4<u32>, 2>', // mask strides for those axes (0 = broadcast)
});

/** `rows` rows of K, element type `dtype`, with or without a mask. */
export interface SoftmaxGeometry {
  rows: number; K: number; dtype: 'f32' | 'f16'; mask: boolean;
}

/** One workgroup of WG lanes per row (src/graph/kernels/rows.ts). */
export type SoftmaxConfig = RowConfig;

/** Hand pick: 8 lanes on software adapters, else the GPU width (rows.ts rowHandConfig). */
export const softmaxFamily = rowFamily<SoftmaxGeometry>('softmax', (g) => `${pow2Bucket(g.rows)}x${pow2Bucket(g.K)}:${g.dtype}${g.mask ? ':mask' : ''}`, (g) => g.K);

/**
 * Largest |difference| between two configurations' dx of softmax (forward then backward, the
 * tuner's trial) for x, dy in [−1, 1]. Both compute the same e_j = exp(z_j − max) (the max is
 * exact in any order); the sums s of positive e_j are within γ_K relative of the exact one in
 * any order and the division is within 2.5 ULP (5u), so y differs by ε_y·y with
 * ε_y = 2γ_K + 10u (+ 2·2⁻¹¹ for two f16 roundings). Backward: S = Σ dy⊙y, |S| ≤ Σ y ≈ 1, is
 * within γ_K in each order and the exact sums differ by ε_y, so |S_a − S_b| ≤ 2γ_K + ε_y;
 * dx = y·(dy − S) with |dy − S| ≤ 2 and two roundings (γ₂) differs by at most
 * 2ε_y + (2γ_K + ε_y) + 4γ₂ (+ 2·2·2⁻¹¹ for the f16 stores of dx, |dx| ≤ 2), with 1% for
 * second-order terms.
 */
export function softmaxTrialTolerance(g: SoftmaxGeometry): number {
  const u = 2 ** -24, gam = (n: number) => (n * u) / (1 - n * u), h = g.dtype === 'f16' ? 2 ** -11 : 0;
  const ey = 2 * gam(g.K) + 10 * u + 2 * h;
  return (3 * ey + 2 * gam(g.K) + 4 * gam(2) + 4 * h) * 1.01;
}
