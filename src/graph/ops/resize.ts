// Bilinear resize of x [N,C,H,W] to [N,C,outH,outW]: F.interpolate(mode='bilinear',
// align_corners=False), no antialias. Backward is a deterministic gather per input element.
import { makeNode, type Tensor } from '../tensor.ts';
import { assertFloat, grid1d } from './util.ts';
import { resizeParams } from '../kernels/resize.ts';

export function resizeBilinear(x: Tensor, outH: number, outW: number): Tensor {
  assertFloat(x, 'resizeBilinear', 'x');
  if (x.rank !== 4) throw new Error(`resizeBilinear: input ${x} must be [N,C,H,W]`);
  if (!Number.isInteger(outH) || !Number.isInteger(outW) || outH < 1 || outW < 1)
    throw new Error(`resizeBilinear: bad output size ${outH}×${outW} for ${x}`);
  const [N, C, H, W] = x.shape;
  if (H === outH && W === outW) return x;
  const NC = N * C;
  // PyTorch's scale is in/out computed in f32 (the f32 fields round the same way).
  const params = (total: number) => resizeParams.pack({ NC, H, W, OH: outH, OW: outW, total, scaleY: H / outH, scaleX: W / outW });
  const [y] = makeNode('resize_bilinear', [x], [{ shape: [N, C, outH, outW] }], {
    encode(ctx) {
      const n = NC * outH * outW;
      ctx.dispatch({ kernel: { family: 'resize', defs: { FWD: true, BWD: false }, gen: { PARAMS: resizeParams.wgsl } }, bindings: [x, y], params: params(n), workgroups: grid1d(n) });
    },
    backward([dy]) {
      const [dx] = makeNode('resize_bilinear_grad', [dy!], [{ shape: x.shape }], {
        encode(ctx) {
          const n = NC * H * W;
          ctx.dispatch({ kernel: { family: 'resize', defs: { FWD: false, BWD: true }, gen: { PARAMS: resizeParams.wgsl } }, bindings: [dy!, dx], params: params(n), workgroups: grid1d(n) });
        },
      });
      return [dx];
    },
  });
  return y;
}
