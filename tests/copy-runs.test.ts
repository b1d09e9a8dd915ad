// Strided copies after axis merging (mergeCopyAxes), on both layouts of the tunable `copy`
// family (forced through the override map): per element (copy.wgsl) and per innermost run
// (copyruns.wgsl). Copies are exact: results must equal a plain CPU gather.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setKernelOverrides } from '../src/graph/kernels/overrides.ts';
import { fromData, init, read, realize } from '../src/graph/runtime.ts';
import { concat, mergeCopyAxes, permute, slice, stridedCopy } from '../src/graph/ops/shape.ts';
import { makeNode } from '../src/graph/tensor.ts';
import { rng } from './util.ts';

beforeAll(async () => {
  await init();
});

const stridesOf = (s: number[]) => s.map((_, i) => s.slice(i + 1).reduce((a, b) => a * b, 1));

/** dst[Σ c·ds + dOff] (+)= src[Σ c·ss + sOff] over the box, on the CPU. */
function copyRef(src: ArrayLike<number>, dst: Float64Array, dims: number[], ss: number[], ds: number[], sOff: number, dOff: number, acc: boolean) {
  const n = dims.reduce((a, b) => a * b, 1);
  for (let i = 0; i < n; i++) {
    let rem = i, si = sOff, di = dOff;
    for (let d = dims.length - 1; d >= 0; d--) {
      const c = rem % dims[d];
      rem = Math.floor(rem / dims[d]);
      si += c * ss[d];
      di += c * ds[d];
    }
    dst[di] = acc ? dst[di] + src[si] : src[si];
  }
}

for (const layout of ['elements', 'runs'] as const) describe(`strided copies (${layout})`, () => {
  const R = rng(`copy-runs ${layout}`);
  beforeAll(() => setKernelOverrides({ copy: layout }));
  afterAll(() => setKernelOverrides({ copy: undefined }));

  it('mergeCopyAxes merges only axes contiguous in both operands and drops size-1 axes', () => {
    expect(mergeCopyAxes([2, 3, 4], [12, 4, 1], [12, 4, 1])).toEqual({ dims: [24], ss: [1], ds: [1] });
    expect(mergeCopyAxes([2, 1, 3, 4], [12, 99, 1, 3], [12, 12, 4, 1])).toEqual({ dims: [2, 3, 4], ss: [12, 1, 3], ds: [12, 4, 1] });
    expect(mergeCopyAxes([5, 6, 7], [0, 0, 1], [42, 7, 1])).toEqual({ dims: [30, 7], ss: [0, 1], ds: [7, 1] });
    expect(mergeCopyAxes([1, 1], [5, 1], [5, 1])).toEqual({ dims: [1], ss: [0], ds: [0] });
  });

  it('permutes (head split/merge, NCHW↔NHWC) with odd sizes', async () => {
    for (const [shape, perm] of [[[3, 37, 4, 5], [0, 2, 1, 3]], [[2, 5, 9, 11], [0, 2, 3, 1]], [[7, 13, 3], [2, 0, 1]], [[R.int(2, 5), R.int(60, 90), R.int(2, 9)], [1, 0, 2]]] as [number[], number[]][]) {
      const n = shape.reduce((a, b) => a * b, 1);
      const X = R.randn(n);
      const y = permute(fromData(X, shape), perm);
      await realize([y]);
      const out = perm.map((p) => shape[p]);
      const xs = stridesOf(shape);
      const ref = new Float64Array(n);
      copyRef(Float32Array.from(X), ref, out, perm.map((p) => xs[p]), stridesOf(out), 0, 0, false);
      expect(Array.from(await read(y))).toEqual(Array.from(ref));
    }
  });

  it('slices and concatenates along inner and outer axes', async () => {
    const shape = [R.int(3, 6), R.int(70, 99), R.int(3, 13)];
    const n = shape.reduce((a, b) => a * b, 1);
    const X = Float32Array.from(R.randn(n));
    const x = fromData(X, shape);
    for (const axis of [0, 1, 2]) {
      const start = R.int(0, shape[axis] - 2), len = R.int(1, shape[axis] - start);
      const s = slice(x, axis, start, len);
      const c = concat([s, x], axis);
      await realize([s, c]);
      const xs = stridesOf(shape), sShape = shape.map((d, i) => (i === axis ? len : d));
      const sRef = new Float64Array(sShape.reduce((a, b) => a * b, 1));
      copyRef(X, sRef, sShape, xs, stridesOf(sShape), start * xs[axis], 0, false);
      expect(Array.from(await read(s))).toEqual(Array.from(sRef));
      const cShape = shape.map((d, i) => (i === axis ? d + len : d)), cs = stridesOf(cShape);
      const cRef = new Float64Array(cShape.reduce((a, b) => a * b, 1));
      copyRef(Float32Array.from(sRef), cRef, sShape, stridesOf(sShape), cs, 0, 0, false);
      copyRef(X, cRef, shape, xs, cs, 0, len * cs[axis], false);
      expect(Array.from(await read(c))).toEqual(Array.from(cRef));
    }
  });

  it('accumulating copy (dst += src) with offsets', async () => {
    const dims = [R.int(65, 90), 3, 5], n = dims.reduce((a, b) => a * b, 1);
    const S = Float32Array.from(R.randn(n + 7)), D = Float32Array.from(R.randn(2 * n + 11));
    const src = fromData(S, [n + 7]), base = fromData(D, [D.length]);
    const ss = [1, dims[0], 3 * dims[0]], ds = [15, 5, 1];   // a transposing gather into dst
    const [y] = makeNode('test_accumulate', [src, base], [{ shape: [D.length] }], {
      encode(ctx) {
        ctx.copy(base, y);
        stridedCopy(ctx, src, y, dims, ss, ds, 7, 11, true);
      },
    });
    await realize([y]);
    const ref = Float64Array.from(D);
    copyRef(S, ref, dims, ss, ds, 7, 11, true);
    const got = await read(y);
    // f32 addition on the GPU vs float64 here: the same single rounding of an f32 sum.
    expect(Array.from(got)).toEqual(Array.from(Float32Array.from(ref)));
  });
});
