// Matrix products: batched `matmul` with transposed operands and `linear` (PyTorch layout).
import { type Bindable, dtypeBytes, type EncodeCtx, makeNode, type Tensor } from '../tensor.ts';
import { dispose, fromData } from '../runtime.ts';
import { registerTunable } from '../tuner.ts';
import { assertFloat } from './util.ts';
import { chooseConfig, trialConfig } from '../kernels/catalogue.ts';
import { type MatmulGeometry, matmulFamily, matmulLaunch, matmulParams, type MatmulTiles, matmulTiles, transposeStep, transposesA, transposesB, windowPlan, windowSteps } from '../kernels/matmul.ts';
import { sumTo } from './elementwise.ts';
import { reshape } from './shape.ts';
import { rowsLinear } from './matvec.ts';

/**
 * Records matmul's WINDOW path (src/graph/kernels/matmul.ts windowSteps): A repacked into scratch
 * when the plan says so (never when `aPadded`: conv2d's im2col patches are [M, Kp] already), B
 * repacked into whole 64 KiB windows, then one dispatch per window (and K chunk) binding its
 * byte range of the packed B as a uniform buffer. `nchwP`: C stored as NCHW with P pixels.
 */
export function encodeWindow(
  ctx: EncodeCtx, g: MatmulGeometry, t: MatmulTiles,
  o: { a: Bindable; b: Tensor; c: Tensor; bias?: Tensor; batchA: number; batchB: number; aPadded?: boolean; nchwP?: number },
): void {
  const plan = windowPlan(g, t, o.aPadded);
  const packedA = plan.packA ? ctx.scratch(o.batchA * g.M * plan.Kp * 4) : null;
  const packedB = ctx.scratch(o.batchB * plan.nWin * plan.nChunks * plan.WS * 4);
  for (const st of windowSteps(g, t, plan, o.batchA, o.batchB, o.nchwP)) {
    if (st.role === 'packA') ctx.dispatch({ kernel: st.kernel, bindings: [o.a, packedA!], params: st.params, workgroups: st.workgroups, label: 'pack A' });
    else if (st.role === 'packB') ctx.dispatch({ kernel: st.kernel, bindings: [o.b, packedB], params: st.params, workgroups: st.workgroups, label: 'pack B' });
    else {
      const a = packedA ?? o.a, w = { of: packedB, ...st.window! };
      ctx.dispatch({ kernel: st.kernel, bindings: o.bias ? [a, w, o.c, o.bias] : [a, w, o.c], params: st.params, workgroups: st.workgroups });
    }
  }
}

/**
 * Records matmul's REGISTER (or TILED) kernel for `g` with configuration `t`: with TA / TB an
 * operand is first transposed into scratch, so the kernel reads it 4 rows (A) or 4 columns (B)
 * per vec4 load. `a`, `b`: [batchA or 1][..] and [batchB or 1][..] in g's layouts (a batch of 1
 * broadcasts); their element bytes from `bytes` (the tensors' dtype).
 */
export function encodeRegister(
  ctx: EncodeCtx, g: MatmulGeometry, t: MatmulTiles,
  o: {
    a: Bindable; b: Bindable; c: Tensor; bias?: Tensor; batchA: number; batchB: number; bytes?: [number, number];
    /** Where C's rows lie when not packed [batch, M, N]: row stride, first element, batch stride. */
    cLayout?: { ldC: number; offC: number; strideC: number };
    /** A's first element (within its binding). */
    offA?: number;
  },
): void {
  const { M, N, K, batch } = g;
  const [bytesA, bytesB] = o.bytes ?? [4, 4];
  let a = o.a, b = o.b;
  const ta = transposesA(g, t), tb = transposesB(g, t);
  if (ta) {
    a = ctx.scratch(o.batchA * M * K * bytesA);
    ctx.dispatch({ ...transposeStep(K, M, o.batchA), bindings: [o.a, a], label: 'transpose A' });
  }
  if (tb) {
    b = ctx.scratch(o.batchB * N * K * bytesB);
    ctx.dispatch({ ...transposeStep(K, N, o.batchB), bindings: [o.b, b], label: 'transpose B' });
  }
  const { kernel, workgroups } = matmulLaunch({ ...g, transA: g.transA || ta, transB: g.transB && !tb }, t);
  ctx.dispatch({
    kernel,
    bindings: o.bias ? [a, b, o.c, o.bias] : [a, b, o.c],
    params: matmulParams.pack({ M, N, K, batch, strideA: o.batchA === 1 ? 0 : M * K, strideB: o.batchB === 1 ? 0 : K * N, strideC: o.cLayout?.strideC ?? M * N, ldC: o.cLayout?.ldC ?? N, offC: o.cLayout?.offC ?? 0, offA: o.offA ?? 0 }),
    workgroups,
  });
}

export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
  bias?: Tensor;
}

export { type MatmulTiles, matmulTiles, registerBody } from '../kernels/matmul.ts';

/**
 * C = op(A)·op(B) over a batch: A is [M,K] (or [K,M] with transA), optionally with one
 * leading batch dim; same for B. A batch of 1 (or a 2-D operand) broadcasts.
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const { transA = false, transB = false, bias } = opts;
  assertFloat(a, 'matmul', 'A');
  assertFloat(b, 'matmul', 'B');
  if (a.rank < 2 || a.rank > 3 || b.rank < 2 || b.rank > 3) throw new Error(`matmul: operands must be 2-D or 3-D, got ${a} and ${b}`);
  const bA = a.rank === 3 ? a.shape[0] : 1, bB = b.rank === 3 ? b.shape[0] : 1;
  if (bA !== bB && bA !== 1 && bB !== 1) throw new Error(`matmul: batch sizes ${bA} and ${bB} differ`);
  const batch = Math.max(bA, bB);
  const [ra, ca] = a.shape.slice(-2), [rb, cb] = b.shape.slice(-2);
  const M = transA ? ca : ra, K = transA ? ra : ca;
  const K2 = transB ? cb : rb, N = transB ? rb : cb;
  if (K !== K2) throw new Error(`matmul: inner sizes differ: ${a}${transA ? 'ᵀ' : ''} · ${b}${transB ? 'ᵀ' : ''}`);
  if (bias && (bias.rank !== 1 || bias.shape[0] !== N)) throw new Error(`matmul: bias ${bias} must be [${N}]`);
  const outShape = a.rank === 3 || b.rank === 3 ? [batch, M, N] : [M, N];
  const inputs = bias ? [a, b, bias] : [a, b];
  const trialCfg = trialConfig('matmul');
  const [c] = makeNode('matmul', inputs, [{ shape: outShape }], {
    encode(ctx) {
      const g: MatmulGeometry = { M, N, K, batch, transA, transB, bias: !!bias, ...(a.dtype !== 'f32' || b.dtype !== 'f32' ? { types: [a.dtype, b.dtype] as [string, string] } : {}) };
      let cfg = chooseConfig(matmulFamily, g, ctx.profile, trialCfg);
      // (f16 operands have no WINDOW form: the register kernel runs them.)
      if (cfg.kind === 'window' && g.types) cfg = matmulTiles(M, N, 'register');
      if (cfg.kind === 'window') {
        encodeWindow(ctx, g, cfg, { a, b, c, bias, batchA: bA, batchB: bB });
        return;
      }
      encodeRegister(ctx, g, cfg, { a, b, c, bias, batchA: bA, batchB: bB, bytes: [dtypeBytes(a.dtype), dtypeBytes(b.dtype)] });
    },
    backward([dc]) {
      const g = dc!;
      // dA = dC·op(B)ᵀ (or its transpose), dB likewise; broadcast batches are summed.
      let da: Tensor | null = null, db: Tensor | null = null;
      if (a.requiresGrad) {
        da = transA ? matmul(b, g, { transA: transB, transB: true }) : matmul(g, b, { transB: !transB });
        if (da.rank === 3 && (a.rank === 2 || a.shape[0] === 1) && da.shape[0] !== 1) da = sumTo(da, [1, ...da.shape.slice(1)]);
        da = reshape(da, a.shape);
      }
      if (b.requiresGrad) {
        db = transB ? matmul(g, a, { transA: true, transB: transA }) : matmul(a, g, { transA: !transA });
        if (db.rank === 3 && (b.rank === 2 || b.shape[0] === 1) && db.shape[0] !== 1) db = sumTo(db, [1, ...db.shape.slice(1)]);
        db = reshape(db, b.shape);
      }
      const dbias = bias?.requiresGrad ? sumTo(g, [N]) : null;
      return bias ? [da, db, dbias] : [da, db];
    },
  });
  return c;
}

/**
 * Row counts up to which `linear` of an inference input uses the few-row kernel (`rowsLinear`):
 * decoding steps (images × beams; evaluation decodes 16 images at a time), per-image vectors.
 */
export const FEW_ROWS = 16;

/** y = x·Wᵀ + b for x [..., in], W [out, in] (PyTorch nn.Linear). */
export function linear(x: Tensor, w: Tensor, b?: Tensor | null): Tensor {
  const inF = x.shape[x.rank - 1];
  if (w.rank !== 2 || w.shape[1] !== inF) throw new Error(`linear: weight ${w} does not take ${x} (in features ${inF})`);
  const lead = x.shape.slice(0, -1);
  const rows = lead.reduce((p, q) => p * q, 1);
  const x2 = reshape(x, [rows, inF]);
  // A few rows of an inference graph (a decoding step, a per-image vector; x built under
  // noGrad) read each weight once: the streaming kernel. Differentiated graphs keep the tiled
  // kernel, so their values and gradients do not depend on how many rows a batch has.
  const fewRows = rows <= FEW_ROWS && !x.requiresGrad && x.dtype === w.dtype && (!b || b.dtype === w.dtype);
  const y = fewRows ? rowsLinear(x2, w, b) : matmul(x2, w, { transB: true, bias: b ?? undefined });
  return reshape(y, [...lead, w.shape[0]]);
}


/** Inputs in [-1, 1] from a fixed seed (tuning trials). */
export function trialData(n: number, seed: number): Float32Array {
  let x = seed >>> 0 || 1;
  return Float32Array.from({ length: n }, () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return ((x >>> 0) / 4294967296) * 2 - 1;
  });
}

registerTunable<MatmulGeometry>({
  family: matmulFamily,
  trial(g) {
    const { M, N, K, batch, transA, transB } = g;
    const [ta, tb] = (g.types ?? ['f32', 'f32']) as ['f32' | 'f16', 'f32' | 'f16'];
    const a = fromData(trialData(batch * M * K, 1), transA ? [batch, K, M] : [batch, M, K], ta).keep();
    const b = fromData(trialData(batch * K * N, 2), transB ? [batch, N, K] : [batch, K, N], tb).keep();
    const bias = g.bias ? fromData(trialData(N, 3), [N]).keep() : undefined;
    return {
      op: 'matmul',
      build: () => matmul(a, b, { transA, transB, bias }),
      // Each result is within γ_{K+1}·(Σ|a||b| + |bias|) ≤ γ_{K+1}·(K+1) of the exact value
      // (|inputs| ≤ 1), whatever the summation order, so two configurations differ by ≤ twice that.
      tolerance: 2 * (((K + 1) * 2 ** -24) / (1 - (K + 1) * 2 ** -24)) * (K + 1),
      flops: 2 * batch * M * N * K,
      dispose: () => dispose(a, b, bias),
    };
  },
});
