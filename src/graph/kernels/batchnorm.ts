// Kernel family `batchnorm` (shaders/batchnorm.wgsl): BatchNorm2d over NCHW; the uniform
// schema shared by STATS, APPLY, BWD_REDUCE, BWD_DX and UPDATE, and the tunable layout
// (`batchnormFamily`): lanes per channel reduction, and whether the element-wise kinds run one
// thread per (n, c) row or per element.
import type { DeviceProfile } from '../../gpu/profile.ts';
import { type KernelFamily, pow2Bucket } from './catalogue.ts';
import { kernelOverride } from './overrides.ts';
import { uniformSchema } from './uniforms.ts';

export const batchnormParams = uniformSchema('batchnorm', {
  N: 'u32', C: 'u32', HW: 'u32',
  total: 'u32', // N·C·HW
  eps: 'f32',
  momentum: 'f32', // UPDATE: running = (1 − momentum)·running + momentum·batch
});

export interface BatchnormGeometry {
  N: number; C: number; HW: number; dtype: 'f32' | 'f16';
}

/**
 * RWG: lanes of each channel reduction (STATS, BWD_REDUCE; a power of two). rows: APPLY and the
 * training BWD_DX run one thread per (n, c) row walking its HW values, else one per element.
 * sg: the channel sums fold through subgroup operations (lib/reduce_pair, SUBGROUPS) instead of
 * a tree in workgroup memory — a candidate only where the device has the `subgroups` feature.
 */
export interface BatchnormConfig {
  RWG: number; rows: boolean; sg?: boolean;
}

/**
 * Hand pick: one SIMD vector (8 lanes) and per-row threads on software adapters (barriers are
 * dear there), 256 lanes and per-element threads on GPUs; a `batchNormWidth` override forces
 * 8 (with rows) or 256.
 */
export function batchnormHandConfig(_g: BatchnormGeometry, profile: DeviceProfile): BatchnormConfig {
  const forced = kernelOverride('batchNormWidth');
  const narrow = forced !== undefined ? forced === 8 : profile.software;
  return narrow ? { RWG: 8, rows: true } : { RWG: 256, rows: false };
}

const key = (c: BatchnormConfig) => `rwg${c.RWG}:${c.rows ? 'rows' : 'elems'}${c.sg ? ':sg' : ''}`;

export const batchnormFamily: KernelFamily<BatchnormGeometry, BatchnormConfig> = {
  name: 'batchnorm',
  bucket: (g) => `${pow2Bucket(g.N)}x${pow2Bucket(g.C)}x${pow2Bucket(g.HW)}:${g.dtype}`,
  handPicked: batchnormHandConfig,
  candidates(g, profile) {
    const out = [batchnormHandConfig(g, profile)];
    for (const RWG of profile.software ? [8, 16, 32] : [64, 128, 256]) for (const rows of [true, false]) out.push({ RWG, rows });
    if (profile.features.subgroups) out.push(...out.map((c) => ({ ...c, sg: true })));
    const seen = new Set<string>();
    return out.filter((c) => c.RWG <= profile.limits.maxComputeInvocationsPerWorkgroup && !seen.has(key(c)) && !!seen.add(key(c)));
  },
  configKey: key,
  parseConfig(s) {
    const m = /^rwg(\d+):(rows|elems)(:sg)?$/.exec(s);
    const RWG = m ? Number(m[1]) : 0;
    if (!(RWG >= 1 && RWG <= 256 && (RWG & (RWG - 1)) === 0)) return null;
    return m![3] ? { RWG, rows: m![2] === 'rows', sg: true } : { RWG, rows: m![2] === 'rows' };
  },
  forced: () => kernelOverride('batchNormWidth') !== undefined,
};

/**
 * Largest |difference| between two configurations' training outputs y = (x − μ)·r·w + b for
 * w, b in [−1, 1] and these inputs x (|x| ≤ 1), from the data's own per-channel statistics:
 * n = N·HW values; the mean is within e = γ_n of μ in any order; the two-pass variance within
 * θ = γ_{n+3} + e²/var relative, so r = 1/√(var + eps) within θ/2 + 3u; then
 * |Δy| ≤ (M/σ)·(θ/2 + 6u) + e/σ + 3u with M = max|x − μ|, σ = √(var + eps). Twice the
 * worst channel's bound (plus one f16 rounding each, 2⁻¹¹·(M/σ + 1), for f16 outputs).
 */
export function batchnormTrialTolerance(g: BatchnormGeometry, x: ArrayLike<number>, eps = 1e-5): number {
  const u = 2 ** -24, gam = (k: number) => (k * u) / (1 - k * u);
  const n = g.N * g.HW, e = gam(n);
  let worst = 0;
  for (let c = 0; c < g.C; c++) {
    let s = 0;
    for (let i = 0; i < g.N; i++) for (let j = 0; j < g.HW; j++) s += x[(i * g.C + c) * g.HW + j];
    const mu = s / n;
    let q = 0, M = 0;
    for (let i = 0; i < g.N; i++) for (let j = 0; j < g.HW; j++) {
      const d = Math.abs(x[(i * g.C + c) * g.HW + j] - mu);
      q += d * d;
      M = Math.max(M, d);
    }
    const v = q / n, sigma = Math.sqrt(v + eps), theta = gam(n + 3) + (v > 0 ? (e * e) / v : 1);
    const b = (M / sigma) * (theta / 2 + 6 * u) + e / sigma + 3 * u + (g.dtype === 'f16' ? 2 ** -11 * (M / sigma + 1) : 0);
    worst = Math.max(worst, b);
  }
  return 2 * worst * (g.dtype === 'f16' ? 1.05 : 1.01);
}
