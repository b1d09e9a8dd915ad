// Pooling over x [N,C,H,W] (PyTorch semantics): max pooling (padding is −inf, ceil_mode off,
// gradient to the first maximum of each window) and adaptive average pooling (overlapping
// bins [⌊i·H/out⌋, ⌈(i+1)·H/out⌉)). Backward kernels gather per input element (deterministic).
import { makeNode, type Tensor } from '../tensor.ts';
import { assertFloat, grid1d } from './util.ts';
import { poolParams } from '../kernels/pool.ts';

export interface MaxPoolOptions {
  kernel?: number;
  stride?: number;
  padding?: number;
}

type Flag = 'MAX_FWD' | 'MAX_BWD' | 'AVG_FWD' | 'AVG_BWD';
function kernel(flag: Flag) {
  return { family: 'pool', defs: { MAX_FWD: flag === 'MAX_FWD', MAX_BWD: flag === 'MAX_BWD', AVG_FWD: flag === 'AVG_FWD', AVG_BWD: flag === 'AVG_BWD' }, gen: { PARAMS: poolParams.wgsl } };
}

function check4d(x: Tensor, op: string): [number, number, number, number] {
  assertFloat(x, op, 'x');
  if (x.rank !== 4) throw new Error(`${op}: input ${x} must be [N,C,H,W]`);
  return x.shape as [number, number, number, number];
}

/** nn.MaxPool2d(kernel, stride, padding); defaults 3, 2, 1 (the ResNet stem). */
export function maxPool2d(x: Tensor, opts: MaxPoolOptions = {}): Tensor {
  const k = opts.kernel ?? 3, s = opts.stride ?? 2, pad = opts.padding ?? 1;
  const [N, C, H, W] = check4d(x, 'maxPool2d');
  if (![k, s, pad].every(Number.isInteger) || k < 1 || s < 1 || pad < 0 || pad > k / 2)
    throw new Error(`maxPool2d: bad kernel ${k} / stride ${s} / padding ${pad} (padding must be at most half the kernel) for ${x}`);
  const OH = Math.floor((H + 2 * pad - k) / s) + 1, OW = Math.floor((W + 2 * pad - k) / s) + 1;
  if (OH < 1 || OW < 1) throw new Error(`maxPool2d: input ${x} is smaller than the ${k}×${k} window`);
  const NC = N * C;
  const params = (total: number) => poolParams.pack({ NC, H, W, OH, OW, K: k, S: s, PAD: pad, total });
  const [y, arg] = makeNode('maxpool2d', [x], [{ shape: [N, C, OH, OW] }, { shape: [N, C, OH, OW], dtype: 'i32' }], {
    encode(ctx) {
      const n = NC * OH * OW;
      ctx.dispatch({ kernel: kernel('MAX_FWD'), bindings: [x, y, arg], params: params(n), workgroups: grid1d(n) });
    },
    backward([dy]) {
      const [dx] = makeNode('maxpool2d_grad', [dy!, arg], [{ shape: x.shape }], {
        encode(ctx) {
          const n = NC * H * W;
          ctx.dispatch({ kernel: kernel('MAX_BWD'), bindings: [dy!, arg, dx], params: params(n), workgroups: grid1d(n) });
        },
      });
      return [dx];
    },
  });
  return y;
}

/** nn.AdaptiveAvgPool2d((outH, outW)). */
export function adaptiveAvgPool2d(x: Tensor, outH: number, outW: number): Tensor {
  const [N, C, H, W] = check4d(x, 'adaptiveAvgPool2d');
  if (!Number.isInteger(outH) || !Number.isInteger(outW) || outH < 1 || outW < 1)
    throw new Error(`adaptiveAvgPool2d: bad output size ${outH}×${outW} for ${x}`);
  const NC = N * C;
  const params = (total: number) => poolParams.pack({ NC, H, W, OH: outH, OW: outW, total }, true); // K, S, PAD: max pooling only
  const [y] = makeNode('adaptive_avgpool2d', [x], [{ shape: [N, C, outH, outW] }], {
    encode(ctx) {
      const n = NC * outH * outW;
      ctx.dispatch({ kernel: kernel('AVG_FWD'), bindings: [x, y], params: params(n), workgroups: grid1d(n) });
    },
    backward([dy]) {
      const [dx] = makeNode('adaptive_avgpool2d_grad', [dy!], [{ shape: x.shape }], {
        encode(ctx) {
          const n = NC * H * W;
          ctx.dispatch({ kernel: kernel('AVG_BWD'), bindings: [dy!, dx], params: params(n), workgroups: grid1d(n) });
        },
      });
      return [dx];
    },
  });
  return y;
}
