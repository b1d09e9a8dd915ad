// Rotary position embedding, interleaved pairs (rotary_embedding_torch; shaders/rotary.wgsl).
import { makeNode, type Tensor } from '../tensor.ts';
import { assertDtype, assertFloat, grid1d } from './util.ts';
import { rotaryParams } from '../kernels/rotary.ts';

/**
 * Rotates features [start, start + 2m) of each row of x [..., n, dh] in pairs (2i, 2i+1)
 * (relative to start) by θ = f32(pos)·freqs[i] (f32 product, like torch), pos = the row's
 * index along axis -2; every other feature passes through. freqs [m] gets no gradient
 * (it is a requires_grad=False buffer in the original). Backward = rotation by −θ.
 * `offset` shifts every position (a single new token at position t during cached decoding).
 */
export function rotary(x: Tensor, freqs: Tensor, start: number, offset = 0): Tensor {
  assertFloat(x, 'rotary', 'x');
  // Angles pos·freq need f32 whatever x's element type (f16 would misplace far positions).
  assertDtype(freqs, 'f32', 'rotary', 'freqs');
  if (x.rank < 2) throw new Error(`rotary: x ${x} must be [..., n, dh]`);
  if (freqs.rank !== 1) throw new Error(`rotary: freqs ${freqs} must be 1-D`);
  const m = freqs.shape[0];
  const [n, dh] = x.shape.slice(-2);
  if (!Number.isInteger(start) || start < 0 || start + 2 * m > dh)
    throw new Error(`rotary: features [${start}, ${start + 2 * m}) do not fit in ${x} (dh ${dh}, freqs ${freqs})`);
  if (!Number.isInteger(offset) || offset < 0) throw new Error(`rotary: bad position offset ${offset}`);
  return rotate(x, freqs, start, m, n, dh, 1, offset);
}

function rotate(x: Tensor, freqs: Tensor, start: number, m: number, n: number, dh: number, sign: 1 | -1, offset: number): Tensor {
  const [y] = makeNode(sign > 0 ? 'rotary' : 'rotary_grad', [x, freqs], [{ shape: x.shape }], {
    encode(ctx) {
      const total = x.size;
      ctx.dispatch({
        kernel: { family: 'rotary', gen: { PARAMS: rotaryParams.wgsl } },
        bindings: [x, freqs, y],
        params: rotaryParams.pack({ total, n, dh, start, m, sign, offset }),
        workgroups: grid1d(total),
      });
    },
    backward([dy]) {
      // The map is a rotation: its transpose rotates by the opposite angle.
      return [rotate(dy!, freqs, start, m, n, dh, sign > 0 ? -1 : 1, offset), null];
    },
  });
  return y;
}
