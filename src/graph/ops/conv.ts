// 2-D convolution (PyTorch nn.Conv2d layout: x [N,C,H,W], w [O,C,kh,kw], square kernels,
// zero padding) as implicit GEMMs in shaders/conv.wgsl: the forward, dX (a transposed conv
// written as a gather, so no atomics and no col2im) and dW (X-patchesᵀ·dY) are each one
// tiled GEMM that gathers its patch operand on the fly; the bias gradient is a channel sum.
import { makeNode, type Tensor } from '../tensor.ts';
import { assertDtype, P } from './util.ts';

export interface Conv2dOptions {
  stride?: number;
  padding?: number;
}

interface Geometry {
  N: number; C: number; H: number; W: number;
  O: number; KH: number; KW: number; OH: number; OW: number;
  stride: number; pad: number;
}

/** GEMM tile for an M×N output; small problems use smaller tiles so more workgroups run. */
export function convTiles(M: number, N: number): { TM: number; TN: number; BK: number; RM: number; RN: number } {
  if (M * N <= 64 * 64) return { TM: 32, TN: 32, BK: 16, RM: 4, RN: 4 };
  return { TM: 64, TN: 64, BK: 16, RM: 4, RN: 4 };
}

function defs(g: Geometry, mode: 'FWD' | 'DX' | 'DW' | 'BIAS_GRAD', tiles: ReturnType<typeof convTiles>, hasBias = false) {
  return {
    FWD: mode === 'FWD', DX: mode === 'DX', BIAS_GRAD: mode === 'BIAS_GRAD', HAS_BIAS: hasBias,
    KH: g.KH, KW: g.KW, STRIDE: g.stride, PAD: g.pad, ...tiles,
  };
}

function params(g: Geometry, M: number, NC: number, K: number, batches: number) {
  return P().u(g.N, g.C, g.H, g.W, g.O, g.OH, g.OW, 0, M, NC, K, batches);
}

/** y = conv2d(x, w) + bias, PyTorch semantics (output size ⌊(H + 2p − k)/s⌋ + 1). */
export function conv2d(x: Tensor, w: Tensor, bias: Tensor | null, opts: Conv2dOptions = {}): Tensor {
  const stride = opts.stride ?? 1, pad = opts.padding ?? 0;
  assertDtype(x, 'f32', 'conv2d', 'x');
  assertDtype(w, 'f32', 'conv2d', 'weight');
  if (x.rank !== 4) throw new Error(`conv2d: input ${x} must be [N,C,H,W]`);
  if (w.rank !== 4) throw new Error(`conv2d: weight ${w} must be [O,C,kh,kw]`);
  const [N, C, H, W] = x.shape;
  const [O, Cw, KH, KW] = w.shape;
  if (Cw !== C) throw new Error(`conv2d: weight ${w} expects ${Cw} input channels, input ${x} has ${C}`);
  if (KH !== KW) throw new Error(`conv2d: weight ${w}: only square kernels are supported`);
  if (!Number.isInteger(stride) || stride < 1 || !Number.isInteger(pad) || pad < 0)
    throw new Error(`conv2d: bad stride ${stride} / padding ${pad} for input ${x}`);
  if (bias) {
    assertDtype(bias, 'f32', 'conv2d', 'bias');
    if (bias.rank !== 1 || bias.shape[0] !== O) throw new Error(`conv2d: bias ${bias} must be [${O}] for weight ${w}`);
  }
  const OH = Math.floor((H + 2 * pad - KH) / stride) + 1, OW = Math.floor((W + 2 * pad - KW) / stride) + 1;
  if (OH < 1 || OW < 1) throw new Error(`conv2d: input ${x} is smaller than kernel ${KH}×${KW} with padding ${pad}`);
  const g: Geometry = { N, C, H, W, O, KH, KW, OH, OW, stride, pad };
  const inputs = bias ? [x, w, bias] : [x, w];
  const [y] = makeNode('conv2d', inputs, [{ shape: [N, O, OH, OW] }], {
    encode(ctx) {
      const M = N * OH * OW, K = C * KH * KW, t = convTiles(M, O);
      ctx.dispatch({
        kernel: { family: 'conv', defs: defs(g, 'FWD', t, !!bias) },
        bindings: bias ? [x, w, y, bias] : [x, w, y],
        params: params(g, M, O, K, 1),
        workgroups: [Math.ceil(O / t.TN), Math.ceil(M / t.TM)],
      });
    },
    backward([dy]) {
      const gy = dy!;
      const dx = x.requiresGrad ? conv2dGradInput(gy, w, g) : null;
      const dw = w.requiresGrad ? conv2dGradWeight(gy, x, g) : null;
      const db = bias?.requiresGrad ? conv2dGradBias(gy, g) : null;
      return bias ? [dx, dw, db] : [dx, dw];
    },
  });
  return y;
}

/** dX [N,C,H,W] from dY and W: GEMM over (input pixel) × C with K = O·kh·kw. */
function conv2dGradInput(dy: Tensor, w: Tensor, g: Geometry): Tensor {
  const [dx] = makeNode('conv2d_grad_input', [dy, w], [{ shape: [g.N, g.C, g.H, g.W] }], {
    encode(ctx) {
      const M = g.N * g.H * g.W, K = g.O * g.KH * g.KW, t = convTiles(M, g.C);
      ctx.dispatch({
        kernel: { family: 'conv', defs: defs(g, 'DX', t) },
        bindings: [dy, w, dx],
        params: params(g, M, g.C, K, 1),
        workgroups: [Math.ceil(g.C / t.TN), Math.ceil(M / t.TM)],
      });
    },
  });
  return dx;
}

/** dW [O,C,kh,kw] from dY and X: GEMM over O × (c,ky,kx) with K = the output pixels of every image. */
function conv2dGradWeight(dy: Tensor, x: Tensor, g: Geometry): Tensor {
  const [dw] = makeNode('conv2d_grad_weight', [dy, x], [{ shape: [g.O, g.C, g.KH, g.KW] }], {
    encode(ctx) {
      const NC = g.C * g.KH * g.KW, t = convTiles(g.O, NC);
      ctx.dispatch({
        kernel: { family: 'conv', defs: defs(g, 'DW', t) },
        bindings: [dy, x, dw],
        params: params(g, g.O, NC, g.OH * g.OW, g.N),
        workgroups: [Math.ceil(NC / t.TN), Math.ceil(g.O / t.TM)],
      });
    },
  });
  return dw;
}

function conv2dGradBias(dy: Tensor, g: Geometry): Tensor {
  const [db] = makeNode('conv2d_grad_bias', [dy], [{ shape: [g.O] }], {
    encode(ctx) {
      ctx.dispatch({
        kernel: { family: 'conv', defs: defs(g, 'BIAS_GRAD', convTiles(1, 1)) },
        bindings: [dy, db],
        params: params(g, 0, 0, 0, 0),
        workgroups: [g.O],
      });
    },
  });
  return db;
}
