// Cross entropy over rows of logits with an ignored label (shaders/loss.wgsl).
import { makeNode, type Tensor } from '../tensor.ts';
import { assertDtype, assertFloat, grid1d } from './util.ts';
import { lossFamily, type LossGeometry, lossParams, lossTrialTolerance } from '../kernels/loss.ts';
import { chooseConfig, trialConfig } from '../kernels/catalogue.ts';
import type { RowConfig } from '../kernels/rows.ts';
import { dispose, fromData } from '../runtime.ts';
import { registerTunable } from '../tuner.ts';
import { trialData } from './matmul.ts';

const KINDS = ['CE_ROWS', 'CE_MEAN', 'CE_GRAD'] as const;
type Kind = (typeof KINDS)[number];

/** CE_ROWS takes the tunable `loss` configuration; CE_MEAN (one workgroup) and CE_GRAD (per logit) are fixed. */
function kernel(kind: Kind, cfg: RowConfig = { WG: 256 }) {
  const defs: Record<string, boolean | number> = { WG: cfg.WG, SUBGROUPS: !!cfg.sg };
  for (const k of KINDS) defs[k] = k === kind;
  return { family: 'loss', defs, gen: { PARAMS: lossParams.wgsl } };
}

/**
 * Mean over rows with labels[r] != ignoreIndex of −log_softmax(logits[r])[labels[r]]
 * (F.cross_entropy(logits, labels, ignore_index=ignoreIndex)), a scalar [].
 * Differences from PyTorch: when no row counts the loss is 0 with zero gradient (PyTorch
 * gives NaN); a counted label outside [0, V) makes the loss NaN (PyTorch raises).
 */
export function crossEntropy(logits: Tensor, labels: Tensor, ignoreIndex: number): Tensor {
  assertFloat(logits, 'crossEntropy', 'logits');
  assertDtype(labels, 'i32', 'crossEntropy', 'labels');
  if (logits.rank !== 2) throw new Error(`crossEntropy: logits ${logits} must be [N, V]`);
  const [N, V] = logits.shape;
  if (labels.rank !== 1 || labels.shape[0] !== N) throw new Error(`crossEntropy: labels ${labels} must be [${N}] for logits ${logits}`);
  if (!Number.isInteger(ignoreIndex)) throw new Error(`crossEntropy: ignoreIndex ${ignoreIndex} is not an integer`);
  const geom: LossGeometry = { N, V, dtype: logits.dtype === 'f16' ? 'f16' : 'f32' };
  const trialCfg = trialConfig('loss');
  const params = (total: number) => lossParams.pack({ N, V, ignore: ignoreIndex, total });
  // Outputs (f32 whatever the logits' element type): the loss, and per-row log-sum-exp and the counted-row total for the backward.
  const [loss, lse, count] = makeNode('cross_entropy', [logits, labels], [{ shape: [], dtype: 'f32' }, { shape: [N], dtype: 'f32' }, { shape: [], dtype: 'f32' }], {
    encode(ctx) {
      const rowLoss = ctx.scratch(4 * Math.max(1, N));
      ctx.dispatch({ kernel: kernel('CE_ROWS', chooseConfig(lossFamily, geom, ctx.profile, trialCfg)), bindings: [logits, labels, lse, rowLoss], params: params(N), workgroups: grid1d(N, 1) });
      ctx.dispatch({ kernel: kernel('CE_MEAN'), bindings: [rowLoss, labels, loss, count], params: params(N), workgroups: [1] });
    },
    backward([dloss]) {
      if (!dloss) return [null, null];
      const [dx] = makeNode('cross_entropy_grad', [logits, labels, lse, count, dloss!], [{ shape: logits.shape }], {
        encode(ctx) {
          const total = N * V;
          ctx.dispatch({ kernel: kernel('CE_GRAD'), bindings: [logits, labels, lse, count, dloss!, dx], params: params(total), workgroups: grid1d(total) });
        },
      });
      return [dx, null];
    },
  });
  return loss;
}

registerTunable<LossGeometry>({
  family: lossFamily,
  trial(g) {
    const logits = fromData(trialData(g.N * g.V, 1), [g.N, g.V], g.dtype).keep();
    // Every label counted (the tolerance assumes it), spread over the classes.
    const labels = fromData(Int32Array.from({ length: g.N }, (_, r) => (r * 7919) % g.V), [g.N], 'i32').keep();
    return {
      op: 'cross_entropy',
      build: () => crossEntropy(logits, labels, -100),
      tolerance: lossTrialTolerance(g),
      flops: 4 * g.N * g.V,
      dispose: () => dispose(logits, labels),
    };
  },
});
