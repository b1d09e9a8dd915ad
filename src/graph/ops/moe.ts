// Mixture of experts: top-k softmax gate, the load-balancing loss, and the expert layer with
// GPU-side dispatch. Token slots (t, j) are grouped by expert on the GPU (count, prefix sum,
// each expert's segment padded to whole row tiles of a static-capacity buffer), the experts'
// SwiGLU-style FFNs run as grouped matmuls whose row tiles each belong to one expert, and a
// fixed-order combine brings the rows back to tokens. Compute scales with N·k, not with E,
// and nothing is read back to the CPU.
import { makeNode, type Tensor } from '../tensor.ts';
import { grid1d } from './util.ts';
import {
  moeCombineParams, moeGateParams, moeGatherParams, moeGmmParams, moeKindParams, moeRouteParams, moeSlotDotParams, moeWgradParams,
} from '../kernels/moe.ts';
import { chooseConfig, trialConfig } from '../kernels/catalogue.ts';
import { moeGmmFamily, type MoeGmmGeometry, moeWgradFamily, type MoeWgradGeometry } from '../kernels/moe.ts';
import { registerTunable } from '../tuner.ts';
import { dispose, fromData } from '../runtime.ts';

import { activation, type Activation, addScalar, log, mul, scale, sumTo } from './elementwise.ts';
import { matmul, registerBody, trialData } from './matmul.ts';
import { concat, reshape } from './shape.ts';

export type MoeMode = 'sum' | 'weighted';

export interface ExpertWeights {
  /** [d_ff, d] */
  w1: Tensor;
  /** [d_ff, d] */
  w3: Tensor;
  /** [d, d_ff] */
  w2: Tensor;
}

const FLAGS = ['GATE_FWD', 'GATE_BWD', 'ROUTE', 'GATHER', 'COMBINE', 'SLOT_DOT', 'GMM', 'GMM_WGRAD', 'GMM_REG', 'GMM_WGRAD_REG'] as const;
type Kind = (typeof FLAGS)[number];

/** Every template hole of moe.wgsl needs a value, also in the branches not taken. */
function kernel(kind: Kind, extra: Record<string, number | boolean | string> = {}) {
  const defs: Record<string, number | boolean | string> = {
    WEIGHTED: false, HAS_DP: false, HAS_DW: false, DW_BINDING: 5, TRANS_B: false, TM: 32, TN: 32, BK: 16, RM: 4, RN: 4, WG: 8, REG_BODY: '',
  };
  for (const f of FLAGS) defs[f] = f === kind;
  return { family: 'moe', defs: { ...defs, ...extra }, gen: { PARAMS: moeKindParams[kind].wgsl } };
}

// ---------------------------------------------------------------- gate

/**
 * probs = softmax(x·gateWᵀ) [N,E]; indices [N,k] i32 (descending prob, ties to the lower
 * expert); weights [N,k] = the top-k probs divided by their sum. Gradients reach x and gateW
 * through probs and weights (not through the discrete choice).
 */
export function topkGate(x: Tensor, gateW: Tensor, k: number): { probs: Tensor; indices: Tensor; weights: Tensor } {
  if (x.rank !== 2 || gateW.rank !== 2 || gateW.shape[1] !== x.shape[1])
    throw new Error(`topkGate: x ${x} must be [N,d] and gateW ${gateW} [E,d]`);
  const [N] = x.shape, E = gateW.shape[0];
  if (!Number.isInteger(k) || k < 1 || k > E) throw new Error(`topkGate: k=${k} must be in 1..${E} (experts of gateW ${gateW})`);
  const logits = matmul(x, gateW, { transB: true });
  const [probs, indices, weights] = makeNode('topk_gate', [logits], [{ shape: [N, E] }, { shape: [N, k], dtype: 'i32' }, { shape: [N, k] }], {
    encode(ctx) {
      ctx.dispatch({ kernel: kernel('GATE_FWD'), bindings: [logits, probs, indices, weights], params: moeGateParams.pack({ N, E, K: k }), workgroups: grid1d(N, 64) });
    },
    backward([dProbs, _dIdx, dWeights]) {
      if (!dProbs && !dWeights) return [null];
      const inputs = [probs, indices, weights, ...(dProbs ? [dProbs] : []), ...(dWeights ? [dWeights] : [])];
      const [dLogits] = makeNode('topk_gate_grad', inputs, [{ shape: [N, E] }], {
        encode(ctx) {
          ctx.dispatch({
            kernel: kernel('GATE_BWD', { HAS_DP: !!dProbs, HAS_DW: !!dWeights, DW_BINDING: dProbs ? 6 : 5 }),
            bindings: [probs, indices, weights, dLogits, ...(dProbs ? [dProbs] : []), ...(dWeights ? [dWeights] : [])],
            params: moeGateParams.pack({ N, E, K: k }),
            workgroups: grid1d(N, 64),
          });
        },
      });
      return [dLogits];
    },
  });
  return { probs, indices, weights };
}

/** Σ_e p̄_e·log(p̄_e + 1e-8) with p̄ = mean of probs [N,E] over its N rows (a scalar, shape []). */
export function loadBalancingLoss(probs: Tensor): Tensor {
  if (probs.rank !== 2) throw new Error(`loadBalancingLoss: probs ${probs} must be [N,E]`);
  const mean = scale(sumTo(probs, [probs.shape[1]]), 1 / probs.shape[0]);
  return sumTo(mul(mean, log(addScalar(mean, 1e-8))), []);
}

// ---------------------------------------------------------------- routing

/** Where every token slot goes in the expert-grouped row order (all on the GPU, no gradient). */
export interface MoePlan {
  N: number; k: number; E: number;
  /** Rows per tile; every tile belongs to one expert. */
  tile: number;
  /** Static row capacity N·k + E·(tile−1), rounded up to whole tiles. */
  rows: number;
  /** [N·k] i32: row of each slot. */
  pos: Tensor;
  /** [rows] i32: slot of each row, −1 for padding. */
  rowSlot: Tensor;
  /** [rows/tile] i32: expert of each tile, −1 past the used ones. */
  tileExpert: Tensor;
  /** [E,2] i32: first row and end of the real rows of each expert. */
  segs: Tensor;
}

/** Builds the dispatch plan from the top-k expert indices [N,k]. */
export function moePlan(indices: Tensor, E: number, tile: number): MoePlan {
  if (indices.rank !== 2 || indices.dtype !== 'i32') throw new Error(`moePlan: indices ${indices} must be i32 [N,k]`);
  const [N, k] = indices.shape;
  const rows = Math.ceil((N * k + E * (tile - 1)) / tile) * tile;
  const tiles = rows / tile;
  const [pos, rowSlot, tileExpert, segs] = makeNode('moe_route', [indices], [
    { shape: [N * k], dtype: 'i32' }, { shape: [rows], dtype: 'i32' }, { shape: [tiles], dtype: 'i32' }, { shape: [E, 2], dtype: 'i32' },
  ], {
    encode(ctx) {
      ctx.dispatch({
        kernel: kernel('ROUTE'),
        bindings: [indices, pos, rowSlot, tileExpert, segs],
        params: moeRouteParams.pack({ nSlots: N * k, E, TM: tile, capRows: rows, capTiles: tiles }),
        workgroups: [1],
      });
    },
  });
  return { N, k, E, tile, rows, pos, rowSlot, tileExpert, segs };
}

/** Rows in expert order from tokens: out[r] = c·src[token of r] (0 on padding); c = w[slot] or 1. */
function gatherRows(src: Tensor, plan: MoePlan, w: Tensor | null): Tensor {
  const d = src.shape[1];
  const inputs = [src, plan.rowSlot, ...(w ? [w] : [])];
  const [out] = makeNode('moe_gather', inputs, [{ shape: [plan.rows, d] }], {
    encode(ctx) {
      ctx.dispatch({
        kernel: kernel('GATHER', { WEIGHTED: !!w }),
        bindings: [src, plan.rowSlot, out, ...(w ? [w] : [])],
        params: moeGatherParams.pack({ rows: plan.rows, d, K: plan.k }),
        workgroups: grid1d(plan.rows * d),
      });
    },
    backward([g]) {
      const dSrc = src.requiresGrad ? combineRows(g!, plan, w) : null;
      const dW = w?.requiresGrad ? slotDot(g!, src, plan) : null;
      return [dSrc, null, ...(w ? [dW] : [])];
    },
  });
  return out;
}

/** Tokens from rows in expert order: out[t] = Σ_j c_j·src[row of slot (t,j)], j in order. */
function combineRows(src: Tensor, plan: MoePlan, w: Tensor | null): Tensor {
  const d = src.shape[1];
  const inputs = [src, plan.pos, ...(w ? [w] : [])];
  const [out] = makeNode('moe_combine', inputs, [{ shape: [plan.N, d] }], {
    encode(ctx) {
      ctx.dispatch({
        kernel: kernel('COMBINE', { WEIGHTED: !!w }),
        bindings: [src, plan.pos, out, ...(w ? [w] : [])],
        params: moeCombineParams.pack({ N: plan.N, d, K: plan.k }),
        workgroups: grid1d(plan.N * d),
      });
    },
    backward([g]) {
      const dSrc = src.requiresGrad ? gatherRows(g!, plan, w) : null;
      const dW = w?.requiresGrad ? slotDot(src, g!, plan) : null;
      return [dSrc, null, ...(w ? [dW] : [])];
    },
  });
  return out;
}

/** [N,k]: rowsT[row of slot] · tokensT[token of slot] (gradient of a slot weight). */
function slotDot(rowsT: Tensor, tokensT: Tensor, plan: MoePlan): Tensor {
  const d = rowsT.shape[1];
  const [out] = makeNode('moe_slot_dot', [tokensT, rowsT, plan.pos], [{ shape: [plan.N, plan.k] }], {
    encode(ctx) {
      ctx.dispatch({
        kernel: kernel('SLOT_DOT'),
        bindings: [tokensT, rowsT, plan.pos, out],
        params: moeSlotDotParams.pack({ nSlots: plan.N * plan.k, d, K: plan.k }),
        workgroups: grid1d(plan.N * plan.k, 64),
      });
    },
  });
  return out;
}

/**
 * Grouped matmul over expert-ordered rows: out[r] = a[r]·W[e(r)]ᵀ for W [E, n, K]
 * (transB, Linear layout), or a[r]·W[e(r)] for W [E, K, n]. Its layout comes from the catalogue
 * (moeGmmFamily: a tuner trial, the `moe` override, a tuned choice, else the hand pick).
 * Exported for the tuner's trial and the candidate tests.
 */
export function groupedMatmul(a: Tensor, W: Tensor, plan: MoePlan, transB: boolean): Tensor {
  const [rows, K] = a.shape;
  const [E, w1, w2] = W.shape;
  const n = transB ? w1 : w2;
  if ((transB ? w2 : w1) !== K || E !== plan.E || rows !== plan.rows)
    throw new Error(`moe grouped matmul: rows ${a} do not fit expert weights ${W}${transB ? 'ᵀ' : ''} (plan: ${plan.rows} rows, ${plan.E} experts)`);
  const geom: MoeGmmGeometry = { M: rows, N: n, K, E, tile: plan.tile, transB };
  const trialCfg = trialConfig('moe');
  const [out] = makeNode('moe_grouped_matmul', [a, W, plan.tileExpert], [{ shape: [rows, n] }], {
    encode(ctx) {
      const cfg = chooseConfig(moeGmmFamily, geom, ctx.profile, trialCfg);
      if (cfg.kind === 'register') {
        // One row tile per workgroup (WG·RM rows = plan.tile), so its expert is uniform.
        const r = { kind: 'register' as const, TM: 0, TN: 0, BK: 0, WG: 8, RM: plan.tile / 8, RN: cfg.RN };
        ctx.dispatch({
          kernel: kernel('GMM_REG', { TRANS_B: transB, WG: r.WG, RM: r.RM, RN: r.RN, REG_BODY: registerBody(r, false, transB, false, false, false) }),
          bindings: [a, W, out, plan.tileExpert],
          params: moeGmmParams.pack({ M: rows, N: n, K }),
          workgroups: [Math.ceil(n / r.RN), rows / plan.tile],
        });
        return;
      }
      // TM = the plan's row tile: workgroup row y is tile y, whose expert is tileExpert[y].
      const t = { TM: plan.tile, TN: cfg.TN, BK: 16, RM: 4, RN: 4 };
      ctx.dispatch({
        kernel: kernel('GMM', { TRANS_B: transB, ...t }),
        bindings: [a, W, out, plan.tileExpert],
        params: moeGmmParams.pack({ M: rows, N: n, K }),
        workgroups: [Math.ceil(n / t.TN), rows / t.TM],
      });
    },
    backward: transB
      ? ([g]) => [
        a.requiresGrad ? groupedMatmul(g!, W, plan, false) : null,
        W.requiresGrad ? groupedWeightGrad(g!, a, plan) : null,
        null,
      ]
      : undefined,   // only the forward (transB) form is differentiated
  });
  return out;
}

/**
 * [E, M, N]: per expert, Σ over its rows r of g[r]ᵀ·a[r] (g [rows, M], a [rows, N]); layout from
 * the catalogue (moeWgradFamily). Exported for the tuner's trial and the candidate tests.
 */
export function groupedWeightGrad(g: Tensor, a: Tensor, plan: MoePlan): Tensor {
  const [rows, M] = g.shape, N = a.shape[1];
  const geom: MoeWgradGeometry = { M, N, rows, E: plan.E, tile: plan.tile };
  const trialCfg = trialConfig('moe_wgrad');
  const [out] = makeNode('moe_grouped_wgrad', [g, a, plan.segs], [{ shape: [plan.E, M, N] }], {
    encode(ctx) {
      const t = chooseConfig(moeWgradFamily, geom, ctx.profile, trialCfg);
      if (t.kind === 'register') {
        // Reduces over the expert's segment (segK rows), not p.K.
        const body = registerBody(t, true, false, false, false, false, { kExtent: 'segK' });
        ctx.dispatch({
          kernel: kernel('GMM_WGRAD_REG', { WG: t.WG, RM: t.RM, RN: t.RN, REG_BODY: body }),
          bindings: [g, a, out, plan.segs],
          params: moeWgradParams.pack({ M, N, rows }),
          workgroups: [Math.ceil(N / t.RN), Math.ceil(M / (t.WG * t.RM)), plan.E],
        });
        return;
      }
      ctx.dispatch({
        kernel: kernel('GMM_WGRAD', { TM: t.TM, TN: t.TN, BK: t.BK, RM: t.RM, RN: t.RN }),
        bindings: [g, a, out, plan.segs],
        params: moeWgradParams.pack({ M, N, rows }),
        workgroups: [Math.ceil(N / t.TN), Math.ceil(M / t.TM), plan.E],
      });
    },
  });
  return out;
}

/** [E, a, b] from E tensors [a, b] (a copy; its backward hands each expert its slice). */
function stack(ts: Tensor[]): Tensor {
  return reshape(concat(ts, 0), [ts.length, ...ts[0].shape]);
}

/**
 * The expert layer for x [N,d] routed by `route` (indices i32 [N,k], weights [N,k]):
 * FFN_e(x) = w2·(act(w1·x) ⊙ w3·x). mode 'sum' adds each token's k expert outputs
 * unweighted (the authors' code; weights get no gradient), 'weighted' scales them by
 * route.weights. `rowTile` (32 or 64) overrides the rows per expert tile. `expertOutput`
 * transforms every (token, expert) output row before they are combined — the authors' experts
 * end in dropout, so each expert's output gets its own mask.
 */
export function moeExperts(
  x: Tensor, route: { indices: Tensor; weights: Tensor }, experts: ExpertWeights[], act: Activation, mode: MoeMode,
  opts: { rowTile?: 32 | 64; expertOutput?: (y: Tensor) => Tensor } = {},
): Tensor {
  if (x.rank !== 2 || (x.dtype !== 'f32' && x.dtype !== 'f16')) throw new Error(`moeExperts: x ${x} must be f32 or f16 [N,d]`);
  const [N, d] = x.shape;
  const { indices, weights } = route;
  if (indices.rank !== 2 || indices.dtype !== 'i32' || indices.shape[0] !== N)
    throw new Error(`moeExperts: indices ${indices} must be i32 [${N},k]`);
  const k = indices.shape[1];
  if (mode === 'weighted' && (weights.rank !== 2 || weights.shape[0] !== N || weights.shape[1] !== k))
    throw new Error(`moeExperts: weights ${weights} must be [${N},${k}]`);
  if (mode !== 'sum' && mode !== 'weighted') throw new Error(`moeExperts: mode "${mode}" must be "sum" or "weighted"`);
  const E = experts.length;
  if (E === 0) throw new Error('moeExperts: no experts');
  const F = experts[0].w1.shape[0];
  experts.forEach((ex, e) => {
    const ok = ex.w1.rank === 2 && ex.w1.shape[0] === F && ex.w1.shape[1] === d &&
      ex.w3.rank === 2 && ex.w3.shape[0] === F && ex.w3.shape[1] === d &&
      ex.w2.rank === 2 && ex.w2.shape[0] === d && ex.w2.shape[1] === F;
    if (!ok) throw new Error(`moeExperts: expert ${e} has w1 ${ex.w1}, w3 ${ex.w3}, w2 ${ex.w2}; expected [${F},${d}], [${F},${d}], [${d},${F}]`);
  });
  // Bigger tiles once experts average enough rows to fill them.
  const tile = opts.rowTile ?? ((N * k) / E >= 256 ? 64 : 32);
  const plan = moePlan(indices, E, tile);
  const { W1, W3, W2 } = stackExpertWeights(experts);
  const xr = gatherRows(x, plan, null);
  const h = mul(activation(act, groupedMatmul(xr, W1, plan, true)), groupedMatmul(xr, W3, plan, true));
  let y = groupedMatmul(h, W2, plan, true);
  if (opts.expertOutput) {
    y = opts.expertOutput(y);
    if (y.shape.join() !== [plan.rows, d].join()) throw new Error(`moeExperts: expertOutput must keep the shape [${plan.rows},${d}], got ${y}`);
  }
  return combineRows(y, plan, mode === 'weighted' ? weights : null);
}

/** The experts' weights stacked once as [E,F,d], [E,F,d], [E,d,F] (decoding reuses them every step). */
export function stackExpertWeights(experts: ExpertWeights[]): { W1: Tensor; W3: Tensor; W2: Tensor } {
  return { W1: stack(experts.map((e) => e.w1)), W3: stack(experts.map((e) => e.w3)), W2: stack(experts.map((e) => e.w2)) };
}

/** A tuner trial's k = 1 route of rows − E·(tile−1) tokens over the experts in turn: its plan has exactly `rows` rows. */
function trialRoute(family: string, rows: number, E: number, tile: number): { idx: Tensor; tokens: number } {
  const tokens = rows - E * (tile - 1);
  if (tokens < 1 || rows % tile) throw new Error(`${family} trial: ${rows} rows do not fit ${E} experts with ${tile}-row tiles`);
  return { idx: fromData(Int32Array.from({ length: tokens }, (_, t) => t % E), [tokens, 1], 'i32').keep(), tokens };
}

registerTunable<MoeGmmGeometry>({
  family: moeGmmFamily,
  trial(g) {
    const { idx } = trialRoute('moe', g.M, g.E, g.tile);
    const a = fromData(trialData(g.M * g.K, 1), [g.M, g.K]).keep();
    const W = fromData(trialData(g.E * g.N * g.K, 2), g.transB ? [g.E, g.N, g.K] : [g.E, g.K, g.N]).keep();
    const L = g.K;
    return {
      op: 'moe_grouped_matmul',
      build: () => groupedMatmul(a, W, moePlan(idx, g.E, g.tile), g.transB),
      // Two f32 dot products of length K over terms in [-1, 1], any order: within 2·γ_K·K.
      tolerance: 2 * ((L * 2 ** -24) / (1 - L * 2 ** -24)) * L,
      flops: 2 * g.M * g.N * g.K,
      dispose: () => dispose(idx, a, W),
    };
  },
});

registerTunable<MoeWgradGeometry>({
  family: moeWgradFamily,
  trial(geo) {
    const { idx, tokens } = trialRoute('moe_wgrad', geo.rows, geo.E, geo.tile);
    const g = fromData(trialData(geo.rows * geo.M, 1), [geo.rows, geo.M]).keep();
    const a = fromData(trialData(geo.rows * geo.N, 2), [geo.rows, geo.N]).keep();
    // Each expert sums at most ⌈tokens / E⌉ rows.
    const L = Math.ceil(tokens / geo.E);
    return {
      op: 'moe_grouped_wgrad',
      build: () => groupedWeightGrad(g, a, moePlan(idx, geo.E, geo.tile)),
      // Two f32 sums of L products in [-1, 1], any order: within 2·γ_L·L.
      tolerance: 2 * ((L * 2 ** -24) / (1 - L * 2 ** -24)) * L,
      flops: 2 * tokens * geo.M * geo.N,
      dispose: () => dispose(idx, g, a),
    };
  },
});
