// Kernel family `moe` (shaders/moe.wgsl): the mixture-of-experts kernels. Its kinds bind
// different uniforms, so each group of kinds has its own schema; kernel() in
// src/graph/ops/moe.ts fills the shader's `${PARAMS}` hole with the schema of the kind it
// specialises (moeKindParams).
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
