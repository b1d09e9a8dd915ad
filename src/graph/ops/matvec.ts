// Products for the few rows of a decoding step (shaders/matvec.wgsl): `rowsLinear` and the
// top-k-only mixture of experts `expertsForRows`. With B ≈ 1–12 rows every weight is read
// once per step, so these kernels stream each weight row contiguously across a workgroup's
// lanes instead of tiling for reuse, and the experts no row selects are skipped without
// reading their weights.
import { makeNode, type Tensor } from '../tensor.ts';
import { adapterProfile, assertFloat, grid1d } from './util.ts';
import { chooseConfig, trialConfig } from '../kernels/catalogue.ts';
import { matvecFamily, type MatvecConfig, type MatvecGeometry, matvecBlock, matvecBody, matvecHandConfig, matvecParams } from '../kernels/matvec.ts';
import { dispose, fromData } from '../runtime.ts';
import { registerTunable } from '../tuner.ts';

import { matmul, trialData } from './matmul.ts';
import { activation, type Activation, mul, sumTo } from './elementwise.ts';

type Kind = 'LINEAR' | 'EXPERT_UP' | 'EXPERT_DOWN' | 'COMBINE';

interface Launch {
  kernel: { family: string; defs: Record<string, boolean | number | string>; gen: Record<string, string> };
  workgroups: [number, number, number];
}

function launch(kind: Kind, B: number, N: number, K: number, E: number, extra: { HAS_BIAS?: boolean; WEIGHTED?: boolean } = {}, cfg: MatvecConfig = matvecHandConfig(adapterProfile())): Launch {
  const LANES = cfg.LANES;
  const NW = kind === 'EXPERT_UP' ? 2 : 1;
  const vec = K % 4 === 0;
  const { RB, RN } = matvecBlock(B, NW, cfg.sums);
  const defs: Record<string, boolean | number | string> = {
    LINEAR: kind === 'LINEAR', EXPERT_UP: kind === 'EXPERT_UP', EXPERT_DOWN: kind === 'EXPERT_DOWN', COMBINE: kind === 'COMBINE',
    EXPERT: kind === 'EXPERT_UP' || kind === 'EXPERT_DOWN',
    HAS_BIAS: !!extra.HAS_BIAS, WEIGHTED: !!extra.WEIGHTED, LANES, RB, RN, NW,
    SUBGROUPS: kind !== 'COMBINE' && !!cfg.sg,
    VEC: vec,
    KFULL: (vec ? K / 4 : K) % LANES === 0,
  };
  const gen = { PARAMS: matvecParams.wgsl, BODY: kind === 'COMBINE' ? '' : matvecBody(RB, RN, NW, vec, defs.KFULL as boolean) };
  return { kernel: { family: 'matvec', defs, gen }, workgroups: [Math.ceil(N / RN), Math.ceil(B / RB), E] };
}

/**
 * y = x·Wᵀ + b for the few rows of x [B, K] (W [N, K], PyTorch layout): [B, N]. Same values as
 * `linear` up to f32 summation order; meant for B up to a few tens (decoding steps).
 */
export function rowsLinear(x: Tensor, W: Tensor, bias?: Tensor | null): Tensor {
  assertFloat(x, 'rowsLinear', 'x');
  assertFloat(W, 'rowsLinear', 'W');
  if (x.rank !== 2 || W.rank !== 2 || W.shape[1] !== x.shape[1]) throw new Error(`rowsLinear: x ${x} must be [B,K] and W ${W} [N,K]`);
  const [B, K] = x.shape, N = W.shape[0];
  if (bias && (bias.rank !== 1 || bias.shape[0] !== N)) throw new Error(`rowsLinear: bias ${bias} must be [${N}]`);
  if (bias) assertFloat(bias, 'rowsLinear', 'bias');
  const inputs = bias ? [x, W, bias] : [x, W];
  const trialCfg = trialConfig('matvec');
  const [y] = makeNode('rows_linear', inputs, [{ shape: [B, N] }], {
    encode(ctx) {
      const cfg = chooseConfig(matvecFamily, { B, N, K, bias: !!bias }, ctx.profile, trialCfg);
      const l = launch('LINEAR', B, N, K, 1, { HAS_BIAS: !!bias }, cfg);
      ctx.dispatch({ kernel: l.kernel, bindings: bias ? [x, W, y, bias] : [x, W, y], params: matvecParams.pack({ B, N, K, k: 0 }), workgroups: l.workgroups });
    },
    backward([dy]) {
      const g = dy!;
      const dx = x.requiresGrad ? matmul(g, W) : null;
      const dW = W.requiresGrad ? matmul(g, x, { transA: true }) : null;
      const db = bias?.requiresGrad ? sumTo(g, [N]) : null;
      return bias ? [dx, dW, db] : [dx, dW];
    },
  });
  return y;
}

export interface StackedExperts {
  /** [E, F, d] each (PyTorch layout of every expert's w1 / w3, stacked). */
  W1: Tensor;
  W3: Tensor;
  /** [E, d, F]. */
  W2: Tensor;
}

/**
 * The mixture of experts for the few rows of a decoding step, x [B, d] with each row's top-k
 * `indices` [B, k] (i32) and gate `weights` [B, k]: Σ_j c_rj · W2ₑ(act(W1ₑ x_r) ⊙ W3ₑ x_r),
 * e = indices[r, j], c_rj = 1 (mode 'sum') or weights[r, j] ('weighted'). Only the experts some
 * row selects are computed (their weights are the only ones read). Inference only.
 */
export function expertsForRows(
  x: Tensor, indices: Tensor, weights: Tensor, W: StackedExperts, act: Activation, mode: 'sum' | 'weighted',
): Tensor {
  assertFloat(x, 'expertsForRows', 'x');
  if (x.rank !== 2) throw new Error(`expertsForRows: x ${x} must be [B,d]`);
  const [B, d] = x.shape;
  if (indices.rank !== 2 || indices.shape[0] !== B || indices.dtype !== 'i32') throw new Error(`expertsForRows: indices ${indices} must be i32 [${B},k]`);
  const k = indices.shape[1];
  if (weights.rank !== 2 || weights.shape[0] !== B || weights.shape[1] !== k) throw new Error(`expertsForRows: weights ${weights} must be [${B},${k}]`);
  const [E, F, d1] = W.W1.shape;
  if (W.W1.rank !== 3 || d1 !== d || W.W3.shape.join() !== W.W1.shape.join()) throw new Error(`expertsForRows: W1 ${W.W1} and W3 ${W.W3} must be [E,F,${d}]`);
  if (W.W2.rank !== 3 || W.W2.shape.join() !== [E, d, F].join()) throw new Error(`expertsForRows: W2 ${W.W2} must be [${E},${d},${F}]`);
  const inferenceOnly = () => {
    throw new Error('expertsForRows is inference-only (decoding); training uses moeExperts');
  };
  // Up: H1, H3 [E, B, F], written only for the selected experts (the rest is never read).
  const [h1, h3] = makeNode('experts_up', [x, W.W1, W.W3, indices], [{ shape: [E, B, F] }, { shape: [E, B, F] }], {
    encode(ctx) {
      const l = launch('EXPERT_UP', B, F, d, E);
      ctx.dispatch({ kernel: l.kernel, bindings: [x, W.W1, W.W3, indices, h1, h3], params: matvecParams.pack({ B, N: F, K: d, k }), workgroups: l.workgroups });
    },
    backward: inferenceOnly,
  });
  const h = mul(activation(act, h1), h3);
  const [ye] = makeNode('experts_down', [h, W.W2, indices], [{ shape: [E, B, d] }], {
    encode(ctx) {
      const l = launch('EXPERT_DOWN', B, d, F, E);
      ctx.dispatch({ kernel: l.kernel, bindings: [h, W.W2, indices, ye], params: matvecParams.pack({ B, N: d, K: F, k }), workgroups: l.workgroups });
    },
    backward: inferenceOnly,
  });
  const weighted = mode === 'weighted';
  const [y] = makeNode('experts_combine', weighted ? [ye, indices, weights] : [ye, indices], [{ shape: [B, d] }], {
    encode(ctx) {
      const l = launch('COMBINE', B, d, d, 1, { WEIGHTED: weighted });
      ctx.dispatch({ kernel: l.kernel, bindings: weighted ? [ye, indices, y, weights] : [ye, indices, y], params: matvecParams.pack({ B, N: d, K: d, k }), workgroups: grid1d(B * d, 64) });
    },
    backward: inferenceOnly,
  });
  return y;
}

registerTunable<MatvecGeometry>({
  family: matvecFamily,
  trial(g) {
    const x = fromData(trialData(g.B * g.K, 1), [g.B, g.K]).keep();
    const W = fromData(trialData(g.N * g.K, 2), [g.N, g.K]).keep();
    const bias = g.bias ? fromData(trialData(g.N, 3), [g.N]).keep() : null;
    const L = g.K + 1;
    // Two f32 sums of L terms in [-1, 1], any order: within 2·γ_L·L of each other.
    return { op: 'rows_linear', build: () => rowsLinear(x, W, bias), tolerance: 2 * ((L * 2 ** -24) / (1 - L * 2 ** -24)) * L, flops: 2 * g.B * g.N * g.K, dispose: () => dispose(x, W, bias) };
  },
});
