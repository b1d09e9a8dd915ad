// Encoder and decoder layers (SPEC §2, §4, §5): pre-norm residual blocks, gated
// cross-aligned fusion and the modulated mixture of experts.
import type { Tensor } from '../graph/tensor.ts';
import { linear } from '../graph/ops/matmul.ts';
import { rmsNorm } from '../graph/ops/norm.ts';
import { activation, add, expandTo, mul, sigmoid, sub } from '../graph/ops/elementwise.ts';
import { concat, reshape, slice } from '../graph/ops/shape.ts';
import { max, mean } from '../graph/ops/reduce.ts';
import { loadBalancingLoss, moeExperts, stackExpertWeights, topkGate } from '../graph/ops/moe.ts';
import { expertsForRows, type StackedExperts } from '../graph/ops/matvec.ts';
import type { MicarConfig } from './config.ts';
import type { Forward } from './context.ts';
import { cmhla, crossKeysValues, type KeysValues, mhla } from './attention.ts';
import type { SelfAttentionCache } from './kvcache.ts';

const norm = (f: Forward, x: Tensor, p: string) => rmsNorm(x, f.p(`${p}.weight`), 1e-6);

/** Gated FFN w2(act(w1 x) ⊙ w3 x), no biases, dropout on the output (authors' FeedForward). */
export function feedForward(f: Forward, cfg: MicarConfig, x: Tensor, p: string): Tensor {
  const h = mul(activation(cfg.act_fn, linear(x, f.p(`${p}.w1.weight`))), linear(x, f.p(`${p}.w3.weight`)));
  return f.dropout(linear(h, f.p(`${p}.w2.weight`)), cfg.dropout);
}

export interface EncoderLayerOut {
  out: Tensor;
  attn: Tensor | null;
}

export function encoderLayer(f: Forward, cfg: MicarConfig, x: Tensor, l: number): EncoderLayerOut {
  const p = `encoder.layers.${l}`;
  let h = x, attn: Tensor | null = null;
  // EXPERIMENT (config.ts), not the SPEC model: with local_tokens_experiment no token mixing, the FFN alone.
  if (!cfg.local_tokens_experiment) {
    const sa = mhla(f, cfg, norm(f, x, `${p}.norm_sa`), `${p}.self_attention`, f.encoderMask);
    h = add(x, sa.out);
    attn = sa.probs;
  }
  return { out: add(h, feedForward(f, cfg, norm(f, h, `${p}.norm_ff`), `${p}.ff`)), attn };
}

export interface FusionOut {
  out: Tensor;
  cross: Tensor | null;
}

/** What each decoder layer's gated fusion reads of an image: cross-attention keys/values and the global vector [b, 1, d]. */
export interface ImageContext {
  cross: KeysValues;
  global: Tensor;
}

/** [mean, max] of the image tokens [b, 49, d] over the tokens, projected: [b, 1, d]. */
function globalVector(f: Forward, ni: Tensor, p: string): Tensor {
  return linear(concat([mean(ni, 1, true), max(ni, 1, true)], 2), f.p(`${p}.global_proj.weight`), f.p(`${p}.global_proj.bias`));
}

/** Decoder layer l's image context from the encoded image tokens [b, 49, d] (once per image when decoding). */
export function imageContext(f: Forward, cfg: MicarConfig, img: Tensor, l: number): ImageContext {
  const p = `decoder.layers.${l}.gated_fusion`;
  const ni = norm(f, img, `${p}.norm2`);
  return { cross: crossKeysValues(f, cfg, ni, `${p}.cross_attention`), global: globalVector(f, ni, p) };
}

/**
 * Gated cross-aligned fusion; returns fusion(...) + a, where a = CMHLA(...) + x. `image` is the
 * image tokens [b, 49, d] or their precomputed context (cached decoding, text at position `pos`).
 */
export function gatedFusion(f: Forward, cfg: MicarConfig, x: Tensor, image: Tensor | ImageContext, p: string, pos = 0): FusionOut {
  const [b, T, d] = x.shape;
  const nx = norm(f, x, `${p}.norm1`);
  let ctx: ImageContext;
  if ('global' in image) ctx = image;
  else {
    const ni = norm(f, image, `${p}.norm2`);
    const rolled = f.swapImagePath && b > 1 ? concat([slice(ni, 0, 1, b - 1), slice(ni, 0, 0, 1)], 0) : ni;
    ctx = {
      cross: crossKeysValues(f, cfg, f.swapImagePath === 'cross' ? rolled : ni, `${p}.cross_attention`),
      global: globalVector(f, f.swapImagePath === 'global' ? rolled : ni, p),
    };
  }
  const ca = cmhla(f, cfg, nx, ctx.cross, `${p}.cross_attention`, pos);
  const a = add(ca.out, x);
  const g = ctx.global; // [b,1,d]
  const na = norm(f, a, `${p}.norm3`);
  const gateHidden = activation(cfg.act_fn, linear(concat([na, nx], 2), f.p(`${p}.gate.0.weight`), f.p(`${p}.gate.0.bias`)));
  const gate = sigmoid(linear(gateHidden, f.p(`${p}.gate.2.weight`), f.p(`${p}.gate.2.bias`)));
  // gate·na + (1 − gate)·nx = nx + gate·(na − nx)
  const gated = add(nx, mul(gate, sub(na, nx)));
  const fusedIn = concat([gated, na, expandTo(g, [b, T, d])], 2);
  let h = f.dropout(activation(cfg.act_fn, linear(fusedIn, f.p(`${p}.fusion.0.weight`), f.p(`${p}.fusion.0.bias`))), cfg.dropout);
  h = f.dropout(linear(h, f.p(`${p}.fusion.3.weight`), f.p(`${p}.fusion.3.bias`)), cfg.dropout);
  return { out: add(h, a), cross: ca.probs };
}

export interface MoeOut {
  out: Tensor;
  lb: Tensor;
  probs: Tensor;
  indices: Tensor;
  weights: Tensor;
}

/** The experts of a MoE layer stacked once (cached decoding reuses them every step). */
export function stackedExperts(f: Forward, cfg: MicarConfig, l: number): StackedExperts {
  return stackExpertWeights(expertWeights(f, cfg, `decoder.layers.${l}.moe`));
}

function expertWeights(f: Forward, cfg: MicarConfig, p: string) {
  return Array.from({ length: cfg.num_experts }, (_, e) => ({
    w1: f.p(`${p}.experts.${e}.w1.weight`),
    w3: f.p(`${p}.experts.${e}.w3.weight`),
    w2: f.p(`${p}.experts.${e}.w2.weight`),
  }));
}

/**
 * Modulated MoE over x [b, T, d]. With `stacked` (cached decoding: a few rows, inference) only
 * the selected experts' weights are read, by the few-row kernel.
 */
export function moe(f: Forward, cfg: MicarConfig, x: Tensor, p: string, stacked?: StackedExperts): MoeOut {
  const [b, T, d] = x.shape;
  const flat = reshape(x, [b * T, d]);
  const route = topkGate(flat, f.p(`${p}.gate.gate.weight`), cfg.k);
  // The authors' experts end in dropout: one mask per (token, expert) output, before combining.
  const y = stacked
    ? expertsForRows(flat, route.indices, route.weights, stacked, cfg.act_fn, cfg.moe_mode)
    : moeExperts(flat, route, expertWeights(f, cfg, p), cfg.act_fn, cfg.moe_mode, { expertOutput: (ye) => f.dropout(ye, cfg.dropout) });
  return { out: reshape(y, [b, T, d]), lb: loadBalancingLoss(route.probs), ...route };
}

export interface DecoderLayerOut {
  out: Tensor;
  self: Tensor | null;
  cross: Tensor | null;
  moe: MoeOut;
}

/** A decoder layer's state for cached decoding (one position per step, see generate/generator.ts). */
export interface DecoderLayerCache {
  self: SelfAttentionCache;
  image: ImageContext;
  experts: StackedExperts;
}

/**
 * Decoder layer l over x [b, T, d] with image tokens `img` [b, 49, d] and self-attention mask
 * [b, T, T]; or, with `cache`, one position per row (T = 1) against the cache (img, mask unused).
 */
export function decoderLayer(f: Forward, cfg: MicarConfig, x: Tensor, img: Tensor | null, mask: Tensor | undefined, l: number, cache?: DecoderLayerCache): DecoderLayerOut {
  const p = `decoder.layers.${l}`;
  if (!cache && !img) throw new Error('decoderLayer: image tokens or a cache are needed');
  if (cache && (f.training || f.differentiableAttention)) throw new Error('decoderLayer: the key/value cache is for inference (training or differentiable attention is on)');
  const sa = mhla(f, cfg, norm(f, x, `${p}.norm_sa`), `${p}.self_attention`, mask, cache?.self);
  const s = add(x, sa.out);
  const gf = gatedFusion(f, cfg, s, cache ? cache.image : img!, `${p}.gated_fusion`, cache?.self.pos ?? 0);
  const fo = add(s, gf.out);
  const m = moe(f, cfg, norm(f, fo, `${p}.norm_moe`), `${p}.moe`, cache?.experts);
  return { out: add(fo, m.out), self: sa.probs, cross: gf.cross, moe: m };
}
