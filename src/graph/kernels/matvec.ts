// Kernel family `matvec` (shaders/matvec.wgsl): few-row products of decoding steps. Uniform
// schema shared by its entry points; the tunable configuration of `rowsLinear` (lanes per
// workgroup striding along k, partial sums per lane) with its hand pick and candidates.
import type { DeviceProfile } from '../../gpu/profile.ts';
import { kernelOverride } from './overrides.ts';
import { type KernelFamily, pow2Bucket } from './catalogue.ts';
import { uniformSchema } from './uniforms.ts';

export const matvecParams = uniformSchema('matvec', { B: 'u32', N: 'u32', K: 'u32', k: 'u32' });

export interface MatvecConfig {
  /** Invocations per workgroup, striding along k. */
  LANES: number;
  /** Partial sums per lane (RB·RN·NW): bounds the register block. */
  sums: number;
  /**
   * The cross-lane sums fold through subgroup operations (every lane busy, subgroupAdd) instead
   * of one lane per sum reading the LANES partials from workgroup memory in turn — a candidate
   * only where the device has the `subgroups` feature.
   */
  sg?: boolean;
}

export interface MatvecGeometry {
  B: number; N: number; K: number; bias: boolean;
}

/** Hand pick: one SIMD vector (8 lanes) on CPU adapters, 64 on GPUs; 16 sums ran fastest on llvmpipe (24, 32, 48 were 15–50% slower in a paper decode step). */
export function matvecHandConfig(profile: DeviceProfile): MatvecConfig {
  return { LANES: kernelOverride('matvecLanes') ?? (profile.software ? 8 : 64), sums: kernelOverride('matvecSumsPerLane') ?? 16 };
}

const key = (c: MatvecConfig) => `lanes${c.LANES}:sums${c.sums}${c.sg ? ':sg' : ''}`;

export const matvecFamily: KernelFamily<MatvecGeometry, MatvecConfig> = {
  name: 'matvec',
  bucket: (g) => `${pow2Bucket(g.B)}x${pow2Bucket(g.N)}x${pow2Bucket(g.K)}${g.bias ? '+b' : ''}`,
  handPicked: (_g, profile) => matvecHandConfig(profile),
  candidates(_g, profile) {
    const lanes = profile.software ? [8, 16] : [32, 64, 128];
    const out = [matvecHandConfig(profile)];
    for (const LANES of lanes) for (const sums of [8, 16, 24]) out.push({ LANES, sums });
    const all = profile.features.subgroups ? [...out, ...out.map((c) => ({ ...c, sg: true }))] : out;
    const seen = new Set<string>();
    return all.filter((c) => c.LANES <= profile.limits.maxComputeInvocationsPerWorkgroup && !seen.has(key(c)) && !!seen.add(key(c)));
  },
  configKey: key,
  parseConfig(s) {
    const m = /^lanes(\d+):sums(\d+)(:sg)?$/.exec(s);
    if (!m) return null;
    const [LANES, sums] = [Number(m[1]), Number(m[2])];
    if (!(LANES >= 1 && LANES <= 256 && (LANES & (LANES - 1)) === 0 && sums >= 1 && sums <= 64)) return null;
    return m[3] ? { LANES, sums, sg: true } : { LANES, sums };
  },
  forced: () => kernelOverride('matvecLanes') !== undefined || kernelOverride('matvecSumsPerLane') !== undefined,
};
