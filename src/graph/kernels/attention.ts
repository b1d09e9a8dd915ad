// Kernel family `attention` (shaders/attention.wgsl): fused scaled-dot-product attention. The
// uniform schema shared by all its kinds, and the tunable forward (`attentionFamily`): one lane
// per query row with the row in registers (FWD_REG / PROBS_REG, the unrolled body emitted here),
// workgroup tiles of query and key rows (FWD / PROBS), or, for a single query row (decoding
// steps), one workgroup per head (ONE_Q) — each with its sizes.
import type { DeviceProfile } from '../../gpu/profile.ts';
import { type KernelFamily, pow2Bucket } from './catalogue.ts';
import { kernelOverride } from './overrides.ts';
import { uniformSchema } from './uniforms.ts';

export const attentionParams = uniformSchema('attention', {
  BH: 'u32', H: 'u32', Sq: 'u32', Sk: 'u32', // batch·heads, heads, query and key rows
  scale: 'f32',
  mb: 'u32', mq: 'u32', mk: 'u32', // mask element strides over (batch, query, key); 0 = broadcast
});

/** Geometry of one attention forward: BH heads (batch · heads) of Sq query and Sk key rows. */
export interface AttentionGeometry {
  BH: number; Sq: number; Sk: number; d: number; dv: number;
  /** The keep-mask's element type, or none. */
  mask: 'none' | 'f32' | 'i32';
  /** Element type of q, k, v and the output. */
  dtype: 'f32' | 'f16';
}

/**
 * register: RWG query rows per workgroup, one per lane (no workgroup memory, keys walked at
 * uniform addresses). tiled: QB query rows (4 lanes each) and KB keys per tile in workgroup
 * memory. one: Sq = 1, OWG lanes striding over the keys, then over the output columns.
 */
export type AttentionConfig =
  | { kind: 'register'; RWG: number }
  | { kind: 'tiled'; QB: number; KB: number }
  | { kind: 'one'; OWG: number };

/** Head sizes up to which the unrolled register kernels can be used (q row and output in registers). */
export const REG_MAX_D = 160;
/** Largest key count of the one-query kernel (its scores live in workgroup memory). */
export const ONE_Q_MAX_SK = 3072;
/** WebGPU's guaranteed workgroup memory: 16 KiB = 4096 floats (the hand pick stays within it). */
const WG_FLOATS = 4096;
const TILES: [number, number][] = [[32, 32], [32, 16], [16, 32], [16, 16], [8, 16], [8, 8], [4, 8], [4, 4], [2, 4], [1, 4]];

/** Workgroup floats of a tiled configuration: the Q block, the K/V tile and the score tile. */
const tileFloats = (QB: number, KB: number, d: number, dv: number) => QB * d + KB * Math.max(d, dv) + QB * KB;

/** The largest of the hand-picked query/key tiles (≤ 16 × 16) that fit in 16 KiB. */
export function attentionTiles(d: number, dv: number): { QB: number; KB: number } {
  for (const [QB, KB] of TILES)
    if (QB <= 16 && KB <= 16 && tileFloats(QB, KB, d, dv) <= WG_FLOATS) return { QB, KB };
  throw new Error(`attention: head sizes d=${d}, dv=${dv} are too large for workgroup memory`);
}

/** Whether configuration `c` can run geometry `g` on this adapter (a cached choice may not). */
export function attentionConfigFits(c: AttentionConfig, g: AttentionGeometry, profile: DeviceProfile): boolean {
  if (c.kind === 'one') return g.Sq === 1 && g.Sk <= ONE_Q_MAX_SK && c.OWG <= profile.limits.maxComputeInvocationsPerWorkgroup;
  if (c.kind === 'register') return g.d + g.dv <= REG_MAX_D && c.RWG <= profile.limits.maxComputeInvocationsPerWorkgroup;
  return tileFloats(c.QB, c.KB, g.d, g.dv) * 4 <= profile.limits.maxComputeWorkgroupStorageSize && c.QB * 4 <= profile.limits.maxComputeInvocationsPerWorkgroup;
}

/**
 * Today's choice: ONE_Q for a single query row (8 lanes on software adapters, one SIMD vector;
 * 64 on GPUs), else the register kernel (8 rows) where unrolled register kernels are the
 * default (Mesa), else the largest 16 KiB tiles. An `attention` override forces register or
 * tiled (and turns off ONE_Q).
 */
export function attentionHandConfig(g: AttentionGeometry, profile: DeviceProfile): AttentionConfig {
  const forced = kernelOverride('attention');
  if (!forced && g.Sq === 1 && g.Sk <= ONE_Q_MAX_SK) return { kind: 'one', OWG: profile.software ? 8 : 64 };
  const reg = g.d + g.dv <= REG_MAX_D && (forced ? forced === 'register' : profile.software && profile.unrolledKernels);
  return reg ? { kind: 'register', RWG: 8 } : { kind: 'tiled', ...attentionTiles(g.d, g.dv) };
}

const key = (c: AttentionConfig) =>
  c.kind === 'register' ? `register:rwg${c.RWG}` : c.kind === 'tiled' ? `tiled:qb${c.QB}kb${c.KB}` : `one:owg${c.OWG}`;
const pow2 = (n: number) => n >= 1 && (n & (n - 1)) === 0;

export const attentionFamily: KernelFamily<AttentionGeometry, AttentionConfig> = {
  name: 'attention',
  bucket: (g) => `${pow2Bucket(g.BH)}x${g.Sq === 1 ? 1 : pow2Bucket(g.Sq)}x${pow2Bucket(g.Sk)}:d${g.d}v${g.dv}:${g.mask}:${g.dtype}`,
  handPicked: attentionHandConfig,
  candidates(g, profile) {
    const out: AttentionConfig[] = [attentionHandConfig(g, profile)];
    if (g.Sq === 1 && g.Sk <= ONE_Q_MAX_SK) for (const OWG of profile.software ? [8, 16, 64] : [32, 64, 128]) out.push({ kind: 'one', OWG });
    // The register body is unrolled over d + dv: seconds to compile on SwiftShader.
    if (g.d + g.dv <= REG_MAX_D && profile.unrolledKernels) for (const RWG of profile.software ? [8, 16] : [32, 64]) out.push({ kind: 'register', RWG });
    // The three largest tiles that fit this adapter's workgroup memory.
    out.push(...TILES.filter(([QB, KB]) => attentionConfigFits({ kind: 'tiled', QB, KB }, g, profile)).slice(0, 3).map(([QB, KB]) => ({ kind: 'tiled' as const, QB, KB })));
    const seen = new Set<string>();
    return out.filter((c) => attentionConfigFits(c, g, profile) && !seen.has(key(c)) && !!seen.add(key(c)));
  },
  configKey: key,
  parseConfig(s) {
    let m = /^register:rwg(\d+)$/.exec(s);
    if (m) return pow2(Number(m[1])) && Number(m[1]) <= 256 ? { kind: 'register', RWG: Number(m[1]) } : null;
    m = /^one:owg(\d+)$/.exec(s);
    if (m) return pow2(Number(m[1])) && Number(m[1]) <= 256 ? { kind: 'one', OWG: Number(m[1]) } : null;
    m = /^tiled:qb(\d+)kb(\d+)$/.exec(s);
    if (!m) return null;
    const [QB, KB] = [Number(m[1]), Number(m[2])];
    return pow2(QB) && QB <= 64 && pow2(KB) && KB >= 4 && KB <= 64 ? { kind: 'tiled', QB, KB } : null;
  },
  forced: () => kernelOverride('attention') !== undefined,
};

/**
 * FWD_REG / PROBS_REG bodies: q row in registers q{c}; per key (uniform loop) the score with
 * the same fma order as PROBS; FWD keeps a running max m, sum l and outputs o{c}, rescaled
 * with one exp per key (the larger of score and max gets weight 1).
 */
export function attentionRegisterBody(d: number, dv: number, probs: boolean, hasMask: boolean): string {
  const L: string[] = [];
  for (let c = 0; c < d; c++) L.push(`  let q${c} = f32(Q[qb + ${c}u]);`);
  if (probs) L.push('  let sr = 2u * (bh * p.Sq + qRow);', '  let rm = stats[sr];', '  let rl = stats[sr + 1u];', '  let pb = (bh * p.Sq + qRow) * p.Sk;');
  else {
    L.push('  var m = NONE;', '  var l = 0.0;');
    for (let c = 0; c < dv; c++) L.push(`  var o${c} = 0.0;`);
  }
  L.push('  for (var key = 0u; key < p.Sk; key++) {');
  L.push('    let kb = kBase + key * D;', '    var dot = 0.0;');
  for (let c = 0; c < d; c++) L.push(`    dot = fma(q${c}, f32(K[kb + ${c}u]), dot);`);
  L.push('    var s = dot * p.scale;');
  if (hasMask) L.push('    if (!keep(b, qRow, key)) { s = -1e9; }');
  if (probs) {
    L.push('    if (row < p.Sq) { P[pb + key] = T(exp(s - rm) / rl); }');
  } else {
    L.push('    let up = s > m;', '    let e = exp(-abs(s - m));');
    L.push('    let alpha = select(1.0, e, up);', '    let pr = select(e, 1.0, up);');
    L.push('    m = max(m, s);', '    l = fma(l, alpha, pr);', '    let vb = vBase + key * DV;');
    for (let c = 0; c < dv; c++) L.push(`    o${c} = fma(o${c}, alpha, pr * f32(V[vb + ${c}u]));`);
  }
  L.push('  }');
  if (!probs) {
    L.push('  if (row < p.Sq) {', '    let ob = (bh * p.Sq + row) * DV;');
    for (let c = 0; c < dv; c++) L.push(`    O[ob + ${c}u] = T(o${c} / l);`);
    L.push('    stats[2u * (bh * p.Sq + row)] = m;', '    stats[2u * (bh * p.Sq + row) + 1u] = l;', '  }');
  }
  return L.join('\n');
}

/**
 * Largest |difference| between two configurations' outputs for inputs in [−1, 1] and scale
 * 1/√d (the tuner's check). Per key, against exact arithmetic: the score is off by
 * δ ≤ γ_{d+1}·√d; exp (|argument| ≤ 2√d) by (3 + 6√d) ulp; each of the ≤ Sk + 1 online
 * rescales multiplies a key's weight by one more such exp and two roundings — so each
 * unnormalised weight is within ρ = 2δ + (Sk + 1)·((3 + 6√d)·2u + 2u) relative, the normalised
 * weights within 2ρ, and an output (|v| ≤ 1, Σ weights = 1) within 2ρ + γ_{Sk+1}; plus one f16
 * rounding (≤ 2⁻¹²) when the output is f16. Two configurations: twice that.
 */
export function attentionTrialTolerance(g: AttentionGeometry): number {
  const u = 2 ** -24, gam = (n: number) => (n * u) / (1 - n * u), sd = Math.sqrt(g.d);
  const rho = 2 * gam(g.d + 1) * sd + (g.Sk + 1) * ((3 + 6 * sd) * 2 * u + 2 * u);
  return 2 * (2 * rho + gam(g.Sk + 1) + (g.dtype === 'f16' ? 2 ** -12 : 0));
}
