// Report generation with a key/value cache: the image is encoded once, every decoder layer's
// cross-attention keys/values (and the global image vector) are computed once per image,
// and self-attention keys/values live in preallocated per-layer caches [B, H, T, dh] that
// each step writes one position of in place, so a new token costs one position, not the
// whole prefix. Attention runs over all T cache slots with a mask (slots past the current
// position are masked, so their −1e9 scores weigh exactly 0): the step's cost does not grow
// with the position. A step is one submission; beam reorders are folded into the next one.
import { dtypeBytes, makeNode, type Tensor } from '../graph/tensor.ts';
import { dispose, fromData, read, realize } from '../graph/runtime.ts';
import { linear } from '../graph/ops/matmul.ts';
import { expertsForRows, rowsLinear, type StackedExperts } from '../graph/ops/matvec.ts';
import { rmsNorm } from '../graph/ops/norm.ts';
import { rotary } from '../graph/ops/rotary.ts';
import { attention } from '../graph/ops/attention.ts';
import { embedding } from '../graph/ops/embedding.ts';
import { activation, add, mul, scale, sigmoid, sub } from '../graph/ops/elementwise.ts';
import { max, mean } from '../graph/ops/reduce.ts';
import { concat, reshape, slice, split, stridedCopy } from '../graph/ops/shape.ts';
import { stackExpertWeights, topkGate } from '../graph/ops/moe.ts';
import { Forward } from '../model/context.ts';
import { encodeImage } from '../model/micar.ts';
import { downNormUp, splitHeads } from '../model/attention.ts';
import type { Weights } from '../model/weights.ts';

export interface StepTrace {
  /** Cross-attention per layer [B, H, 1, 49] (when tracing). */
  cross: Tensor[];
  /** Self-attention per layer [B, H, 1, t+1]. */
  self: Tensor[];
  /** MoE routing per layer: indices [B, k], weights [B, k]. */
  experts: { indices: Tensor; weights: Tensor }[];
}

interface ImageContext {
  crossK: Tensor[]; // per layer [n, H, 49, dh] (rotated)
  crossV: Tensor[];
  g: Tensor[]; // per layer [n, 1, d] global image vector
}

/** out[r] = x[rows[r]] along axis 0 (whole contiguous slabs, buffer copies only). */
function gatherSlabs(x: Tensor, rows: number[], label: string): Tensor {
  const slab = x.size / x.shape[0];
  for (const r of rows) if (!Number.isInteger(r) || r < 0 || r >= x.shape[0]) throw new Error(`${label}: row ${r} out of range for ${x}`);
  const [y] = makeNode(label, [x], [{ shape: [rows.length, ...x.shape.slice(1)], dtype: x.dtype }], {
    encode(ctx) {
      const bytes = slab * dtypeBytes(x.dtype);
      rows.forEach((src, r) => ctx.copy(x, y, bytes, src * bytes, r * bytes));
    },
  });
  return y;
}

/** A view of the first elements of `x` with a smaller shape (same storage, no copy). */
function prefixView(x: Tensor, shape: number[]): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  if (n > x.size) throw new Error(`prefixView: [${shape}] is larger than ${x}`);
  const [y] = makeNode('prefix_view', [x], [{ shape, dtype: x.dtype }], { view: true });
  return y;
}

/** Self-attention q and k of one position from qkv [B,1,3·dl] as [2, B, H, 1, dh] (q first). */
function qkHeads(qkv: Tensor, H: number): Tensor {
  const [B, , dl3] = qkv.shape;
  const dl = dl3 / 3, dh = dl / H;
  const [y] = makeNode('qk_heads', [qkv], [{ shape: [2, B, H, 1, dh] }], {
    encode(ctx) {
      // Feature f = d·H + h within each of q, k (head is the inner factor, SPEC §3).
      stridedCopy(ctx, qkv, y, [2, B, H, dh], [dl, dl3, 1, H], [B * H * dh, H * dh, dh, 1]);
    },
  });
  return y;
}

/**
 * Writes this position's rotated key (from qkr [2·B·H,1,dh], k half) and value (from qkv,
 * head-split on the fly) into the caches [B,H,T,dh] in place, and returns the key mask
 * [1,1,T] for this position (1 for slots ≤ pos). Attention reads the mask, so it runs after
 * the write in the same submission.
 */
function appendKV(kc: Tensor, vc: Tensor, qkr: Tensor, qkv: Tensor, maskTable: Tensor, pos: number): Tensor {
  const [B, H, T, dh] = kc.shape;
  const dl = H * dh;
  const [mask] = makeNode('kv_append', [kc, vc, qkr, qkv, maskTable], [{ shape: [1, 1, T], dtype: maskTable.dtype }], {
    encode(ctx) {
      const dst = [H * T * dh, T * dh, 1];
      stridedCopy(ctx, qkr, kc, [B, H, dh], [H * dh, dh, 1], dst, B * H * dh, pos * dh);
      stridedCopy(ctx, qkv, vc, [B, H, dh], [3 * dl, 1, H], dst, 2 * dl, pos * dh);
      ctx.copy(maskTable, mask, T * 4, pos * T * 4, 0);
    },
  });
  return mask;
}

/** linear(x, W, b) for the few rows of a decoding step, x [B,1,din] (weights streamed once). */
function rowLinear(x: Tensor, W: Tensor, b?: Tensor): Tensor {
  const [B, s, din] = x.shape;
  return reshape(rowsLinear(reshape(x, [B * s, din]), W, b), [B, s, W.shape[0]]);
}

/** downNormUp (Linear → RMSNorm → Linear) with rowLinear. */
function rowDownNormUp(f: Forward, x: Tensor, p: string): Tensor {
  return rowLinear(rmsNorm(rowLinear(x, f.p(`${p}.0.weight`)), f.p(`${p}.1.weight`), 1e-6), f.p(`${p}.2.weight`));
}

/** Incremental decoder over B rows (images × hypotheses); rows may be regrouped between steps. */
export class CachedDecoder {
  /** Decode steps run by every decoder in this process (lets tests and benches check streaming). */
  static totalSteps = 0;
  /** Time every dispatch of each step (runtime's `lastProfile`), for profiling. */
  static profile = false;
  pos = 0;
  private img: ImageContext | null = null;
  /** Per-row copies of the image context (the per-image one when rows = images). */
  private rowCtx: ImageContext | null = null;
  /** Row → image index. */
  private rowImage: number[] = [];
  private kc: Tensor[] = [];
  private vc: Tensor[] = [];
  /** Parent row of each row for the next step (beam reorders, folded into the next step). */
  private pending: number[] | null = null;
  private maskTable: Tensor | null = null;
  private stacked: StackedExperts[] = [];

  constructor(readonly w: Weights, readonly trace = false) {}

  /** Rows currently decoded. */
  get rows(): number {
    return this.pending ? this.pending.length : this.rowImage.length;
  }

  /** Encodes the images and precomputes each layer's cross-attention keys/values. */
  async encode(image: Tensor): Promise<Tensor> {
    const cfg = this.w.cfg;
    const f = new Forward(this.w, { training: false });
    const enc = encodeImage(f, image).out;
    const ctx: ImageContext = { crossK: [], crossV: [], g: [] };
    this.stacked = [];
    for (let l = 0; l < cfg.num_layers; l++) {
      const p = `decoder.layers.${l}.gated_fusion`;
      const ni = rmsNorm(enc, f.p(`${p}.norm2.weight`), 1e-6);
      const kv = downNormUp(f, ni, `${p}.cross_attention.kv_down_norm_up`);
      const [k, v] = split(kv, [cfg.d_latent, cfg.d_latent], 2).map((t) => splitHeads(t, cfg.num_heads));
      ctx.crossK.push(rotary(k, f.p(`${p}.cross_attention.rope.freqs`), cfg.qk_nope_dim).keep());
      ctx.crossV.push(v.keep());
      ctx.g.push(linear(concat([mean(ni, 1, true), max(ni, 1, true)], 2), f.p(`${p}.global_proj.weight`), f.p(`${p}.global_proj.bias`)).keep());
      const mp = `decoder.layers.${l}.moe`;
      const st = stackExpertWeights(Array.from({ length: cfg.num_experts }, (_, e) => ({
        w1: f.p(`${mp}.experts.${e}.w1.weight`), w3: f.p(`${mp}.experts.${e}.w3.weight`), w2: f.p(`${mp}.experts.${e}.w2.weight`),
      })));
      this.stacked.push({ W1: st.W1.keep(), W3: st.W3.keep(), W2: st.W2.keep() });
    }
    enc.keep();
    const st = this.stacked.flatMap((s) => [s.W1, s.W3, s.W2]);
    await realize([enc, ...ctx.crossK, ...ctx.crossV, ...ctx.g, ...st], { label: 'encode image + cross K/V' });
    this.img = ctx;
    return enc;
  }

  /** Starts decoding with `rowsPerImage` rows per image (1 for greedy; beam search regroups later). */
  start(images: number, rowsPerImage: number): void {
    if (!this.img) throw new Error('CachedDecoder.start: call encode() first');
    if (images !== this.img.g[0].shape[0]) throw new Error(`CachedDecoder.start: ${images} images, but ${this.img.g[0].shape[0]} were encoded`);
    const cfg = this.w.cfg;
    this.disposeRows();
    this.rowImage = [];
    for (let i = 0; i < images; i++) for (let r = 0; r < rowsPerImage; r++) this.rowImage.push(i);
    const B = this.rowImage.length, H = cfg.num_heads, T = cfg.text_seq_len, dh = cfg.d_latent / H;
    // Zeroed caches: masked slots must hold finite values (0·NaN would poison P·V).
    // The caches hold keys/values in the model's element type (f16 models: half the memory).
    const dt = this.w.dtype, zeros = () => (dt === 'f16' ? new Uint16Array(B * H * T * dh) : new Float32Array(B * H * T * dh));
    this.kc = Array.from({ length: cfg.num_layers }, () => fromData(zeros(), [B, H, T, dh], dt, 'k_cache'));
    this.vc = Array.from({ length: cfg.num_layers }, () => fromData(zeros(), [B, H, T, dh], dt, 'v_cache'));
    if (!this.maskTable) {
      const m = new Float32Array(T * T);
      for (let i = 0; i < T; i++) for (let j = 0; j <= i; j++) m[i * T + j] = 1;
      this.maskTable = fromData(m, [T, T], 'f32', 'causal_rows');
    }
    this.rowCtx = this.gatherContext(this.rowImage);
    this.pending = null;
    this.pos = 0;
  }

  /** The per-row image context (lazy gathers, kept; realized by the next step). */
  private gatherContext(rowImage: number[]): ImageContext {
    const img = this.img!;
    const n = img.g[0].shape[0];
    if (rowImage.length === n && rowImage.every((im, r) => im === r)) return img;
    const g = (t: Tensor) => gatherSlabs(t, rowImage, 'rows_of_image').keep();
    return { crossK: img.crossK.map(g), crossV: img.crossV.map(g), g: img.g.map(g) };
  }

  private disposeRows(): void {
    for (const t of [...this.kc, ...this.vc]) dispose(t);
    this.kc = [];
    this.vc = [];
    if (this.rowCtx && this.rowCtx !== this.img) dispose(...this.rowCtx.crossK, ...this.rowCtx.crossV, ...this.rowCtx.g);
    this.rowCtx = null;
  }

  /**
   * Feeds one token per row (position `pos`) and returns the next-token logits [B, V]
   * (row-major) — one submission, plus the read-back.
   */
  async step(tokens: ArrayLike<number>): Promise<{ logits: Float32Array; trace: StepTrace | null }> {
    if (!this.img || !this.rowCtx) throw new Error('CachedDecoder: call encode() and start() first');
    const w = this.w, cfg = w.cfg;
    const B = this.rows;
    if (tokens.length !== B) throw new Error(`CachedDecoder.step: ${tokens.length} tokens for ${B} rows`);
    if (this.pos >= cfg.text_seq_len) throw new Error(`CachedDecoder.step: position ${this.pos} exceeds text_seq_len ${cfg.text_seq_len}`);
    const pos = this.pos;
    const old: Tensor[] = [];
    if (this.pending) {
      const parents = this.pending;
      old.push(...this.kc, ...this.vc);
      this.kc = this.kc.map((t) => gatherSlabs(t, parents, 'reorder_k_cache').keep());
      this.vc = this.vc.map((t) => gatherSlabs(t, parents, 'reorder_v_cache').keep());
      const rowImage = parents.map((p) => this.rowImage[p]);
      if (rowImage.join() !== this.rowImage.join()) {
        if (this.rowCtx !== this.img) old.push(...this.rowCtx.crossK, ...this.rowCtx.crossV, ...this.rowCtx.g);
        this.rowCtx = this.gatherContext(rowImage);
        this.rowImage = rowImage;
      }
      this.pending = null;
    }
    const rc = this.rowCtx;
    const f = new Forward(w, { training: false });
    const d = cfg.d_model, H = cfg.num_heads, dl = cfg.d_latent, dh = dl / H;
    const scaleF = 1 / Math.sqrt(cfg.qk_nope_dim + cfg.qk_rope_dim);
    const ids = fromData(Int32Array.from(tokens), [B, 1], 'i32');
    let x = add(scale(embedding(ids, f.p('text_embs.embedding.weight')), Math.sqrt(d)), slice(f.p('text_embs.pe.pe'), 1, pos, 1));
    const trace: StepTrace = { cross: [], self: [], experts: [] };
    for (let l = 0; l < cfg.num_layers; l++) {
      const p = `decoder.layers.${l}`;
      // Masked self-attention over the cache: this position's k/v are written in place first.
      const qkv = rowDownNormUp(f, rmsNorm(x, f.p(`${p}.norm_sa.weight`), 1e-6), `${p}.self_attention.qkv_down_norm_up`);
      const qkr = rotary(reshape(qkHeads(qkv, H), [2 * B * H, 1, dh]), f.p(`${p}.self_attention.rope.freqs`), cfg.qk_nope_dim, pos);
      const mask = appendKV(this.kc[l], this.vc[l], qkr, qkv, this.maskTable!, pos);
      const sa = attention(prefixView(qkr, [B, H, 1, dh]), this.kc[l], this.vc[l], { scale: scaleF, mask, keepProbs: this.trace });
      // One query row: [B,H,1,dh] is already the merged-heads layout h·dh + d.
      const s = add(x, rowLinear(reshape(sa.out, [B, 1, dl]), f.p(`${p}.self_attention.wo.weight`)));
      // Gated fusion with the per-row cross K/V.
      const gp = `${p}.gated_fusion`;
      const nx = rmsNorm(s, f.p(`${gp}.norm1.weight`), 1e-6);
      const cq = rotary(splitHeads(rowDownNormUp(f, nx, `${gp}.cross_attention.q_down_norm_up`), H), f.p(`${gp}.cross_attention.rope.freqs`), cfg.qk_nope_dim, pos);
      const ca = attention(cq, rc.crossK[l], rc.crossV[l], { scale: scaleF, keepProbs: this.trace });
      const a = add(rowLinear(reshape(ca.out, [B, 1, dl]), f.p(`${gp}.cross_attention.wo.weight`)), s);
      const na = rmsNorm(a, f.p(`${gp}.norm3.weight`), 1e-6);
      const gh = activation(cfg.act_fn, rowLinear(concat([na, nx], 2), f.p(`${gp}.gate.0.weight`), f.p(`${gp}.gate.0.bias`)));
      const gate = sigmoid(rowLinear(gh, f.p(`${gp}.gate.2.weight`), f.p(`${gp}.gate.2.bias`)));
      const gated = add(nx, mul(gate, sub(na, nx)));
      const fin = concat([gated, na, rc.g[l]], 2);
      const h = rowLinear(activation(cfg.act_fn, rowLinear(fin, f.p(`${gp}.fusion.0.weight`), f.p(`${gp}.fusion.0.bias`))), f.p(`${gp}.fusion.3.weight`), f.p(`${gp}.fusion.3.bias`));
      const fo = add(s, add(h, a));
      // Modulated MoE on this position's B tokens, with the experts stacked once in encode().
      const xm = reshape(rmsNorm(fo, f.p(`${p}.norm_moe.weight`), 1e-6), [B, d]);
      const route = topkGate(xm, f.p(`${p}.moe.gate.gate.weight`), cfg.k);
      const y = expertsForRows(xm, route.indices, route.weights, this.stacked[l], cfg.act_fn, cfg.moe_mode);
      x = add(fo, reshape(y, [B, 1, d]));
      if (this.trace) {
        trace.self.push(slice(sa.probs!, 3, 0, pos + 1));
        trace.cross.push(ca.probs!);
        trace.experts.push({ indices: route.indices, weights: route.weights });
      }
    }
    const logits = reshape(rowLinear(rmsNorm(x, f.p('gen_logits.0.weight'), 1e-6), f.p('gen_logits.1.weight')), [B, cfg.vocab_size]);
    const keepers = [logits, ...this.kc, ...this.vc, ...rc.crossK, ...rc.crossV, ...rc.g];
    if (this.trace) keepers.push(...trace.self, ...trace.cross, ...trace.experts.flatMap((e) => [e.indices, e.weights]));
    await realize(keepers, { label: `decode step ${pos}`, profile: CachedDecoder.profile });
    dispose(...old);
    this.pos++;
    CachedDecoder.totalSteps++;
    const out = (await read(logits)) as Float32Array;
    dispose(logits, ids);
    return { logits: out, trace: this.trace ? trace : null };
  }

  /**
   * Regroups rows (beam search): row r of the next step continues old row `parents[r]`;
   * the number of rows may change. Applied inside the next step's submission.
   */
  reorder(parents: number[]): Promise<void> {
    const n = this.rows;
    for (const p of parents) if (!Number.isInteger(p) || p < 0 || p >= n) throw new Error(`CachedDecoder.reorder: parent ${p} out of range (${n} rows)`);
    const composed = this.pending ? parents.map((p) => this.pending![p]) : parents;
    const identity = composed.length === this.rowImage.length && composed.every((p, r) => p === r);
    this.pending = identity ? null : composed;
    return Promise.resolve();
  }

  dispose(): void {
    this.disposeRows();
    if (this.img) dispose(...this.img.crossK, ...this.img.crossV, ...this.img.g);
    for (const s of this.stacked) dispose(s.W1, s.W3, s.W2);
    dispose(this.maskTable);
    this.maskTable = null;
    this.stacked = [];
    this.img = null;
  }
}
