// Kernel family `moe` (shaders/moe.wgsl): the mixture-of-experts kernels. Its kinds bind
// different uniforms, so each group of kinds has its own schema; kernel() in
// src/graph/ops/moe.ts fills the shader's `${PARAMS}` hole with the schema of the kind it
// specialises (moeKindParams). The grouped expert matmuls are a tunable catalogue family
// (moeGmmFamily: register or tiled layout and its column block), and so are the expert weight
// gradients (moeWgradFamily: matmul's register blocks or tiles).
import type { DeviceProfile } from '../../gpu/profile.ts';
import { type KernelFamily, pow2Bucket, smallRegisterBlocks } from './catalogue.ts';
import { kernelOverride } from './overrides.ts';
import { matmulFamily, type MatmulTiles, matmulTiles } from './matmul.ts';
import { uniformSchema } from './uniforms.ts';

/** GATE_FWD, GATE_BWD: N tokens, E experts, top-K. */
export const moeGateParams = uniformSchema('moe gate', { N: 'u32', E: 'u32', K: 'u32' });
/** ROUTE: nSlots = N·k slots, E experts, TM rows per tile, capRows / capTiles of the static-capacity buffers. */
export const moeRouteParams = uniformSchema('moe route', { nSlots: 'u32', E: 'u32', TM: 'u32', capRows: 'u32', capTiles: 'u32' });
/** GATHER: rows of the expert-grouped buffer, d features, top-K. */
export const moeGatherParams = uniformSchema('moe gather', { rows: 'u32', d: 'u32', K: 'u32' });
/** COMBINE: N tokens, d features, top-K. */
export const moeCombineParams = uniformSchema('moe combine', { N: 'u32', d: 'u32', K: 'u32' });
/** SLOT_DOT: nSlots = N·k slots, d features, top-K. */
export const moeSlotDotParams = uniformSchema('moe slot_dot', { nSlots: 'u32', d: 'u32', K: 'u32' });
/** GMM, GMM_REG: C [M, N] = A [M, K] · op(W[e]) per row tile. */
export const moeGmmParams = uniformSchema('moe gmm', { M: 'u32', N: 'u32', K: 'u32' });
/** GMM_WGRAD, GMM_WGRAD_REG: out [E, M, N] from G [rows, M] and A [rows, N]. */
export const moeWgradParams = uniformSchema('moe gmm_wgrad', { M: 'u32', N: 'u32', rows: 'u32' });

export type MoeKind = 'GATE_FWD' | 'GATE_BWD' | 'ROUTE' | 'GATHER' | 'COMBINE' | 'SLOT_DOT' | 'GMM' | 'GMM_WGRAD' | 'GMM_REG' | 'GMM_WGRAD_REG';

/** The schema whose struct fills `${PARAMS}` for each kind. */
export const moeKindParams: Record<MoeKind, { wgsl: string }> = {
  GATE_FWD: moeGateParams, GATE_BWD: moeGateParams, ROUTE: moeRouteParams, GATHER: moeGatherParams, COMBINE: moeCombineParams,
  SLOT_DOT: moeSlotDotParams, GMM: moeGmmParams, GMM_REG: moeGmmParams, GMM_WGRAD: moeWgradParams, GMM_WGRAD_REG: moeWgradParams,
};

// ---------------------------------------------------------------- tunable grouped matmul

/**
 * Geometry of one grouped expert matmul (GMM / GMM_REG): out [M, N] = A [M, K] · op(W[e]) with
 * W [E, N, K] (transB) or [E, K, N]; every `tile` rows (32 or 64, fixed by the routing plan)
 * belong to one expert.
 */
export interface MoeGmmGeometry {
  M: number; N: number; K: number; E: number; tile: number; transB: boolean;
}

/**
 * GMM_REG: WG = 8 lanes, RM = tile / 8 rows per lane (a workgroup is one row tile), RN columns
 * per workgroup. GMM: TM = tile rows, TN columns per workgroup, BK = 16, 4×4 per invocation.
 */
export type MoeGmmConfig = { kind: 'register'; RN: number } | { kind: 'tiled'; TN: number };

/** Today's choice: GMM_REG with RN 16 where unrolled register kernels are the default (CPU adapters), else GMM with TN = the row tile. A `moe` override forces the layout. */
export function moeGmmHandConfig(g: MoeGmmGeometry, profile: DeviceProfile): MoeGmmConfig {
  const forced = kernelOverride('moe');
  const reg = forced ? forced === 'register' : profile.software && profile.registerBlockLimit > 0;
  return reg ? { kind: 'register', RN: gmmRegisterRn(g, profile, 16) } : { kind: 'tiled', TN: g.tile };
}

/** The widest RN ≤ `want` whose block (tile/8 rows × RN) fits the adapter's accumulator limit (4 at least). */
function gmmRegisterRn(g: MoeGmmGeometry, profile: DeviceProfile, want: number): number {
  let RN = want;
  while (RN > 4 && (g.tile / 8) * RN > Math.max(profile.registerBlockLimit, 32)) RN /= 2;
  return RN;
}

const gmmKey = (c: MoeGmmConfig) => (c.kind === 'register' ? `register:rn${c.RN}` : `tiled:tn${c.TN}`);

export const moeGmmFamily: KernelFamily<MoeGmmGeometry, MoeGmmConfig> = {
  // The family's name is its shader's (moe.wgsl), so a changed kernel invalidates cached choices.
  name: 'moe',
  bucket: (g) => `t${g.tile}:${pow2Bucket(g.M)}x${pow2Bucket(g.N)}x${pow2Bucket(g.K)}e${pow2Bucket(g.E)}${g.transB ? 'T' : 'N'}`,
  handPicked: moeGmmHandConfig,
  candidates(g, profile) {
    const out: MoeGmmConfig[] = [moeGmmHandConfig(g, profile)];
    // Register blocks compile an unrolled RM×RN body (RM = tile/8): seconds each on llvmpipe.
    if (profile.registerBlockLimit > 0) for (const RN of [4, 8, 16]) if ((g.tile / 8) * RN <= profile.registerBlockLimit && (RN > 4 || profile.registerBlockLimit < 128)) out.push({ kind: 'register', RN });
    // Not on small-block software adapters (SwiftShader): tiles ran the expert products >10× slower there.
    if (!smallRegisterBlocks(profile)) for (const TN of [32, 64]) out.push({ kind: 'tiled', TN });
    const seen = new Set<string>();
    return out.filter((c) => !seen.has(gmmKey(c)) && !!seen.add(gmmKey(c)));
  },
  configKey: gmmKey,
  parseConfig(s) {
    let m = /^register:rn(\d+)$/.exec(s);
    if (m) {
      const RN = Number(m[1]);
      return RN >= 4 && RN <= 32 && RN % 4 === 0 ? { kind: 'register', RN } : null;
    }
    m = /^tiled:tn(\d+)$/.exec(s);
    if (!m) return null;
    const TN = Number(m[1]);
    return TN === 32 || TN === 64 ? { kind: 'tiled', TN } : null;
  },
  forced: () => kernelOverride('moe') !== undefined,
};

/**
 * Geometry of one expert weight gradient (GMM_WGRAD / GMM_WGRAD_REG): out [E, M, N], expert e's
 * block the sum over its row segment of G[r]ᵀ·A[r] (G [rows, M], A [rows, N]); `tile` is the
 * routing plan's row tile (segments are padded to it).
 */
export interface MoeWgradGeometry {
  M: number; N: number; rows: number; E: number; tile: number;
}

/** Today's choice: matmul's register block for M×N where register kernels are the default, else 32×32 tiles up to 64×64 outputs and 64×64 above. */
export function moeWgradHandConfig(g: MoeWgradGeometry, profile: DeviceProfile): MatmulTiles {
  const forced = kernelOverride('moe');
  const reg = forced ? forced === 'register' : profile.software && profile.registerBlockLimit > 0;
  if (reg) {
    const t = matmulTiles(g.M, g.N, 'register');
    // Under a small accumulator limit (SwiftShader), at most 4 × 8 per lane.
    return profile.registerBlockLimit >= 128 || t.RM * t.RN <= 32 ? t : { ...t, RM: Math.min(t.RM, 4), RN: Math.min(t.RN, 8) };
  }
  const T = g.M * g.N <= 64 * 64 ? 32 : 64;
  return { kind: 'tiled', TM: T, TN: T, BK: 16, RM: 4, RN: 4, WG: 0 };
}

export const moeWgradFamily: KernelFamily<MoeWgradGeometry, MatmulTiles> = {
  name: 'moe_wgrad',
  shader: 'moe',
  bucket: (g) => `t${g.tile}:${pow2Bucket(g.M)}x${pow2Bucket(g.N)}r${pow2Bucket(g.rows)}e${pow2Bucket(g.E)}`,
  handPicked: moeWgradHandConfig,
  candidates(g, profile) {
    const out: MatmulTiles[] = [moeWgradHandConfig(g, profile)];
    if (profile.registerBlockLimit > 0) for (const [WG, RM, RN] of [[8, 4, 8], [8, 4, 16], [8, 8, 8], [8, 8, 16]]) if (RM * RN <= profile.registerBlockLimit) out.push({ kind: 'register', TM: 0, TN: 0, BK: 0, WG, RM, RN });
    if (!smallRegisterBlocks(profile)) for (const T of [32, 64]) out.push({ kind: 'tiled', TM: T, TN: T, BK: 16, RM: 4, RN: 4, WG: 0 });
    const key = matmulFamily.configKey, seen = new Set<string>();
    return out.filter((c) => !seen.has(key(c)) && !!seen.add(key(c)));
  },
  configKey: (c) => matmulFamily.configKey(c),
  // (matmul's WINDOW kernel has no grouped form.)
  parseConfig: (s) => { const c = matmulFamily.parseConfig(s); return c && c.kind !== 'window' ? c : null; },
  forced: () => kernelOverride('moe') !== undefined,
};
