// f32 ↔ f16 conversion (half-size storage for weights and activations where the adapter has
// shader-f16). The gradient of a cast is the cast back.
import { makeNode, type Tensor } from '../tensor.ts';
import { runtime } from '../runtime.ts';
import { grid1d } from './util.ts';
import { castParams } from '../kernels/cast.ts';

export function hasF16(): boolean {
  return runtime().gpu.hasF16;
}

/** Converts between f32 and f16 (identity when the dtype already matches). */
export function cast(x: Tensor, dtype: 'f32' | 'f16'): Tensor {
  if (x.dtype === dtype) return x;
  if (!(x.dtype === 'f32' || x.dtype === 'f16')) throw new Error(`cast: ${x} is ${x.dtype}; only f32 ↔ f16 casts exist`);
  if (!hasF16()) throw new Error(`cast(${x} → ${dtype}): this adapter has no shader-f16 feature`);
  const [y] = makeNode(`cast_${dtype}`, [x], [{ shape: x.shape, dtype }], {
    encode(ctx) {
      const n = x.size;
      ctx.dispatch({ kernel: { family: 'cast', defs: { TO_F16: dtype === 'f16' }, gen: { PARAMS: castParams.wgsl } }, bindings: [x, y], params: castParams.pack({ n }), workgroups: grid1d(n) });
    },
    backward([dy]) {
      return [cast(dy!, x.dtype as 'f32' | 'f16')];
    },
  });
  return y;
}
