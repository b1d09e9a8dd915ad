// Softmax and log-softmax over the last axis (shaders/softmax.wgsl): one workgroup per row, its
// width (and subgroup use) the tunable `softmax` family's choice.
import { makeNode, sameShape, type Tensor } from '../tensor.ts';
import { assertFloat, broadcastShapes, broadcastStrides, grid1d } from './util.ts';
import { softmaxFamily, type SoftmaxConfig, type SoftmaxGeometry, softmaxParams, softmaxTrialTolerance } from '../kernels/softmax.ts';
import { chooseConfig, trialConfig } from '../kernels/catalogue.ts';
import type { DeviceProfile } from '../../gpu/profile.ts';
import { grad, param } from '../autograd.ts';
import { dispose, fromData } from '../runtime.ts';
import { registerTunable } from '../tuner.ts';
import { trialData } from './matmul.ts';

const KINDS = ['SOFTMAX', 'LOG_SOFTMAX', 'SOFTMAX_GRAD', 'LOG_SOFTMAX_GRAD'] as const;
type Kind = (typeof KINDS)[number];

function kernel(kind: Kind, cfg: SoftmaxConfig, mask?: Tensor) {
  const defs: Record<string, boolean | number> = { WG: cfg.WG, SUBGROUPS: !!cfg.sg, HAS_MASK: !!mask, MASK_I32: mask?.dtype === 'i32' };
  for (const k of KINDS) defs[k] = k === kind;
  return { family: 'softmax', defs, gen: { PARAMS: softmaxParams.wgsl } };
}

interface RowView {
  rows: number;
  K: number;
  lead: number[];
  maskStrides: number[];
  maskLast: number;
}

function rowView(x: Tensor, mask: Tensor | undefined, op: string): RowView {
  if (x.rank < 1) throw new Error(`${op}: ${x} must have at least one axis`);
  if (x.rank > 9) throw new Error(`${op}: ${x} has more than 9 axes`);
  const K = x.shape[x.rank - 1];
  const lead = x.shape.slice(0, -1);
  const rows = lead.reduce((a, b) => a * b, 1);
  let maskStrides: number[] = [], maskLast = 0;
  if (mask) {
    if (mask.dtype !== 'f32' && mask.dtype !== 'i32') throw new Error(`${op}: mask ${mask} must be f32 or i32`);
    if (mask.rank > x.rank || !sameShape(broadcastShapes(mask.shape, x.shape, `${op} mask`), x.shape))
      throw new Error(`${op}: mask ${mask} does not broadcast to ${x}`);
    const st = broadcastStrides(mask.shape, x.shape);
    maskStrides = st.slice(0, -1);
    maskLast = st[st.length - 1];
  }
  return { rows, K, lead, maskStrides, maskLast };
}

/** The configuration of `x`'s kernels (a trial captured when the op was built, else the family's choice). */
function configFor(x: Tensor, v: RowView, mask: Tensor | undefined, trialCfg: unknown) {
  const g: SoftmaxGeometry = { rows: v.rows, K: v.K, dtype: x.dtype === 'f16' ? 'f16' : 'f32', mask: !!mask };
  return (profile: DeviceProfile) => chooseConfig(softmaxFamily, g, profile, trialCfg);
}

function params(v: RowView) {
  return softmaxParams.pack({ rows: v.rows, K: v.K, lrank: v.lead.length, mlast: v.maskLast, dims: v.lead, ms: v.maskStrides });
}

/**
 * Softmax over the last axis. Where `mask` (f32 or i32, broadcastable to x) is 0 the logit is
 * replaced by -1e9 first (PyTorch masked_fill(mask == 0, -1e9)): a fully masked row gives a
 * uniform row. The mask gets no gradient; masked logits get gradient 0.
 */
export function softmax(x: Tensor, mask?: Tensor): Tensor {
  assertFloat(x, 'softmax');
  const v = rowView(x, mask, 'softmax');
  const inputs = mask ? [x, mask] : [x];
  const cfg = configFor(x, v, mask, trialConfig('softmax'));
  const [y] = makeNode('softmax', inputs, [{ shape: x.shape }], {
    encode(ctx) {
      ctx.dispatch({ kernel: kernel('SOFTMAX', cfg(ctx.profile), mask), bindings: mask ? [x, y, mask] : [x, y], params: params(v), workgroups: grid1d(v.rows, 1) });
    },
    backward([dy]) {
      const gin = [y, dy!, ...(mask ? [mask] : [])];
      const [dx] = makeNode('softmax_grad', gin, [{ shape: x.shape }], {
        encode(ctx) {
          ctx.dispatch({ kernel: kernel('SOFTMAX_GRAD', cfg(ctx.profile), mask), bindings: [...gin, dx], params: params(v), workgroups: grid1d(v.rows, 1) });
        },
      });
      return mask ? [dx, null] : [dx];
    },
  });
  return y;
}

/** log(softmax(x)) over the last axis, computed as x − max − log Σ exp(x − max). */
export function logSoftmax(x: Tensor): Tensor {
  assertFloat(x, 'logSoftmax');
  const v = rowView(x, undefined, 'logSoftmax');
  const cfg = configFor(x, v, undefined, trialConfig('softmax'));
  const [y] = makeNode('log_softmax', [x], [{ shape: x.shape }], {
    encode(ctx) {
      ctx.dispatch({ kernel: kernel('LOG_SOFTMAX', cfg(ctx.profile)), bindings: [x, y], params: params(v), workgroups: grid1d(v.rows, 1) });
    },
    backward([dy]) {
      const [dx] = makeNode('log_softmax_grad', [y, dy!], [{ shape: x.shape }], {
        encode(ctx) {
          ctx.dispatch({ kernel: kernel('LOG_SOFTMAX_GRAD', cfg(ctx.profile)), bindings: [y, dy!, dx], params: params(v), workgroups: grid1d(v.rows, 1) });
        },
      });
      return [dx];
    },
  });
  return y;
}

registerTunable<SoftmaxGeometry>({
  family: softmaxFamily,
  trial(g) {
    // Forward and backward (attention probabilities in training): dx is compared, both timed.
    const x = param(fromData(trialData(g.rows * g.K, 1), [g.rows, g.K], g.dtype));
    const dy = fromData(trialData(g.rows * g.K, 2), [g.rows, g.K], g.dtype).keep();
    // A mask of x's shape with about one zero in eight (never a whole row: K ≥ 2 keeps one).
    const mask = g.mask ? fromData(Float32Array.from(trialData(g.rows * g.K, 3), (v, i) => (v < -0.75 && i % g.K !== 0 ? 0 : 1)), [g.rows, g.K]).keep() : undefined;
    return {
      op: ['softmax', 'softmax_grad'],
      build: () => grad(softmax(x, mask), [x], dy)[0]!,
      tolerance: softmaxTrialTolerance(g),
      flops: 8 * g.rows * g.K,
      dispose: () => dispose(x, dy, ...(mask ? [mask] : [])),
    };
  },
});
