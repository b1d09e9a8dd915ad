// Multi-head latent attention (SPEC §3) and its cross-attention variant (SPEC §4).
import type { Tensor } from '../graph/tensor.ts';
import { linear, matmul } from '../graph/ops/matmul.ts';
import { rmsNorm } from '../graph/ops/norm.ts';
import { rotary } from '../graph/ops/rotary.ts';
import { attention } from '../graph/ops/attention.ts';
import { softmax } from '../graph/ops/softmax.ts';
import { scale } from '../graph/ops/elementwise.ts';
import { permute, reshape, split } from '../graph/ops/shape.ts';
import type { MicarConfig } from './config.ts';
import type { Forward } from './context.ts';
import type { SelfAttentionCache } from './kvcache.ts';

/** Linear → RMSNorm → Linear, all without bias (`*_down_norm_up`). */
export function downNormUp(f: Forward, x: Tensor, p: string): Tensor {
  return linear(rmsNorm(linear(x, f.p(`${p}.0.weight`)), f.p(`${p}.1.weight`), 1e-6), f.p(`${p}.2.weight`));
}

/** [b, s, d_latent] → [b, H, s, dh] with feature f = d·H + h (head is the inner factor). */
export function splitHeads(x: Tensor, H: number): Tensor {
  const [b, s, dl] = x.shape;
  return permute(reshape(x, [b, s, dl / H, H]), [0, 3, 1, 2]);
}

/** [b, H, s, dh] → [b, s, H·dh] with feature h·dh + d (head is the outer factor). */
export function mergeHeads(x: Tensor): Tensor {
  const [b, H, s, dh] = x.shape;
  return reshape(permute(x, [0, 2, 1, 3]), [b, s, H * dh]);
}

export interface AttentionResult {
  out: Tensor;
  probs: Tensor | null;
}

/** Scaled dot-product attention; unfused with attention dropout in training or when gradients must reach the probabilities. */
export function scaledAttention(f: Forward, cfg: MicarConfig, q: Tensor, k: Tensor, v: Tensor, mask?: Tensor): AttentionResult {
  const scaleF = 1 / Math.sqrt(cfg.qk_nope_dim + cfg.qk_rope_dim);
  if ((f.training && cfg.attention_dropout > 0) || f.differentiableAttention) {
    const [b, H, sq, dh] = q.shape, sk = k.shape[2];
    const scores = scale(matmul(reshape(q, [b * H, sq, dh]), reshape(k, [b * H, sk, dh]), { transB: true }), scaleF);
    const m = mask ? reshape(mask, [b, 1, sq, sk]) : undefined;
    const probs = softmax(reshape(scores, [b, H, sq, sk]), m);
    const dropped = f.dropout(probs, cfg.attention_dropout);
    const out = reshape(matmul(reshape(dropped, [b * H, sq, sk]), reshape(v, [b * H, sk, v.shape[3]])), [b, H, sq, v.shape[3]]);
    return { out, probs: f.keepAttention ? probs : null };
  }
  return attention(q, k, v, { scale: scaleF, mask, keepProbs: f.keepAttention });
}

/**
 * MHLA self-attention over x [b, s, d_model]; mask [b, s, s] (1 keep) or none. With `cache`
 * (cached decoding, s = 1) this position's keys/values are appended to the cache and the query
 * attends over every cached position instead.
 */
export function mhla(f: Forward, cfg: MicarConfig, x: Tensor, p: string, mask?: Tensor, cache?: SelfAttentionCache): AttentionResult {
  const H = cfg.num_heads, dl = cfg.d_latent;
  const qkv = downNormUp(f, x, `${p}.qkv_down_norm_up`);
  const freqs = f.p(`${p}.rope.freqs`);
  let att: AttentionResult;
  if (cache) {
    const c = cache.append(qkv, freqs, cfg.qk_nope_dim);
    att = scaledAttention(f, cfg, c.q, c.k, c.v, c.mask);
  } else {
    const [q, k, v] = split(qkv, [dl, dl, dl], 2).map((t) => splitHeads(t, H));
    att = scaledAttention(f, cfg, rotary(q, freqs, cfg.qk_nope_dim), rotary(k, freqs, cfg.qk_nope_dim), v, mask);
  }
  return { out: linear(mergeHeads(att.out), f.p(`${p}.wo.weight`)), probs: att.probs };
}

/** Keys [b, H, n, dh] (rotated) and values [b, H, n, dh] of attention. */
export interface KeysValues {
  k: Tensor;
  v: Tensor;
}

/** CMHLA's keys/values of image tokens [b, 49, d] (computed once per image when decoding). */
export function crossKeysValues(f: Forward, cfg: MicarConfig, img: Tensor, p: string): KeysValues {
  const H = cfg.num_heads, dl = cfg.d_latent;
  const kv = downNormUp(f, img, `${p}.kv_down_norm_up`);
  const [k, v] = split(kv, [dl, dl], 2).map((t) => splitHeads(t, H));
  return { k: rotary(k, f.p(`${p}.rope.freqs`), cfg.qk_nope_dim), v };
}

/** CMHLA: text queries [b, T, d] at positions pos.. over the image's keys/values; no mask. */
export function cmhla(f: Forward, cfg: MicarConfig, text: Tensor, kv: KeysValues, p: string, pos = 0): AttentionResult {
  const q = splitHeads(downNormUp(f, text, `${p}.q_down_norm_up`), cfg.num_heads);
  const att = scaledAttention(f, cfg, rotary(q, f.p(`${p}.rope.freqs`), cfg.qk_nope_dim, pos), kv.k, kv.v, f.crossMask);
  return { out: linear(mergeHeads(att.out), f.p(`${p}.wo.weight`)), probs: att.probs };
}
