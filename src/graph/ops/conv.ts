// 2-D convolution (PyTorch nn.Conv2d layout: x [N,C,H,W], w [O,C,kh,kw], square kernels,
// zero padding) as implicit GEMMs in shaders/conv.wgsl: the forward, dX (a transposed conv
// written as a gather, so no atomics and no col2im) and dW (dYᵀ·X-patches) are each one
// register-blocked GEMM that gathers its patch operand on the fly from a channels-last vec4
// copy made in the same node; the weight is re-laid as a vec4 GEMM operand the same way.
// The bias gradient is a channel sum.
import { type EncodeCtx, makeNode, type Tensor } from '../tensor.ts';
import { assertDtype, grid1d, P } from './util.ts';

export interface Conv2dOptions {
  stride?: number;
  padding?: number;
}

interface Geometry {
  N: number; C: number; H: number; W: number;
  O: number; KH: number; KW: number; OH: number; OW: number;
  stride: number; pad: number;
}

export interface ConvConfig {
  /** Invocations per workgroup (1-D). */
  WG: number;
  /** GEMM rows per invocation. */
  RM: number;
  /** GEMM columns per workgroup (a multiple of 4), shared by all its invocations. */
  RN: number;
}

/**
 * Register blocking for an M-row GEMM. Measured on llvmpipe (the loads, not the FMAs, are the
 * cost there): 16 rows × 8 columns per invocation ran 2–4× faster than 4×8 or 8×8, and
 * wider column blocks (RN 12, 16) fell off a cliff; small M shrinks RM so lanes are not idle.
 */
export function convConfig(M: number): ConvConfig {
  const WG = 32;
  return { WG, RM: Math.min(16, Math.max(1, Math.ceil(M / WG))), RN: 8 };
}

const c4 = (n: number) => Math.ceil(n / 4);

type Kind = 'LAYOUT' | 'WEIGHT' | 'GEMM4' | 'DW4' | 'BIAS_GRAD';
function kernel(g: Geometry, kind: Kind, opts: { fwd?: boolean; bias?: boolean; cfg?: ConvConfig } = {}) {
  const cfg = opts.cfg ?? { WG: 64, RM: 1, RN: 4 };
  return {
    family: 'conv',
    defs: {
      LAYOUT: kind === 'LAYOUT', WEIGHT: kind === 'WEIGHT', GEMM4: kind === 'GEMM4', DW4: kind === 'DW4', BIAS_GRAD: kind === 'BIAS_GRAD',
      FWD: !!opts.fwd, HAS_BIAS: !!opts.bias, KH: g.KH, KW: g.KW, STRIDE: g.stride, PAD: g.pad, ...cfg,
    },
  };
}

interface Fields { total?: number; M?: number; NC?: number; SC4?: number; NB4?: number; SH?: number; SW?: number; C?: number; H?: number; W?: number; N?: number; O?: number }
function params(g: Geometry, f: Fields) {
  return P().u(f.N ?? g.N, f.C ?? g.C, f.H ?? g.H, f.W ?? g.W, f.O ?? g.O, g.OH, g.OW, f.total ?? 0)
    .u(f.M ?? 0, f.NC ?? 0, f.SC4 ?? 0, f.NB4 ?? 0, f.SH ?? 0, f.SW ?? 0, 0, 0);
}

/** Records NCHW [n, ch, hw] → channels-last vec4 [n, hw, ⌈ch/4⌉] (+ one zero pixel) into a scratch buffer. */
function toChannelsLast(ctx: EncodeCtx, g: Geometry, src: Tensor, n: number, ch: number, hw: number): GPUBuffer {
  const total = (n * hw + 1) * c4(ch);
  const dst = ctx.scratch(total * 16);
  ctx.dispatch({ kernel: kernel(g, 'LAYOUT'), bindings: [src, dst], params: params(g, { N: n, C: ch, H: hw, W: 1, SC4: c4(ch), total }), workgroups: grid1d(total) });
  return dst;
}

/** Records the weight as a [taps·rows4·4, NB4] vec4 GEMM operand (rows: C for the forward, O for dX). */
function weightMatrix(ctx: EncodeCtx, g: Geometry, w: Tensor, fwd: boolean, NB4: number): GPUBuffer {
  const rows4 = c4(fwd ? g.C : g.O);
  const total = g.KH * g.KW * rows4 * 4 * NB4;
  const dst = ctx.scratch(total * 16);
  ctx.dispatch({ kernel: kernel(g, 'WEIGHT', { fwd }), bindings: [w, dst], params: params(g, { SC4: rows4, NB4, total }), workgroups: grid1d(total) });
  return dst;
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
      const M = N * OH * OW, cfg = convConfig(M), NB4 = Math.ceil(O / cfg.RN) * (cfg.RN / 4);
      const xh = toChannelsLast(ctx, g, x, N, C, H * W);
      const wb = weightMatrix(ctx, g, w, true, NB4);
      ctx.dispatch({
        kernel: kernel(g, 'GEMM4', { fwd: true, bias: !!bias, cfg }),
        bindings: bias ? [xh, wb, y, bias] : [xh, wb, y],
        params: params(g, { M, NC: O, SC4: c4(C), NB4, SH: H, SW: W }),
        workgroups: [Math.ceil(O / cfg.RN), Math.ceil(M / (cfg.WG * cfg.RM))],
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

/** dX [N,C,H,W]: GEMM over input pixels × C, reducing over (tap, o) of the dY taps that reach each pixel. */
function conv2dGradInput(dy: Tensor, w: Tensor, g: Geometry): Tensor {
  const [dx] = makeNode('conv2d_grad_input', [dy, w], [{ shape: [g.N, g.C, g.H, g.W] }], {
    encode(ctx) {
      const M = g.N * g.H * g.W, cfg = convConfig(M), NB4 = Math.ceil(g.C / cfg.RN) * (cfg.RN / 4);
      const dyh = toChannelsLast(ctx, g, dy, g.N, g.O, g.OH * g.OW);
      const wb = weightMatrix(ctx, g, w, false, NB4);
      ctx.dispatch({
        kernel: kernel(g, 'GEMM4', { fwd: false, cfg }),
        bindings: [dyh, wb, dx],
        params: params(g, { M, NC: g.C, SC4: c4(g.O), NB4, SH: g.OH, SW: g.OW }),
        workgroups: [Math.ceil(g.C / cfg.RN), Math.ceil(M / (cfg.WG * cfg.RM))],
      });
    },
  });
  return dx;
}

/** dW [O,C,kh,kw]: GEMM over O × (tap, c), reducing over every image's output pixels. */
function conv2dGradWeight(dy: Tensor, x: Tensor, g: Geometry): Tensor {
  const [dw] = makeNode('conv2d_grad_weight', [dy, x], [{ shape: [g.O, g.C, g.KH, g.KW] }], {
    encode(ctx) {
      const cfg = convConfig(g.O), groups = g.KH * g.KW * c4(g.C);
      const xh = toChannelsLast(ctx, g, x, g.N, g.C, g.H * g.W);
      ctx.dispatch({
        kernel: kernel(g, 'DW4', { cfg }),
        bindings: [dy, xh, dw],
        params: params(g, { SC4: c4(g.C) }),
        workgroups: [Math.ceil(groups / (cfg.RN / 4)), Math.ceil(g.O / (cfg.WG * cfg.RM))],
      });
    },
  });
  return dw;
}

function conv2dGradBias(dy: Tensor, g: Geometry): Tensor {
  const [db] = makeNode('conv2d_grad_bias', [dy], [{ shape: [g.O] }], {
    encode(ctx) {
      ctx.dispatch({ kernel: kernel(g, 'BIAS_GRAD'), bindings: [dy, db], params: params(g, {}), workgroups: [g.O] });
    },
  });
  return db;
}
