// Report generation with a key/value cache: the image is encoded once, every decoder layer's
// cross-attention keys/values (and the global image vector) are computed once per image,
// and self-attention keys/values are cached, so each new token costs one position.
import type { Tensor } from '../graph/tensor.ts';
import { dispose, fromData, read, realize } from '../graph/runtime.ts';
import { linear } from '../graph/ops/matmul.ts';
import { rmsNorm } from '../graph/ops/norm.ts';
import { rotary } from '../graph/ops/rotary.ts';
import { attention } from '../graph/ops/attention.ts';
import { embedding } from '../graph/ops/embedding.ts';
import { activation, add, expandTo, mul, scale, sigmoid, sub } from '../graph/ops/elementwise.ts';
import { max, mean } from '../graph/ops/reduce.ts';
import { concat, reshape, slice, split } from '../graph/ops/shape.ts';
import { Forward } from '../model/context.ts';
import { encodeImage } from '../model/micar.ts';
import { downNormUp, mergeHeads, splitHeads } from '../model/attention.ts';
import { moe } from '../model/blocks.ts';
import type { Weights } from '../model/weights.ts';

export interface StepTrace {
  /** Cross-attention per layer [B, H, 1, 49] (when tracing). */
  cross: Tensor[];
  /** Self-attention per layer [B, H, 1, t+1]. */
  self: Tensor[];
  /** MoE routing per layer: indices [B, k], weights [B, k]. */
  experts: { indices: Tensor; weights: Tensor }[];
}

interface LayerCache {
  k: Tensor | null; // [B, H, t, dh] rotated keys so far
  v: Tensor | null;
}

interface ImageContext {
  crossK: Tensor[]; // per layer [b, H, 49, dh] (rotated)
  crossV: Tensor[];
  g: Tensor[]; // per layer [b, 1, d] global image vector
}

/** Incremental decoder over a batch of B = images × beams rows. */
export class CachedDecoder {
  private caches: LayerCache[] = [];
  private img: ImageContext | null = null;
  /** Row → image index (beams of one image share its cross K/V). */
  private rowImage: number[] = [];
  pos = 0;

  constructor(readonly w: Weights, readonly trace = false) {}

  /** Encodes the images and precomputes each layer's cross-attention keys/values. */
  async encode(image: Tensor): Promise<Tensor> {
    const cfg = this.w.cfg;
    const f = new Forward(this.w, { training: false });
    const enc = encodeImage(f, image).out;
    const ctx: ImageContext = { crossK: [], crossV: [], g: [] };
    for (let l = 0; l < cfg.num_layers; l++) {
      const p = `decoder.layers.${l}.gated_fusion`;
      const ni = rmsNorm(enc, f.p(`${p}.norm2.weight`), 1e-6);
      const kv = downNormUp(f, ni, `${p}.cross_attention.kv_down_norm_up`);
      const [k, v] = split(kv, [cfg.d_latent, cfg.d_latent], 2).map((t) => splitHeads(t, cfg.num_heads));
      ctx.crossK.push(rotary(k, f.p(`${p}.cross_attention.rope.freqs`), cfg.qk_nope_dim).keep());
      ctx.crossV.push(v.keep());
      ctx.g.push(linear(concat([mean(ni, 1, true), max(ni, 1, true)], 2), f.p(`${p}.global_proj.weight`), f.p(`${p}.global_proj.bias`)).keep());
    }
    enc.keep();
    await realize([enc, ...ctx.crossK, ...ctx.crossV, ...ctx.g], { label: 'encode image + cross K/V' });
    this.img = ctx;
    return enc;
  }

  /** Starts decoding with `rows` rows per image (1 for greedy; beams for beam search). */
  start(images: number, rowsPerImage: number): void {
    this.rowImage = [];
    for (let i = 0; i < images; i++) for (let r = 0; r < rowsPerImage; r++) this.rowImage.push(i);
    this.caches = Array.from({ length: this.w.cfg.num_layers }, () => ({ k: null, v: null }));
    this.pos = 0;
  }

  /** Per-row view of a per-image tensor (gathers rows when beams share an image). */
  private perRow(t: Tensor): Tensor {
    const n = t.shape[0];
    const identity = this.rowImage.length === n && this.rowImage.every((im, r) => im === r);
    if (identity) return t;
    return concat(this.rowImage.map((im) => slice(t, 0, im, 1)), 0);
  }

  /**
   * Feeds one token per row (position `pos`) and returns the next-token logits [B, V].
   * Caches are realized and kept; the previous ones are freed.
   */
  async step(tokens: ArrayLike<number>): Promise<{ logits: Float32Array; trace: StepTrace | null }> {
    if (!this.img) throw new Error('CachedDecoder: call encode() first');
    const w = this.w, cfg = w.cfg;
    const B = this.rowImage.length;
    if (tokens.length !== B) throw new Error(`CachedDecoder.step: ${tokens.length} tokens for ${B} rows`);
    if (this.pos >= cfg.text_seq_len) throw new Error(`CachedDecoder.step: position ${this.pos} exceeds text_seq_len ${cfg.text_seq_len}`);
    const f = new Forward(w, { training: false, keepAttention: this.trace });
    const d = cfg.d_model, H = cfg.num_heads, dl = cfg.d_latent;
    const scaleF = 1 / Math.sqrt(cfg.qk_nope_dim + cfg.qk_rope_dim);
    const ids = fromData(Int32Array.from(tokens), [B, 1], 'i32');
    let x = add(scale(embedding(ids, f.p('text_embs.embedding.weight')), Math.sqrt(d)), slice(f.p('text_embs.pe.pe'), 1, this.pos, 1));
    const trace: StepTrace = { cross: [], self: [], experts: [] };
    const newCaches: LayerCache[] = [];
    for (let l = 0; l < cfg.num_layers; l++) {
      const p = `decoder.layers.${l}`;
      // Masked self-attention over the cache (every cached key is ≤ the current position).
      const qkv = downNormUp(f, rmsNorm(x, f.p(`${p}.norm_sa.weight`), 1e-6), `${p}.self_attention.qkv_down_norm_up`);
      const [q, k, v] = split(qkv, [dl, dl, dl], 2).map((t) => splitHeads(t, H));
      const freqs = f.p(`${p}.self_attention.rope.freqs`);
      const qr = rotary(q, freqs, cfg.qk_nope_dim, this.pos);
      const kr = rotary(k, freqs, cfg.qk_nope_dim, this.pos);
      const c = this.caches[l];
      const K = c.k ? concat([c.k, kr], 2) : kr;
      const V = c.v ? concat([c.v, v], 2) : v;
      newCaches.push({ k: K, v: V });
      const sa = attention(qr, K, V, { scale: scaleF, keepProbs: this.trace });
      const s = add(x, linear(mergeHeads(sa.out), f.p(`${p}.self_attention.wo.weight`)));
      // Gated fusion with the per-image cross K/V.
      const gp = `${p}.gated_fusion`;
      const nx = rmsNorm(s, f.p(`${gp}.norm1.weight`), 1e-6);
      const cq = rotary(splitHeads(downNormUp(f, nx, `${gp}.cross_attention.q_down_norm_up`), H), f.p(`${gp}.cross_attention.rope.freqs`), cfg.qk_nope_dim, this.pos);
      const ca = attention(cq, this.perRow(this.img.crossK[l]), this.perRow(this.img.crossV[l]), { scale: scaleF, keepProbs: this.trace });
      const a = add(linear(mergeHeads(ca.out), f.p(`${gp}.cross_attention.wo.weight`)), s);
      const na = rmsNorm(a, f.p(`${gp}.norm3.weight`), 1e-6);
      const gh = activation(cfg.act_fn, linear(concat([na, nx], 2), f.p(`${gp}.gate.0.weight`), f.p(`${gp}.gate.0.bias`)));
      const gate = sigmoid(linear(gh, f.p(`${gp}.gate.2.weight`), f.p(`${gp}.gate.2.bias`)));
      const gated = add(nx, mul(gate, sub(na, nx)));
      const fin = concat([gated, na, expandTo(this.perRow(this.img.g[l]), [B, 1, d])], 2);
      const h = linear(activation(cfg.act_fn, linear(fin, f.p(`${gp}.fusion.0.weight`), f.p(`${gp}.fusion.0.bias`))), f.p(`${gp}.fusion.3.weight`), f.p(`${gp}.fusion.3.bias`));
      const fo = add(s, add(h, a));
      const m = moe(f, cfg, rmsNorm(fo, f.p(`${p}.norm_moe.weight`), 1e-6), `${p}.moe`);
      x = add(fo, m.out);
      if (this.trace) {
        trace.self.push(sa.probs!);
        trace.cross.push(ca.probs!);
        trace.experts.push({ indices: m.indices, weights: m.weights });
      }
    }
    const logits = reshape(linear(rmsNorm(x, f.p('gen_logits.0.weight'), 1e-6), f.p('gen_logits.1.weight')), [B, cfg.vocab_size]);
    const keepers = [logits, ...newCaches.flatMap((c) => [c.k!, c.v!])];
    if (this.trace) keepers.push(...trace.self, ...trace.cross, ...trace.experts.flatMap((e) => [e.indices, e.weights]));
    await realize(keepers, { label: `decode step ${this.pos}` });
    for (const c of this.caches) dispose(c.k, c.v);
    this.caches = newCaches;
    this.pos++;
    const out = (await read(logits)) as Float32Array;
    dispose(logits, ids);
    return { logits: out, trace: this.trace ? trace : null };
  }

  /** Reorders rows (beam search): row r continues from old row `parents[r]`. */
  async reorder(parents: number[]): Promise<void> {
    if (parents.every((p, r) => p === r)) return;
    const next = this.caches.map((c) => ({
      k: concat(parents.map((p) => slice(c.k!, 0, p, 1)), 0),
      v: concat(parents.map((p) => slice(c.v!, 0, p, 1)), 0),
    }));
    await realize(next.flatMap((c) => [c.k, c.v]), { label: 'reorder beams' });
    for (const c of this.caches) dispose(c.k, c.v);
    this.caches = next;
    this.rowImage = parents.map((p) => this.rowImage[p]);
  }

  dispose(): void {
    for (const c of this.caches) dispose(c.k, c.v);
    if (this.img) dispose(...this.img.crossK, ...this.img.crossV, ...this.img.g);
    this.caches = [];
    this.img = null;
  }
}

