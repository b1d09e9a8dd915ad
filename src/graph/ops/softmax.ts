// Softmax and log-softmax over the last axis (shaders/softmax.wgsl): one workgroup per row.
import { makeNode, sameShape, type Tensor } from '../tensor.ts';
import { assertFloat, broadcastShapes, broadcastStrides, grid1d } from './util.ts';
import { softmaxParams } from '../kernels/softmax.ts';

const KINDS = ['SOFTMAX', 'LOG_SOFTMAX', 'SOFTMAX_GRAD', 'LOG_SOFTMAX_GRAD'] as const;
type Kind = (typeof KINDS)[number];

/** Workgroup size for rows of K: about 4 elements per thread, 32 to 256 threads. */
function wgFor(K: number): number {
  return K <= 128 ? 32 : K <= 256 ? 64 : K <= 512 ? 128 : 256;
}

function kernel(kind: Kind, K: number, mask?: Tensor) {
  const defs: Record<string, boolean | number> = { WG: wgFor(K), HAS_MASK: !!mask, MASK_I32: mask?.dtype === 'i32' };
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
  const [y] = makeNode('softmax', inputs, [{ shape: x.shape }], {
    encode(ctx) {
      ctx.dispatch({ kernel: kernel('SOFTMAX', v.K, mask), bindings: mask ? [x, y, mask] : [x, y], params: params(v), workgroups: grid1d(v.rows, 1) });
    },
    backward([dy]) {
      const gin = [y, dy!, ...(mask ? [mask] : [])];
      const [dx] = makeNode('softmax_grad', gin, [{ shape: x.shape }], {
        encode(ctx) {
          ctx.dispatch({ kernel: kernel('SOFTMAX_GRAD', v.K, mask), bindings: [...gin, dx], params: params(v), workgroups: grid1d(v.rows, 1) });
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
  const [y] = makeNode('log_softmax', [x], [{ shape: x.shape }], {
    encode(ctx) {
      ctx.dispatch({ kernel: kernel('LOG_SOFTMAX', v.K), bindings: [x, y], params: params(v), workgroups: grid1d(v.rows, 1) });
    },
    backward([dy]) {
      const [dx] = makeNode('log_softmax_grad', [y, dy!], [{ shape: x.shape }], {
        encode(ctx) {
          ctx.dispatch({ kernel: kernel('LOG_SOFTMAX_GRAD', v.K), bindings: [y, dy!, dx], params: params(v), workgroups: grid1d(v.rows, 1) });
        },
      });
      return [dx];
    },
  });
  return y;
}
