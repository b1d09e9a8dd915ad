// Reductions along one axis: sum, mean, max (values; the gradient goes to the first maximum).
// The tensor is viewed as [outer, n, inner] and reduced over n (shaders/reduce.wgsl).
import { makeNode, type Tensor } from '../tensor.ts';
import { assertFloat, grid1d } from './util.ts';
import { reduceParams } from '../kernels/reduce.ts';
import { reshape } from './shape.ts';

const KINDS = ['SUM', 'MAX', 'BCAST', 'MAX_GRAD'] as const;
type Kind = (typeof KINDS)[number];

function kernel(kind: Kind, cols = 1) {
  const defs: Record<string, boolean | number> = { COLS: cols };
  for (const k of KINDS) defs[k] = k === kind;
  return { family: 'reduce', defs, gen: { PARAMS: reduceParams.wgsl } };
}

/** Columns per workgroup for a reduction with `inner` contiguous columns (powers of 2 ≤ 256). */
function colsFor(inner: number): number {
  if (inner === 1) return 1;
  if (inner < 16) return 4;
  if (inner < 64) return 16;
  return 64;
}

interface AxisView {
  axis: number;
  outer: number;
  n: number;
  inner: number;
  outShape: number[];
  /** Output shape with the reduced axis kept as 1. */
  keptShape: number[];
}

function axisView(x: Tensor, axis: number, keepdim: boolean, op: string): AxisView {
  if (!Number.isInteger(axis) || axis < -x.rank || axis >= x.rank) throw new Error(`${op}: axis ${axis} out of range for ${x}`);
  if (axis < 0) axis += x.rank;
  const outer = x.shape.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = x.shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const keptShape = x.shape.map((s, i) => (i === axis ? 1 : s));
  const outShape = keepdim ? keptShape : x.shape.filter((_, i) => i !== axis);
  return { axis, outer, n: x.shape[axis], inner, outShape, keptShape };
}

function params(v: AxisView, tiles: number, scale: number, total: number) {
  return reduceParams.pack({ outer: v.outer, n: v.n, inner: v.inner, tiles, scale, total });
}

/** scale · Σ over the axis, output shape `v.outShape`; backward broadcasts scale·dy. */
function scaledSum(x: Tensor, v: AxisView, scale: number, op: string): Tensor {
  assertFloat(x, op);
  const cols = colsFor(v.inner);
  const tiles = Math.ceil(v.inner / cols);
  const [y] = makeNode(op, [x], [{ shape: v.outShape }], {
    encode(ctx) {
      ctx.dispatch({ kernel: kernel('SUM', cols), bindings: [x, y], params: params(v, tiles, scale, x.size), workgroups: grid1d(v.outer * tiles, 1) });
    },
    backward([dy]) {
      return [broadcastAlong(dy!, x.shape, v, scale)];
    },
  });
  return y;
}

/** dx[o, j, i] = scale · dy[o, i] (the backward of a scaled sum). */
function broadcastAlong(dy: Tensor, shape: number[], v: AxisView, scale: number): Tensor {
  const [dx] = makeNode('reduce_broadcast', [dy], [{ shape }], {
    encode(ctx) {
      const total = dx.size;
      ctx.dispatch({ kernel: kernel('BCAST'), bindings: [dy, dx], params: params(v, 1, scale, total), workgroups: grid1d(total) });
    },
    backward([ddx]) {
      return [reshape(scaledSum(ddx!, { ...v, outShape: v.keptShape }, scale, 'sum'), dy.shape)];
    },
  });
  return dx;
}

/** Σ over `axis` (negative counts from the end). */
export function sum(x: Tensor, axis: number, keepdim = false): Tensor {
  return scaledSum(x, axisView(x, axis, keepdim, 'sum'), 1, 'sum');
}

/** Mean over `axis` (negative counts from the end). */
export function mean(x: Tensor, axis: number, keepdim = false): Tensor {
  const v = axisView(x, axis, keepdim, 'mean');
  if (v.n === 0) throw new Error(`mean: axis ${axis} of ${x} is empty`);
  return scaledSum(x, v, 1 / v.n, 'mean');
}

/**
 * Max values over `axis`. Ties: the first maximal element gets the whole gradient (like
 * torch.max(dim)); NaN counts as the maximum (propagates).
 */
export function max(x: Tensor, axis: number, keepdim = false): Tensor {
  return maxAndIndex(x, axis, keepdim, 'max').values;
}

/**
 * Index (i32) of the maximum over `axis`: the first maximal element, NaN counting as the
 * maximum (torch.argmax). No gradient.
 */
export function argmax(x: Tensor, axis: number, keepdim = false): Tensor {
  return maxAndIndex(x, axis, keepdim, 'argmax').indices;
}

function maxAndIndex(x: Tensor, axis: number, keepdim: boolean, op: string): { values: Tensor; indices: Tensor } {
  assertFloat(x, op);
  const v = axisView(x, axis, keepdim, op);
  if (v.n === 0) throw new Error(`${op}: axis ${axis} of ${x} is empty`);
  const cols = colsFor(v.inner);
  const tiles = Math.ceil(v.inner / cols);
  const [y, idx] = makeNode('max', [x], [{ shape: v.outShape }, { shape: v.outShape, dtype: 'i32' }], {
    encode(ctx) {
      ctx.dispatch({ kernel: kernel('MAX', cols), bindings: [x, y, idx], params: params(v, tiles, 1, x.size), workgroups: grid1d(v.outer * tiles, 1) });
    },
    backward([dy]) {
      if (!dy) return [null];
      const [dx] = makeNode('max_grad', [idx, dy], [{ shape: x.shape }], {
        encode(ctx) {
          const total = x.size;
          ctx.dispatch({ kernel: kernel('MAX_GRAD'), bindings: [idx, dy, dx], params: params(v, 1, 1, total), workgroups: grid1d(total) });
        },
      });
      return [dx];
    },
  });
  return { values: y, indices: idx };
}
