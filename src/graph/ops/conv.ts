// 2-D convolution (PyTorch nn.Conv2d layout: x [N,C,H,W], w [O,C,kh,kw], square kernels,
// zero padding) as implicit GEMMs in shaders/conv.wgsl: the forward, dX (a transposed conv
// written as a gather, so no atomics and no col2im) and dW (dYᵀ·X-patches) are each one
// register-blocked GEMM that gathers its patch operand on the fly from a channels-last vec4
// copy made in the same node; the weight is re-laid as a vec4 GEMM operand the same way.
// The bias gradient is a channel sum.
import { type Bindable, dtypeBytes, type EncodeCtx, makeNode, type Tensor } from '../tensor.ts';
import { adapterProfile, assertFloat, grid1d } from './util.ts';
import { chooseConfig, trialConfig } from '../kernels/catalogue.ts';
import { type ConvConfig, convDwFamily, type ConvDwGeometry, convFamily, type ConvGemmConfig, type ConvGemmGeometry, convIm2colParams, convParams, convDwDirect, convDwMatmulApplies, convIsProduct, convMatmulApplies, convMatmulChunks, convOutSize, convRegisterBodyOf, convRegisterConfig, convRegisterDefault, convWindowApplies } from '../kernels/conv.ts';
import { type MatmulGeometry, type MatmulTiles, transposeStep } from '../kernels/matmul.ts';
import { dispose, fromData } from '../runtime.ts';
import { registerTunable } from '../tuner.ts';
import { encodeRegister, encodeWindow, trialData } from './matmul.ts';
export { type ConvConfig, convConfig, convDwRegisterConfig, convRegisterConfig } from '../kernels/conv.ts';


export interface Conv2dOptions {
  stride?: number;
  padding?: number;
}

export interface Geometry {
  N: number; C: number; H: number; W: number;
  O: number; KH: number; KW: number; OH: number; OW: number;
  stride: number; pad: number;
}

const c4 = (n: number) => Math.ceil(n / 4);

/** The layout kernels' form: per-row (CPU adapters' register path) or per-element. */
function useRegister(): boolean {
  return convRegisterDefault(adapterProfile());
}

/**
 * The forward conv as im2col + matmul's WINDOW kernel (f32): the patches [N·OH·OW, Kp] into
 * scratch (k = (c, ky, kx), the weight's own order, so the weight [O, C·KH·KW] is Bᵀ as it
 * lies), then C = patches · weightᵀ stored straight to NCHW (+ bias).
 */
function encodeWindowConv(ctx: EncodeCtx, g: Geometry, gg: ConvGemmGeometry, cfg: ConvGemmConfig, x: Tensor, w: Tensor, y: Tensor, bias?: Tensor): void {
  const K = g.C * g.KH * g.KW, Kp = Math.ceil(K / 4) * 4, M = gg.M, P = g.OH * g.OW;
  const cols = ctx.scratch(M * Kp * 4);
  const total = M * Kp;
  ctx.dispatch({
    kernel: kernel(g, 'IM2COL'),
    bindings: [x, cols],
    params: convIm2colParams.pack({ C: g.C, H: g.H, W: g.W, OH: g.OH, OW: g.OW, K, Kp, total, oh0: 0, OHc: g.OH }),
    workgroups: grid1d(total),
    label: 'im2col',
  });
  const mg: MatmulGeometry = { M, N: g.O, K, batch: 1, transA: false, transB: true, bias: !!bias };
  const t: MatmulTiles = { kind: 'window', TM: 0, TN: 0, BK: 0, WG: cfg.WG, RM: cfg.RM, RN: cfg.RN };
  encodeWindow(ctx, mg, t, { a: cols, b: w, c: y, bias, batchA: 1, batchB: 1, aPadded: true, nchwP: P });
}

/** The matmul kind's register block, and its operands' storage types (f16 pipelines are their own). */
const matmulKindTiles = (cfg: ConvGemmConfig): MatmulTiles => ({ kind: 'register', TM: 0, TN: 0, BK: 0, WG: cfg.WG, RM: cfg.RM, RN: cfg.RN });
const matmulKindTypes = (x: Tensor) => (x.dtype === 'f16' ? { types: ['f16', 'f16'] as [string, string] } : {});

/**
 * The forward conv as matmul's register kernel (the conv family's matmul kind): per image
 * y[n] [O, OH·OW] = w [O, C·KH·KW] · cols[n] [C·KH·KW, OH·OW], the weight (A, shared by every
 * image) transposed into scratch once (read 4 rows per vec4 load); the patch columns from
 * IM2COL_ROWS, or the input itself for a 1×1 stride-1 unpadded conv. Patch columns larger than
 * IM2COL_MAX_BYTES are made and multiplied a chunk of output rows at a time, each product stored
 * in place in y (C's row stride P): the paper's 3×3 2048→2048 fusion conv on 56² would need
 * 231 MB of them at once.
 */
function encodeMatmulConv(ctx: EncodeCtx, g: Geometry, cfg: ConvGemmConfig, x: Tensor, w: Tensor, y: Tensor, bias?: Tensor, weight: 'transpose' | 'flip' = 'transpose'): void {
  const K = g.C * g.KH * g.KW, P = g.OH * g.OW, bytes = dtypeBytes(x.dtype);
  const product = convIsProduct({ K: g.KH, stride: g.stride, pad: g.pad });
  const { OHc, chunks } = product ? { OHc: g.OH, chunks: 1 } : convMatmulChunks(g.N, K, g.OH, g.OW, bytes);
  // The weight as the product reads it: [C·KH·KW, O]. 'flip' (dX of a stride-1 conv, see
  // conv2dGradInput): w is that conv's [C, O, KH, KW], this conv's weight is it flipped in space
  // with its channels swapped, and its transpose is w re-ordered (w itself for 1×1).
  let wT: Bindable = w;
  if (weight === 'transpose') {
    wT = ctx.scratch(g.O * K * bytes);
    ctx.dispatch({ ...transposeStep(K, g.O, 1), bindings: [w, wT], label: 'transpose weight' });
  } else if (g.KH * g.KW > 1) {
    wT = ctx.scratch(g.O * K * bytes);
    const total = g.O * K;
    ctx.dispatch({ kernel: kernel(g, 'WEIGHT_FLIP_T'), bindings: [w, wT], params: params(g, { C: g.O, O: g.C, total }), workgroups: grid1d(total), label: 'flip weight' });
  }
  const cols = product ? null : ctx.scratch(g.N * K * OHc * g.OW * bytes);
  const t = matmulKindTiles(cfg);
  for (let c = 0; c < chunks; c++) {
    const oh0 = c * OHc, rowsHere = Math.min(OHc, g.OH - oh0), Pc = rowsHere * g.OW;
    if (cols) {
      const rows = g.N * K;
      ctx.dispatch({
        kernel: kernel(g, 'IM2COL_ROWS'),
        bindings: [x, cols],
        params: convIm2colParams.pack({ C: g.C, H: g.H, W: g.W, OH: g.OH, OW: g.OW, K, Kp: K, total: rows, oh0, OHc: rowsHere }),
        workgroups: grid1d(rows, 64),
        label: 'im2col',
      });
    }
    const mg: MatmulGeometry = { M: g.O, N: Pc, K, batch: g.N, transA: true, transB: false, bias: !!bias, biasRows: true, ...matmulKindTypes(x) };
    encodeRegister(ctx, mg, t, { a: wT, b: cols ?? x, c: y, bias, batchA: 1, batchB: g.N, bytes: [bytes, bytes], cLayout: { ldC: P, offC: oh0 * g.OW, strideC: g.O * P } });
  }
}

/**
 * The weight gradient on matmul's register kernel (the conv_dw family's matmul kind):
 * dW [O, C·KH·KW] = Σ over output pixels of dYᵀ's rows × the patch rows, dY transposed once
 * ([N, P, O]: the rows of every image in turn), the patches (IM2COL) a chunk of output rows
 * (counted over all images) at a time within the scratch limit, each chunk's product added
 * into dW in place.
 */
function encodeMatmulDw(ctx: EncodeCtx, g: Geometry, cfg: ConvGemmConfig, dy: Tensor, x: Tensor, dw: Tensor, plan: { OHc: number; chunks: number }): void {
  const K = g.C * g.KH * g.KW, P = g.OH * g.OW, bytes = dtypeBytes(x.dtype), rows = g.N * g.OH;
  const dyT = ctx.scratch(g.N * P * g.O * bytes);
  ctx.dispatch({ ...transposeStep(P, g.O, g.N), bindings: [dy, dyT], label: 'transpose dY' });
  const { OHc, chunks } = plan;
  const cols = ctx.scratch(OHc * g.OW * K * bytes);
  const t = matmulKindTiles(cfg);
  for (let c = 0; c < chunks; c++) {
    const q0 = c * OHc, here = Math.min(OHc, rows - q0), total = here * g.OW * K;
    ctx.dispatch({
      kernel: kernel(g, 'IM2COL'),
      bindings: [x, cols],
      params: convIm2colParams.pack({ C: g.C, H: g.H, W: g.W, OH: g.OH, OW: g.OW, K, Kp: K, total, oh0: q0, OHc: here }),
      workgroups: grid1d(total),
      label: 'im2col',
    });
    const mg: MatmulGeometry = { M: g.O, N: K, K: here * g.OW, batch: 1, transA: true, transB: false, bias: false, accumulate: c > 0, ...matmulKindTypes(x) };
    encodeRegister(ctx, mg, t, { a: dyT, b: cols, c: dw, batchA: 1, batchB: 1, bytes: [bytes, bytes], offA: q0 * g.OW * g.O });
  }
}

type Kind = 'LAYOUT' | 'LAYOUT_ROWS' | 'WEIGHT' | 'WEIGHT_ROWS' | 'WEIGHT_FLIP_T' | 'GEMM4' | 'GEMMR' | 'DW4' | 'DWR' | 'BIAS_GRAD' | 'IM2COL' | 'IM2COL_ROWS';
function kernel(g: Geometry, kind: Kind, opts: { fwd?: boolean; bias?: boolean; cfg?: ConvConfig } = {}) {
  const cfg = opts.cfg ?? { WG: 64, RM: 1, RN: 4 };
  return {
    family: 'conv',
    gen: {
      PARAMS: kind === 'IM2COL' || kind === 'IM2COL_ROWS' ? convIm2colParams.wgsl : convParams.wgsl,
      REG_BODY: kind === 'GEMMR' || kind === 'DWR' ? convRegisterBodyOf(kind, cfg, !!opts.fwd, !!opts.bias) : '',
    },
    defs: {
      LAYOUT: kind === 'LAYOUT', LAYOUT_ROWS: kind === 'LAYOUT_ROWS', WEIGHT: kind === 'WEIGHT', WEIGHT_ROWS: kind === 'WEIGHT_ROWS', WEIGHT_FLIP_T: kind === 'WEIGHT_FLIP_T', GEMM4: kind === 'GEMM4', GEMMR: kind === 'GEMMR', DW4: kind === 'DW4', DWR: kind === 'DWR', BIAS_GRAD: kind === 'BIAS_GRAD', IM2COL: kind === 'IM2COL', IM2COL_ROWS: kind === 'IM2COL_ROWS',
      FWD: !!opts.fwd, HAS_BIAS: !!opts.bias, KH: g.KH, KW: g.KW, STRIDE: g.stride, PAD: g.pad, WG: cfg.WG, RM: cfg.RM, RN: cfg.RN,
    },
  };
}

interface Fields { total?: number; M?: number; NC?: number; SC4?: number; NB4?: number; SH?: number; SW?: number; C?: number; H?: number; W?: number; N?: number; O?: number; CR?: number }
function params(g: Geometry, f: Fields) {
  return convParams.pack({ N: g.N, C: g.C, H: g.H, W: g.W, O: g.O, OH: g.OH, OW: g.OW, ...f }, true);
}

/** Records NCHW [n, ch, hw] → channels-last vec4 [n, hw, ⌈ch/4⌉] (+ one zero pixel) into a scratch buffer. */
function toChannelsLast(ctx: EncodeCtx, g: Geometry, src: Tensor, n: number, ch: number, hw: number): GPUBuffer {
  const total = (n * hw + 1) * c4(ch);
  const dst = ctx.scratch(total * 4 * dtypeBytes(src.dtype));
  if (useRegister()) {
    // CPU adapters: one invocation per pixel (index division once per pixel, not per quad).
    const pixels = n * hw + 1;
    ctx.dispatch({ kernel: kernel(g, 'LAYOUT_ROWS'), bindings: [src, dst], params: params(g, { N: n, C: ch, H: hw, W: 1, SC4: c4(ch), total: pixels }), workgroups: grid1d(pixels) });
    return dst;
  }
  ctx.dispatch({ kernel: kernel(g, 'LAYOUT'), bindings: [src, dst], params: params(g, { N: n, C: ch, H: hw, W: 1, SC4: c4(ch), total }), workgroups: grid1d(total) });
  return dst;
}

/** Records the weight as a [taps·rows4·4, NB4] vec4 GEMM operand (rows: C for the forward, O for dX). */
function weightMatrix(ctx: EncodeCtx, g: Geometry, w: Tensor, fwd: boolean, NB4: number): GPUBuffer {
  const rows4 = c4(fwd ? g.C : g.O);
  const total = g.KH * g.KW * rows4 * 4 * NB4;
  const dst = ctx.scratch(total * 4 * dtypeBytes(w.dtype));
  if (useRegister()) {
    // CPU adapters: one invocation per WB row (index division once per row).
    const rows = g.KH * g.KW * rows4 * 4;
    ctx.dispatch({ kernel: kernel(g, 'WEIGHT_ROWS', { fwd }), bindings: [w, dst], params: params(g, { SC4: rows4, NB4, total: rows }), workgroups: grid1d(rows) });
    return dst;
  }
  ctx.dispatch({ kernel: kernel(g, 'WEIGHT', { fwd }), bindings: [w, dst], params: params(g, { SC4: rows4, NB4, total }), workgroups: grid1d(total) });
  return dst;
}

/** y = conv2d(x, w) + bias, PyTorch semantics (output size ⌊(H + 2p − k)/s⌋ + 1). */
export function conv2d(x: Tensor, w: Tensor, bias: Tensor | null, opts: Conv2dOptions = {}): Tensor {
  const stride = opts.stride ?? 1, pad = opts.padding ?? 0;
  assertFloat(x, 'conv2d', 'x');
  assertFloat(w, 'conv2d', 'weight');
  if (x.rank !== 4) throw new Error(`conv2d: input ${x} must be [N,C,H,W]`);
  if (w.rank !== 4) throw new Error(`conv2d: weight ${w} must be [O,C,kh,kw]`);
  const [N, C, H, W] = x.shape;
  const [O, Cw, KH, KW] = w.shape;
  if (Cw !== C) throw new Error(`conv2d: weight ${w} expects ${Cw} input channels, input ${x} has ${C}`);
  if (KH !== KW) throw new Error(`conv2d: weight ${w}: only square kernels are supported`);
  if (!Number.isInteger(stride) || stride < 1 || !Number.isInteger(pad) || pad < 0)
    throw new Error(`conv2d: bad stride ${stride} / padding ${pad} for input ${x}`);
  if (bias) {
    assertFloat(bias, 'conv2d', 'bias');
    if (bias.rank !== 1 || bias.shape[0] !== O) throw new Error(`conv2d: bias ${bias} must be [${O}] for weight ${w}`);
  }
  const OH = convOutSize(H, KH, stride, pad), OW = convOutSize(W, KW, stride, pad);
  if (OH < 1 || OW < 1) throw new Error(`conv2d: input ${x} is smaller than kernel ${KH}×${KW} with padding ${pad}`);
  const g: Geometry = { N, C, H, W, O, KH, KW, OH, OW, stride, pad };
  const inputs = bias ? [x, w, bias] : [x, w];
  const trialCfg = trialConfig('conv');
  const [y] = makeNode('conv2d', inputs, [{ shape: [N, O, OH, OW] }], {
    encode(ctx) {
      const M = N * OH * OW;
      const gg: ConvGemmGeometry = { pass: 'fwd', N, C, H, W, O, K: KH, stride, pad, bias: !!bias, M, cols: O, CR: C };
      let cfg = chooseConfig(convFamily, gg, ctx.profile, trialCfg);
      if (cfg.kind === 'window') {
        if (x.dtype === 'f32' && w.dtype === 'f32' && convWindowApplies(gg)) return encodeWindowConv(ctx, g, gg, cfg, x, w, y, bias ?? undefined);
        cfg = convFamily.handPicked(gg, ctx.profile);   // (a choice made for its class that this member cannot take)
      }
      if (cfg.kind === 'matmul') {
        if (x.dtype === w.dtype && (!bias || bias.dtype === x.dtype) && convMatmulApplies(gg)) return encodeMatmulConv(ctx, g, cfg, x, w, y, bias ?? undefined);
        cfg = { kind: 'register', ...convRegisterConfig(M, O, ctx.profile.registerBlockLimit) };
      }
      const reg = cfg.kind === 'register', NB4 = Math.ceil(O / cfg.RN) * (cfg.RN / 4);
      const xh = toChannelsLast(ctx, g, x, N, C, H * W);
      const wb = weightMatrix(ctx, g, w, true, NB4);
      ctx.dispatch({
        kernel: kernel(g, reg ? 'GEMMR' : 'GEMM4', { fwd: true, bias: !!bias, cfg }),
        bindings: bias ? [xh, wb, y, bias] : [xh, wb, y],
        params: params(g, { M, NC: O, SC4: c4(C), NB4, SH: H, SW: W, CR: C }),
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
export function conv2dGradInput(dy: Tensor, w: Tensor, g: Geometry): Tensor {
  const trialCfg = trialConfig('conv');
  const [dx] = makeNode('conv2d_grad_input', [dy, w], [{ shape: [g.N, g.C, g.H, g.W] }], {
    encode(ctx) {
      // Rows per stride-parity class (the kernel's wid.z): pixels (cy + S·a, cx + S·b).
      const S = g.stride, M = g.N * Math.ceil(g.H / S) * Math.ceil(g.W / S);
      const gg: ConvGemmGeometry = { pass: 'dx', N: g.N, C: g.C, H: g.H, W: g.W, O: g.O, K: g.KH, stride: S, pad: g.pad, bias: false, M, cols: g.C, CR: g.O };
      let cfg = chooseConfig(convFamily, gg, ctx.profile, trialCfg);
      if (cfg.kind === 'matmul' && dy.dtype === w.dtype && convMatmulApplies(gg)) {
        // Stride 1: dX is the conv of dY (padded by KH − 1 − pad) with the weight flipped in
        // space, its channels swapped: the matmul kind's forward, on that conv's geometry.
        const t: Geometry = { N: g.N, C: g.O, H: g.OH, W: g.OW, O: g.C, KH: g.KH, KW: g.KW, OH: g.H, OW: g.W, stride: 1, pad: g.KH - 1 - g.pad };
        return encodeMatmulConv(ctx, t, cfg, dy, w, dx, undefined, 'flip');
      }
      if (cfg.kind === 'window' || cfg.kind === 'matmul') cfg = convFamily.handPicked(gg, ctx.profile);   // (forward only; matmul: stride 1)
      const reg = cfg.kind === 'register', NB4 = Math.ceil(g.C / cfg.RN) * (cfg.RN / 4);
      const dyh = toChannelsLast(ctx, g, dy, g.N, g.O, g.OH * g.OW);
      const wb = weightMatrix(ctx, g, w, false, NB4);
      ctx.dispatch({
        kernel: kernel(g, reg ? 'GEMMR' : 'GEMM4', { fwd: false, cfg }),
        bindings: [dyh, wb, dx],
        params: params(g, { M, NC: g.C, SC4: c4(g.O), NB4, SH: g.OH, SW: g.OW, CR: g.O }),
        workgroups: [Math.ceil(g.C / cfg.RN), Math.ceil(M / (cfg.WG * cfg.RM)), S * S],
      });
    },
  });
  return dx;
}

/** dW [O,C,kh,kw]: GEMM over O × (tap, c), reducing over every image's output pixels. */
export function conv2dGradWeight(dy: Tensor, x: Tensor, g: Geometry): Tensor {
  const trialCfg = trialConfig('conv_dw');
  const [dw] = makeNode('conv2d_grad_weight', [dy, x], [{ shape: [g.O, g.C, g.KH, g.KW] }], {
    encode(ctx) {
      const dg: ConvDwGeometry = { N: g.N, C: g.C, H: g.H, W: g.W, O: g.O, K: g.KH, stride: g.stride, pad: g.pad };
      let cfg = chooseConfig(convDwFamily, dg, ctx.profile, trialCfg);
      if (cfg.kind === 'matmul') {
        // (f16: the chunks' partial sums would each round to f16 in dW; one chunk only)
        const plan = convMatmulChunks(1, g.C * g.KH * g.KW, g.N * g.OH, g.OW, dtypeBytes(x.dtype));
        if (dy.dtype === x.dtype && convDwMatmulApplies(dg) && (x.dtype === 'f32' || plan.chunks === 1)) return encodeMatmulDw(ctx, g, cfg, dy, x, dw, plan);
        cfg = convDwDirect(dg, ctx.profile);
      }
      const reg = cfg.kind === 'register', groups = g.KH * g.KW * c4(g.C);
      const xh = toChannelsLast(ctx, g, x, g.N, g.C, g.H * g.W);
      ctx.dispatch({
        kernel: kernel(g, reg ? 'DWR' : 'DW4', { cfg }),
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

/** The full conv geometry of a GEMM or dW geometry. */
function fullGeometry(q: { N: number; C: number; H: number; W: number; O: number; K: number; stride: number; pad: number }): Geometry {
  const OH = convOutSize(q.H, q.K, q.stride, q.pad), OW = convOutSize(q.W, q.K, q.stride, q.pad);
  return { N: q.N, C: q.C, H: q.H, W: q.W, O: q.O, KH: q.K, KW: q.K, OH, OW, stride: q.stride, pad: q.pad };
}

/** Two f32 results of a length-L dot product of values in [-1, 1] differ by at most 2·γ_L·L. */
const pairBound = (L: number) => 2 * ((L * 2 ** -24) / (1 - L * 2 ** -24)) * L;

registerTunable<ConvGemmGeometry>({
  family: convFamily,
  trial(q) {
    const g = fullGeometry(q);
    const w = fromData(trialData(g.O * g.C * g.KH * g.KW, 2), [g.O, g.C, g.KH, g.KW]).keep();
    if (q.pass === 'fwd') {
      const x = fromData(trialData(g.N * g.C * g.H * g.W, 1), [g.N, g.C, g.H, g.W]).keep();
      const bias = q.bias ? fromData(trialData(g.O, 3), [g.O]).keep() : null;
      const L = g.C * g.KH * g.KW + 1;
      return { op: 'conv2d', build: () => conv2d(x, w, bias, { stride: g.stride, padding: g.pad }), tolerance: pairBound(L), flops: 2 * q.M * g.O * (L - 1), dispose: () => dispose(x, w, bias) };
    }
    const dy = fromData(trialData(g.N * g.O * g.OH * g.OW, 4), [g.N, g.O, g.OH, g.OW]).keep();
    const L = g.O * g.KH * g.KW;
    return { op: 'conv2d_grad_input', build: () => conv2dGradInput(dy, w, g), tolerance: pairBound(L), flops: 2 * g.N * g.H * g.W * g.C * L, dispose: () => dispose(dy, w) };
  },
});

registerTunable<ConvDwGeometry>({
  family: convDwFamily,
  trial(q) {
    const g = fullGeometry(q);
    const x = fromData(trialData(g.N * g.C * g.H * g.W, 1), [g.N, g.C, g.H, g.W]).keep();
    const dy = fromData(trialData(g.N * g.O * g.OH * g.OW, 4), [g.N, g.O, g.OH, g.OW]).keep();
    const L = g.N * g.OH * g.OW;
    return { op: 'conv2d_grad_weight', build: () => conv2dGradWeight(dy, x, g), tolerance: pairBound(L), flops: 2 * g.O * g.C * g.KH * g.KW * L, dispose: () => dispose(x, dy) };
  },
});
