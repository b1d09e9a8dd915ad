// Kernel family `matvec` (shaders/matvec.wgsl): few-row products of decoding steps. Uniform
// schema shared by its entry points; the tunable configuration of `rowsLinear` (lanes per
// workgroup striding along k, partial sums per lane) with its hand pick and candidates, its block
// shape and the emitter of its unrolled body.
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

/**
 * Rows (RB) and outputs (RN) per workgroup for B rows, NW weight matrices and `sums` partial sums
 * per lane (RB·RN·NW; 16 ran fastest on llvmpipe: 24, 32, 48 were 15–50% slower in a paper decode step).
 */
export function matvecBlock(B: number, NW: number, sums = 16): { RB: number; RN: number } {
  const RB = Math.min(B, 4);
  const RN = Math.max(1, Math.min(8, Math.floor(sums / (RB * NW))));
  return { RB, RN };
}

/**
 * The unrolled body: this lane's k's of RB rows and RN outputs, partial sums a{i}_{j}_{w}
 * left in `part`. VEC: X and W are read as vec4 (4 k's per load; K % 4 == 0) — on llvmpipe each
 * load instruction has a large fixed cost, so wider loads stream faster. KFULL: the k extent
 * (in loads) is a multiple of LANES, so no tail needs masking.
 */
export function matvecBody(RB: number, RN: number, NW: number, vec: boolean, kFull: boolean): string {
  const L: string[] = [];
  const wName = NW === 2 ? ['W1', 'W3'] : ['W'];
  const KL = vec ? 'K4' : 'p.K';
  L.push(`  let K4 = p.K / ${vec ? 4 : 1}u;`);
  for (let i = 0; i < RB; i++) L.push(`  let xo${i} = (xbase + min(r0 + ${i}u, p.B - 1u)) * K4;`);
  for (let j = 0; j < RN; j++) L.push(`  let wo${j} = (wbase + min(o0 + ${j}u, p.N - 1u)) * K4;`);
  const acc = (i: number, j: number, w: number) => `a${i}_${j}_${w}`;
  for (let i = 0; i < RB; i++) for (let j = 0; j < RN; j++) for (let w = 0; w < NW; w++) L.push(`  var ${acc(i, j, w)} = 0.0;`);
  L.push(`  for (var k0 = 0u; k0 < ${KL}; k0 += LANES) {`);
  if (kFull) L.push('    let k = k0 + t;');
  else L.push(`    let k = min(k0 + t, ${KL} - 1u);`, `    let live = k0 + t < ${KL};`);
  const zero = vec ? 'vec4<f32>()' : '0.0';
  for (let i = 0; i < RB; i++) L.push(kFull ? `    let x${i} = VF(X[xo${i} + k]);` : `    let x${i} = select(${zero}, VF(X[xo${i} + k]), live);`);
  for (let j = 0; j < RN; j++) for (let w = 0; w < NW; w++) L.push(`    let w${j}_${w} = VF(${wName[w]}[wo${j} + k]);`);
  const dot = (x: string, v: string, a: string) => (vec ? `fma(${x}.w, ${v}.w, fma(${x}.z, ${v}.z, fma(${x}.y, ${v}.y, fma(${x}.x, ${v}.x, ${a}))))` : `fma(${x}, ${v}, ${a})`);
  for (let i = 0; i < RB; i++) for (let j = 0; j < RN; j++) for (let w = 0; w < NW; w++) L.push(`    ${acc(i, j, w)} = ${dot(`x${i}`, `w${j}_${w}`, acc(i, j, w))};`);
  L.push('  }');
  for (let i = 0; i < RB; i++) for (let j = 0; j < RN; j++) for (let w = 0; w < NW; w++) L.push(`  part[${(i * RN + j) * NW + w}u * LANES + t] = ${acc(i, j, w)};`);
  return L.join('\n');
}
