// Shape ops: reshape (a free view), permute, slice, concat, split — all through one
// strided-copy kernel. Dtype-agnostic for 4-byte types (the kernel moves bits as f32).
import { type EncodeCtx, makeNode, type Tensor } from '../tensor.ts';
import { grid1d, numel, stridesOf } from './util.ts';
import { type CopyConfig, copyFamily, type CopyGeometry, copyParams } from '../kernels/copy.ts';
import { chooseConfig, trialConfig } from '../kernels/catalogue.ts';
import { dispose, fromData } from '../runtime.ts';
import { registerTunable } from '../tuner.ts';
import { fill } from './elementwise.ts';

/** Same data, new shape (one dimension may be -1). */
export function reshape(x: Tensor, shape: number[]): Tensor {
  const neg = shape.indexOf(-1);
  if (neg >= 0) {
    const rest = shape.reduce((a, b, i) => (i === neg ? a : a * b), 1);
    shape = shape.map((s, i) => (i === neg ? x.size / rest : s));
  }
  if (numel(shape) !== x.size || shape.some((s) => !Number.isInteger(s))) throw new Error(`reshape: cannot view ${x} as [${shape}]`);
  if (shape.join() === x.shape.join()) return x;
  const [y] = makeNode('reshape', [x], [{ shape, dtype: x.dtype }], {
    view: true,
    backward([dy]) {
      return [reshape(dy!, x.shape)];
    },
  });
  return y;
}

/**
 * The same copy box with size-1 axes dropped and neighbouring axes merged where both strides
 * continue across them (fewer index divisions per element; at least one axis is kept).
 */
export function mergeCopyAxes(dims: number[], ss: number[], ds: number[]): { dims: number[]; ss: number[]; ds: number[] } {
  const out = { dims: [] as number[], ss: [] as number[], ds: [] as number[] };
  dims.forEach((n, i) => {
    if (n === 1) return;
    const k = out.dims.length - 1;
    if (k >= 0 && out.ss[k] === ss[i] * n && out.ds[k] === ds[i] * n) {
      out.dims[k] *= n;
      out.ss[k] = ss[i];
      out.ds[k] = ds[i];
    } else {
      out.dims.push(n);
      out.ss.push(ss[i]);
      out.ds.push(ds[i]);
    }
  });
  if (!out.dims.length) return { dims: [1], ss: [0], ds: [0] };
  return out;
}


/** Records a strided copy of a `dims` box from src to dst. */
export function stridedCopy(
  ctx: EncodeCtx, src: Tensor | GPUBuffer, dst: Tensor | GPUBuffer, dims: number[],
  srcStrides: number[], dstStrides: number[], srcOff = 0, dstOff = 0, accumulate = false,
): void {
  if (numel(dims) === 0) return;
  const m = mergeCopyAxes(dims, srcStrides, dstStrides);
  const dtype = 'dtype' in src ? src.dtype : 'f32';
  dispatchCopy(ctx, src, dst, m, srcOff, dstOff, accumulate, chooseConfig(copyFamily, { ...m, dtype }, ctx.profile));
}

/** The copy of a merged box with configuration `cfg` (copy per element, or copyruns per innermost run). */
function dispatchCopy(
  ctx: EncodeCtx, src: Tensor | GPUBuffer, dst: Tensor | GPUBuffer, m: { dims: number[]; ss: number[]; ds: number[] },
  srcOff: number, dstOff: number, accumulate: boolean, cfg: CopyConfig,
): void {
  const n = numel(m.dims);
  const perRun = cfg.layout === 'runs' && m.dims.length > 1;
  const runs = n / m.dims[m.dims.length - 1];
  ctx.dispatch({
    kernel: { family: perRun ? 'copyruns' : 'copy', defs: { ACCUMULATE: accumulate }, gen: { PARAMS: copyParams.wgsl } },
    bindings: [src, dst],
    params: copyParams.pack({ n: perRun ? runs : n, rank: m.dims.length, srcOff, dstOff, dims: m.dims, ss: m.ss, ds: m.ds }),
    workgroups: grid1d(perRun ? runs : n),
  });
}

/** Reorders axes: out.shape[i] = x.shape[perm[i]]. */
export function permute(x: Tensor, perm: number[]): Tensor {
  if (perm.length !== x.rank || [...perm].sort().some((v, i) => v !== i)) throw new Error(`permute: bad axes [${perm}] for ${x}`);
  if (perm.every((v, i) => v === i)) return x;
  const shape = perm.map((p) => x.shape[p]);
  // Moving only size-1 axes keeps the element order: a free view (e.g. merging the heads of one query row).
  const moved = perm.filter((p) => x.shape[p] !== 1);
  if (moved.every((p, i) => i === 0 || moved[i - 1] < p)) return reshape(x, shape);
  const xs = stridesOf(x.shape);
  const [y] = makeNode('permute', [x], [{ shape, dtype: x.dtype }], {
    encode(ctx) {
      stridedCopy(ctx, x, y, shape, perm.map((p) => xs[p]), stridesOf(shape));
    },
    backward([dy]) {
      const inv = new Array(perm.length);
      perm.forEach((p, i) => (inv[p] = i));
      return [permute(dy!, inv)];
    },
  });
  return y;
}

/** Swaps two axes. */
export function transpose(x: Tensor, a: number, b: number): Tensor {
  const perm = x.shape.map((_, i) => i);
  perm[a] = b;
  perm[b] = a;
  return permute(x, perm);
}

/** x[..., start:start+len, ...] along `axis`. */
export function slice(x: Tensor, axis: number, start: number, len: number): Tensor {
  if (axis < 0) axis += x.rank;
  if (start < 0 || len < 0 || start + len > x.shape[axis]) throw new Error(`slice: [${start}, ${start + len}) out of range for axis ${axis} of ${x}`);
  const shape = x.shape.slice();
  shape[axis] = len;
  const xs = stridesOf(x.shape);
  const [y] = makeNode('slice', [x], [{ shape, dtype: x.dtype }], {
    encode(ctx) {
      stridedCopy(ctx, x, y, shape, xs, stridesOf(shape), start * xs[axis], 0);
    },
    backward([dy]) {
      // Pad the gradient back into a zero tensor of x's shape.
      return [padInto(dy!, x.shape, axis, start)];
    },
  });
  return y;
}

/** A zero tensor of `shape` with `x` written at offset `start` along `axis`. */
function padInto(x: Tensor, shape: number[], axis: number, start: number): Tensor {
  const [y] = makeNode('pad_into', [x], [{ shape }], {
    encode(ctx) {
      ctx.clear(y);
      const ys = stridesOf(shape);
      stridedCopy(ctx, x, y, x.shape, stridesOf(x.shape), ys, 0, start * ys[axis]);
    },
    backward([dy]) {
      return [slice(dy!, axis, start, x.shape[axis])];
    },
  });
  return y;
}

/** Joins tensors along `axis`. */
export function concat(xs: Tensor[], axis: number): Tensor {
  if (xs.length === 0) throw new Error('concat: no tensors');
  if (axis < 0) axis += xs[0].rank;
  const shape = xs[0].shape.slice();
  shape[axis] = 0;
  for (const t of xs) {
    if (t.rank !== shape.length || t.shape.some((s, i) => i !== axis && s !== xs[0].shape[i]) || t.dtype !== xs[0].dtype)
      throw new Error(`concat: ${t} does not match ${xs[0]} along axis ${axis}`);
    shape[axis] += t.shape[axis];
  }
  const [y] = makeNode('concat', xs, [{ shape, dtype: xs[0].dtype }], {
    encode(ctx) {
      const ys = stridesOf(shape);
      let off = 0;
      for (const t of xs) {
        stridedCopy(ctx, t, y, t.shape, stridesOf(t.shape), ys, 0, off * ys[axis]);
        off += t.shape[axis];
      }
    },
    backward([dy]) {
      let off = 0;
      return xs.map((t) => {
        const g = t.requiresGrad ? slice(dy!, axis, off, t.shape[axis]) : null;
        off += t.shape[axis];
        return g;
      });
    },
  });
  return y;
}

/** Splits along `axis` into pieces of the given sizes. */
export function split(x: Tensor, sizes: number[], axis: number): Tensor[] {
  if (axis < 0) axis += x.rank;
  if (sizes.reduce((a, b) => a + b, 0) !== x.shape[axis]) throw new Error(`split: sizes [${sizes}] do not add up to axis ${axis} of ${x}`);
  let off = 0;
  return sizes.map((s) => {
    const t = slice(x, axis, off, s);
    off += s;
    return t;
  });
}

/** Zeros of a shape (lazy constant). */
export const zeros = (shape: number[]) => fill(shape, 0);

registerTunable<CopyGeometry>({
  family: copyFamily,
  trial(g) {
    // The geometry's reads into a dense box (every output element written, so two
    // configurations' outputs compare): the same index decoding and run loop per layout.
    const srcSize = 1 + g.dims.reduce((a, n, i) => a + (n - 1) * g.ss[i], 0);
    const src = fromData(Float32Array.from({ length: srcSize }, (_, i) => i % 4093), [srcSize], g.dtype === 'f16' ? 'f16' : 'f32').keep();
    const m = { dims: g.dims, ss: g.ss, ds: stridesOf(g.dims) };
    return {
      op: 'strided_copy',
      build: () => {
        const cfg = trialConfig('copy') as CopyConfig;
        const [y] = makeNode('strided_copy', [src], [{ shape: [numel(g.dims)] }], {
          encode(ctx) {
            dispatchCopy(ctx, src, y, m, 0, 0, false, cfg ?? chooseConfig(copyFamily, { ...m, dtype: src.dtype }, ctx.profile));
          },
        });
        return y;
      },
      tolerance: 0,   // a copy is exact
      flops: numel(g.dims),
      dispose: () => dispose(src),
    };
  },
});
