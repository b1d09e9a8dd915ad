// The whole MicarVLMoE CaptionModel: image → MSVE → projection → encoder; text → embedding →
// decoder (masked MHLA, gated fusion, MoE) → logits; loss = CE + λ·load-balancing.
import type { Tensor } from '../graph/tensor.ts';
import { fromData } from '../graph/runtime.ts';
import { linear } from '../graph/ops/matmul.ts';
import { rmsNorm } from '../graph/ops/norm.ts';
import { embedding } from '../graph/ops/embedding.ts';
import { crossEntropy } from '../graph/ops/loss.ts';
import { add, scale } from '../graph/ops/elementwise.ts';
import { reshape, slice } from '../graph/ops/shape.ts';
import { cast } from '../graph/ops/cast.ts';
import type { MicarConfig } from './config.ts';
import { Forward, type ForwardOptions } from './context.ts';
import { visionEncoder } from './vision.ts';
import { type DecoderLayerCache, decoderLayer, type DecoderLayerOut, encoderLayer } from './blocks.ts';
import type { Weights } from './weights.ts';

export interface ImageEncoding {
  msve: Tensor;
  proj: Tensor;
  layers: Tensor[];
  out: Tensor;
  attn: (Tensor | null)[];
}

export function encodeImage(f: Forward, image: Tensor): ImageEncoding {
  const cfg = f.w.cfg;
  if (image.rank !== 4 || image.shape[1] !== 3) throw new Error(`encodeImage: image must be [b,3,H,W], got ${image}`);
  const msve = visionEncoder(f, cfg, image);
  const proj = linear(rmsNorm(msve, f.p('proj.0.weight'), 1e-6), f.p('proj.1.weight'), f.p('proj.1.bias'));
  let x = proj;
  const layers: Tensor[] = [], attn: (Tensor | null)[] = [];
  for (let l = 0; l < cfg.num_layers; l++) {
    const r = encoderLayer(f, cfg, x, l);
    x = r.out;
    layers.push(x);
    attn.push(r.attn);
  }
  return { msve, proj, layers, out: x, attn };
}

/** Token embedding · sqrt(d_model) + positions pos..pos+T−1, then dropout. */
export function embedText(f: Forward, ids: Tensor, pos = 0): Tensor {
  const cfg = f.w.cfg;
  const T = ids.shape[1];
  if (pos + T > cfg.text_seq_len) throw new Error(`embedText: positions ${pos}..${pos + T - 1} exceed text_seq_len ${cfg.text_seq_len}`);
  const pe = f.p('text_embs.pe.pe');
  const pes = pos === 0 && T === pe.shape[1] ? pe : slice(pe, 1, pos, T);
  return f.dropout(add(scale(embedding(ids, f.p('text_embs.embedding.weight')), Math.sqrt(cfg.d_model)), pes), cfg.dropout);
}

/** Decoder self-attention mask [b, T, T]: (j ≤ i) ∧ pad_mask[b, j]. */
export function decoderMask(padMask: ArrayLike<number>, b: number, T: number): Tensor {
  const m = new Float32Array(b * T * T);
  for (let s = 0; s < b; s++)
    for (let i = 0; i < T; i++)
      for (let j = 0; j <= i; j++) m[(s * T + i) * T + j] = padMask[s * T + j] ? 1 : 0;
  return fromData(m, [b, T, T], 'f32', 'decoder_mask');
}

export interface TextDecoding {
  emb: Tensor;
  layers: DecoderLayerOut[];
  out: Tensor;
  logits: Tensor;
  /** Mean over decoder layers of the load-balancing loss. */
  lb: Tensor;
}

/**
 * The decoder over ids [b, T] attending to image tokens `img` with self-attention mask [b, T, T];
 * or, with `cache` (cached decoding), one token per row at position `cache.pos` against each
 * layer's cache (img and mask unused).
 */
export function decodeText(f: Forward, img: Tensor | null, ids: Tensor, mask: Tensor | null, cache?: DecoderCache): TextDecoding {
  const cfg = f.w.cfg;
  if (cache && cache.layers.length !== cfg.num_layers) throw new Error(`decodeText: cache has ${cache.layers.length} layers, the model ${cfg.num_layers}`);
  const emb = embedText(f, ids, cache?.pos ?? 0);
  let x = emb;
  const layers: DecoderLayerOut[] = [];
  let lb: Tensor | null = null;
  for (let l = 0; l < cfg.num_layers; l++) {
    const r = decoderLayer(f, cfg, x, img, mask ?? undefined, l, cache?.layers[l]);
    layers.push(r);
    x = r.out;
    lb = lb ? add(lb, r.moe.lb) : r.moe.lb;
  }
  const logits = linear(rmsNorm(x, f.p('gen_logits.0.weight'), 1e-6), f.p('gen_logits.1.weight'));
  return { emb, layers, out: x, logits, lb: scale(lb!, 1 / cfg.num_layers) };
}

/** Every decoder layer's cache at one decoding position. */
export interface DecoderCache {
  pos: number;
  layers: DecoderLayerCache[];
}

export interface Batch {
  image: Tensor; // [b,3,S,S]
  inputIds: Tensor; // i32 [b,T]
  labelIds: Tensor; // i32 [b,T]
  padMask: ArrayLike<number>; // [b·T] on the CPU (builds the mask)
}

export interface ModelOutput {
  f: Forward;
  enc: ImageEncoding;
  dec: TextDecoding;
  xe: Tensor;
  loss: Tensor;
}

/** Full forward with loss, as the authors' training step computes it. */
export function forward(w: Weights, batch: Batch, opts: ForwardOptions = {}): ModelOutput {
  const f = new Forward(w, opts);
  const cfg: MicarConfig = w.cfg;
  const [b, T] = batch.inputIds.shape;
  const enc = encodeImage(f, batch.image);
  const dec = decodeText(f, enc.out, batch.inputIds, decoderMask(batch.padMask, b, T));
  const xe = crossEntropy(reshape(dec.logits, [b * T, cfg.vocab_size]), reshape(batch.labelIds, [b * T]), cfg.pad_id);
  // The loss is f32 whatever the compute type (cross entropy accumulates and returns f32).
  const loss = add(xe, scale(cast(dec.lb, 'f32'), cfg.lb_loss_weight));
  return { f, enc, dec, xe, loss };
}
