// Float64 CPU reference of the whole MicarVLMoE forward (evaluation mode, one image), written
// from ../shared/SPEC.md with the piece references of this folder, split into stages so a test
// can perturb an intermediate (the fused FPN map, the pooled tokens, a cross-attention row) and
// re-run only what follows it (finite differences of the explanations' gradients).
import { conv2dRef, maxPoolRef, adaptiveAvgPoolRef, resizeBilinearRef } from './vision.ts';
import { rmsNormRef, rotaryRef } from './nn.ts';
import { act } from './cpu.ts';
import { gateRef, moeRef, type ExpertRef } from './moe.ts';
import { backboneLayout, type MicarConfig } from '../../src/model/config.ts';

export type Weights64 = Map<string, Float64Array>;

function W(w: Weights64, name: string): Float64Array {
  const t = w.get(name);
  if (!t) throw new Error(`modelRef: no weight ${name}`);
  return t;
}

/** y [n,out] = x [n,in] · Wᵀ + b. */
export function linearRef(x: ArrayLike<number>, Wt: ArrayLike<number>, n: number, din: number, dout: number, b?: ArrayLike<number>): Float64Array {
  const y = new Float64Array(n * dout);
  for (let i = 0; i < n; i++)
    for (let o = 0; o < dout; o++) {
      let s = b ? b[o] : 0;
      for (let k = 0; k < din; k++) s += x[i * din + k] * Wt[o * din + k];
      y[i * dout + o] = s;
    }
  return y;
}

function bnEval(w: Weights64, x: Float64Array, C: number, HW: number, p: string): Float64Array {
  const g = W(w, `${p}.weight`), b = W(w, `${p}.bias`), rm = W(w, `${p}.running_mean`), rv = W(w, `${p}.running_var`);
  const y = new Float64Array(x.length);
  for (let c = 0; c < C; c++) {
    const k = g[c] / Math.sqrt(rv[c] + 1e-5);
    for (let i = 0; i < HW; i++) y[c * HW + i] = (x[c * HW + i] - rm[c]) * k + b[c];
  }
  return y;
}

export interface Map3 { x: Float64Array; C: number; H: number; W: number }

function conv(w: Weights64, m: Map3, p: string, K: number, stride: number, pad: number, bias: boolean): Map3 {
  const wt = W(w, `${p}.weight`), O = wt.length / (m.C * K * K);
  const H = Math.floor((m.H + 2 * pad - K) / stride) + 1, Wd = Math.floor((m.W + 2 * pad - K) / stride) + 1;
  const x = conv2dRef(m.x, wt, bias ? W(w, `${p}.bias`) : null, { N: 1, C: m.C, H: m.H, W: m.W, O, K, stride, pad });
  return { x, C: O, H, W: Wd };
}

function convBn(w: Weights64, m: Map3, c: string, n: string, K: number, stride: number, pad: number, bias = false): Map3 {
  const y = conv(w, m, c, K, stride, pad, bias);
  return { ...y, x: bnEval(w, y.x, y.C, y.H * y.W, n) };
}

const reluMap = (m: Map3): Map3 => ({ ...m, x: m.x.map((v) => Math.max(v, 0)) });
const addMap = (a: Map3, b: Map3): Map3 => ({ ...a, x: a.x.map((v, i) => v + b.x[i]) });
const up = (m: Map3, like: Map3): Map3 => (m.H === like.H && m.W === like.W ? m : { x: resizeBilinearRef(m.x, m.C, m.H, m.W, like.H, like.W), C: m.C, H: like.H, W: like.W });

/** Image [3,S,S] → the backbone maps [C2, C3, C4, C5] (the first `stages` of them). */
export function backboneRef(w: Weights64, cfg: MicarConfig, image: ArrayLike<number>, stages = 4): Map3[] {
  const { bottleneck, blocks } = backboneLayout(cfg.backbone);
  if (bottleneck) throw new Error('backboneRef: BasicBlock backbones only');
  const S = cfg.image_size;
  let x = reluMap(convBn(w, { x: Float64Array.from(image), C: 3, H: S, W: S }, 'vis_enc.layer1.0', 'vis_enc.layer1.1', 7, 2, 3));
  const mp = maxPoolRef(x.x, x.C, x.H, x.W, 3, 2, 1);
  x = { x: mp.y, C: x.C, H: Math.floor((x.H + 2 - 3) / 2) + 1, W: Math.floor((x.W + 2 - 3) / 2) + 1 };
  const feats: Map3[] = [];
  for (let s = 0; s < stages; s++) {
    for (let j = 0; j < blocks[s]; j++) {
      const p = s === 0 ? `vis_enc.layer1.4.${j}` : `vis_enc.layer${s + 1}.0.${j}`;
      const stride = j === 0 && s > 0 ? 2 : 1;
      let y = reluMap(convBn(w, x, `${p}.conv1`, `${p}.bn1`, 3, stride, 1));
      y = convBn(w, y, `${p}.conv2`, `${p}.bn2`, 3, 1, 1);
      const idn = w.has(`${p}.downsample.0.weight`) ? convBn(w, x, `${p}.downsample.0`, `${p}.downsample.1`, 1, stride, 0) : x;
      x = reluMap(addMap(y, idn));
    }
    feats.push(x);
  }
  return feats;
}

/** FPN lateral i (2..5): ReLU(BN(Conv1×1 with bias)). */
export const lateralRef = (w: Weights64, m: Map3, i: number): Map3 => reluMap(convBn(w, m, `vis_enc.fpn_c${i}.0`, `vis_enc.fpn_c${i}.1`, 1, 1, 0, true));

/** The fusion: ReLU(BN(Conv3×3 pad 1 with bias)). */
export const fusionRef = (w: Weights64, m: Map3): Map3 => reluMap(convBn(w, m, 'vis_enc.fusion.0', 'vis_enc.fusion.1', 3, 1, 1, true));

/** Image [3,S,S] → the fused FPN map [d_v, S/4, S/4] (before the 7×7 pooling). */
export function visionRef(w: Weights64, cfg: MicarConfig, image: ArrayLike<number>): Map3 {
  const [c2, c3, c4, c5] = backboneRef(w, cfg, image);
  const lat = (m: Map3, i: number) => lateralRef(w, m, i);
  const p5 = lat(c5, 5);
  const p4 = addMap(lat(c4, 4), up(p5, c4));
  const p3 = addMap(lat(c3, 3), up(p4, c3));
  const p2 = addMap(lat(c2, 2), up(p3, c2));
  const sum = addMap(addMap(addMap(p2, up(p3, p2)), up(p4, p2)), up(p5, p2));
  return fusionRef(w, sum);
}

/** Fused map → pooled [d_v, 49] (channel-major, the layout of the 7×7 map). */
export function poolRef(fused: Map3): Float64Array {
  return adaptiveAvgPoolRef(fused.x, fused.C, fused.H, fused.W, 7, 7);
}

function rms(w: Weights64, x: Float64Array, D: number, p: string): Float64Array {
  return rmsNormRef(x, W(w, `${p}.weight`), D, 1e-6);
}

function downNormUp(w: Weights64, x: Float64Array, n: number, din: number, p: string): Float64Array {
  const w0 = W(w, `${p}.0.weight`), mid = w0.length / din;
  const h = rmsNormRef(linearRef(x, w0, n, din, mid), W(w, `${p}.1.weight`), mid, 1e-6);
  const w2 = W(w, `${p}.2.weight`);
  return linearRef(h, w2, n, mid, w2.length / mid);
}

/** [n, width] columns [off, off+dl) → per head [H][n·dh] with feature f = d·H + h. */
function heads(x: Float64Array, n: number, width: number, off: number, H: number, dh: number): Float64Array[] {
  return Array.from({ length: H }, (_, h) => {
    const o = new Float64Array(n * dh);
    for (let s = 0; s < n; s++) for (let d = 0; d < dh; d++) o[s * dh + d] = x[s * width + off + d * H + h];
    return o;
  });
}

/**
 * Attention of queries [nq, d] over keys/values given per head; returns the merged output
 * [nq, H·dh] (feature h·dh + d) and the probabilities [H, nq, nk]. `edit(P)` may change the
 * probabilities before they weight the values.
 */
function attend(q: Float64Array[], k: Float64Array[], v: Float64Array[], nq: number, nk: number, dh: number, scale: number, causal: boolean, edit?: (P: Float64Array) => void) {
  const H = q.length;
  const P = new Float64Array(H * nq * nk), out = new Float64Array(nq * H * dh);
  for (let h = 0; h < H; h++)
    for (let i = 0; i < nq; i++) {
      const row = P.subarray((h * nq + i) * nk, (h * nq + i + 1) * nk);
      let m = -Infinity;
      for (let j = 0; j < nk; j++) {
        let s = 0;
        for (let d = 0; d < dh; d++) s += q[h][i * dh + d] * k[h][j * dh + d];
        row[j] = causal && j > i ? -1e9 : s * scale;
        m = Math.max(m, row[j]);
      }
      let z = 0;
      for (let j = 0; j < nk; j++) z += (row[j] = Math.exp(row[j] - m));
      for (let j = 0; j < nk; j++) row[j] /= z;
    }
  edit?.(P);
  for (let h = 0; h < H; h++)
    for (let i = 0; i < nq; i++)
      for (let j = 0; j < nk; j++) {
        const p = P[(h * nq + i) * nk + j];
        for (let d = 0; d < dh; d++) out[i * H * dh + h * dh + d] += p * v[h][j * dh + d];
      }
  return { out, P };
}

function rope(w: Weights64, cfg: MicarConfig, hs: Float64Array[], n: number, p: string): Float64Array[] {
  const dh = cfg.qk_nope_dim + cfg.qk_rope_dim;
  return hs.map((x) => rotaryRef(x, W(w, `${p}.rope.freqs`), n, dh, cfg.qk_nope_dim));
}

function mhlaRef(w: Weights64, cfg: MicarConfig, x: Float64Array, n: number, p: string, causal: boolean) {
  const H = cfg.num_heads, dl = cfg.d_latent, dh = dl / H, d = cfg.d_model;
  const qkv = downNormUp(w, x, n, d, `${p}.qkv_down_norm_up`);
  const q = rope(w, cfg, heads(qkv, n, 3 * dl, 0, H, dh), n, p), k = rope(w, cfg, heads(qkv, n, 3 * dl, dl, H, dh), n, p), v = heads(qkv, n, 3 * dl, 2 * dl, H, dh);
  const a = attend(q, k, v, n, n, dh, 1 / Math.sqrt(dh), causal);
  return { out: linearRef(a.out, W(w, `${p}.wo.weight`), n, dl, d), P: a.P };
}

function ffnRef(w: Weights64, cfg: MicarConfig, x: Float64Array, n: number, p: string): Float64Array {
  const d = cfg.d_model, F = cfg.d_ff, f = act[cfg.act_fn];
  const a = linearRef(x, W(w, `${p}.w1.weight`), n, d, F), b = linearRef(x, W(w, `${p}.w3.weight`), n, d, F);
  return linearRef(a.map((v, i) => f(v) * b[i]), W(w, `${p}.w2.weight`), n, F, d);
}

const addV = (a: Float64Array, b: Float64Array) => a.map((v, i) => v + b[i]);

/**
 * Pooled [d_v, 49] → encoder output [49, d_model] and the encoder's self-attention [H,49,49] per
 * layer. `selfAttention: false` drops each layer's attention sub-block (x + FFN(norm_ff(x)) only).
 */
export function encoderRef(w: Weights64, cfg: MicarConfig, pooled: Float64Array, opts: { selfAttention?: boolean } = {}) {
  const N = 49, dv = cfg.d_v, d = cfg.d_model;
  const tok = new Float64Array(N * dv);
  for (let c = 0; c < dv; c++) for (let i = 0; i < N; i++) tok[i * dv + c] = pooled[c * N + i];
  let x = linearRef(rms(w, tok, dv, 'proj.0'), W(w, 'proj.1.weight'), N, dv, d, W(w, 'proj.1.bias'));
  const attn: Float64Array[] = [];
  for (let l = 0; l < cfg.num_layers; l++) {
    const p = `encoder.layers.${l}`;
    let h = x;
    if (opts.selfAttention !== false) {
      const sa = mhlaRef(w, cfg, rms(w, x, d, `${p}.norm_sa`), N, `${p}.self_attention`, false);
      attn.push(sa.P);
      h = addV(x, sa.out);
    }
    x = addV(h, ffnRef(w, cfg, rms(w, h, d, `${p}.norm_ff`), N, `${p}.ff`));
  }
  return { img: x, attn };
}

export interface DecoderHooks {
  /** Edits layer l's cross-attention probabilities [H, T, 49] before they weight the values. */
  cross?: (l: number, P: Float64Array) => void;
}

/** Encoder output [49, d] and input ids (<sos>, words…) → logits [T, V] and attention maps. */
export function decoderRef(w: Weights64, cfg: MicarConfig, img: Float64Array, ids: readonly number[], hooks: DecoderHooks = {}) {
  const T = ids.length, d = cfg.d_model, N = 49, H = cfg.num_heads, dl = cfg.d_latent, dh = dl / H, V = cfg.vocab_size;
  const emb = W(w, 'text_embs.embedding.weight'), pe = W(w, 'text_embs.pe.pe');
  let x = new Float64Array(T * d);
  for (let t = 0; t < T; t++) for (let c = 0; c < d; c++) x[t * d + c] = emb[ids[t] * d + c] * Math.sqrt(d) + pe[t * d + c];
  const cross: Float64Array[] = [], self: Float64Array[] = [];
  const f = act[cfg.act_fn];
  for (let l = 0; l < cfg.num_layers; l++) {
    const p = `decoder.layers.${l}`;
    const sa = mhlaRef(w, cfg, rms(w, x, d, `${p}.norm_sa`), T, `${p}.self_attention`, true);
    self.push(sa.P);
    const s = addV(x, sa.out);
    // gated fusion
    const g = `${p}.gated_fusion`;
    const nx = rms(w, s, d, `${g}.norm1`), ni = rms(w, img, d, `${g}.norm2`);
    const c = `${g}.cross_attention`;
    const q = rope(w, cfg, heads(downNormUp(w, nx, T, d, `${c}.q_down_norm_up`), T, dl, 0, H, dh), T, c);
    const kv = downNormUp(w, ni, N, d, `${c}.kv_down_norm_up`);
    const k = rope(w, cfg, heads(kv, N, 2 * dl, 0, H, dh), N, c), v = heads(kv, N, 2 * dl, dl, H, dh);
    const ca = attend(q, k, v, T, N, dh, 1 / Math.sqrt(dh), false, hooks.cross && ((P) => hooks.cross!(l, P)));
    cross.push(ca.P);
    const a = addV(linearRef(ca.out, W(w, `${c}.wo.weight`), T, dl, d), s);
    const pooled = new Float64Array(2 * d);
    for (let ch = 0; ch < d; ch++) {
      let m = -Infinity, z = 0;
      for (let i = 0; i < N; i++) {
        z += ni[i * d + ch];
        m = Math.max(m, ni[i * d + ch]);
      }
      pooled[ch] = z / N;
      pooled[d + ch] = m;
    }
    const gv = linearRef(pooled, W(w, `${g}.global_proj.weight`), 1, 2 * d, d, W(w, `${g}.global_proj.bias`));
    const na = rms(w, a, d, `${g}.norm3`);
    const cat2 = new Float64Array(T * 2 * d), cat3 = new Float64Array(T * 3 * d);
    for (let t = 0; t < T; t++)
      for (let ch = 0; ch < d; ch++) {
        cat2[t * 2 * d + ch] = na[t * d + ch];
        cat2[t * 2 * d + d + ch] = nx[t * d + ch];
      }
    const gh = linearRef(cat2, W(w, `${g}.gate.0.weight`), T, 2 * d, d, W(w, `${g}.gate.0.bias`)).map(f);
    const gate = linearRef(gh, W(w, `${g}.gate.2.weight`), T, d, d, W(w, `${g}.gate.2.bias`)).map(act.sigmoid);
    for (let t = 0; t < T; t++)
      for (let ch = 0; ch < d; ch++) {
        const i = t * d + ch;
        cat3[t * 3 * d + ch] = gate[i] * na[i] + (1 - gate[i]) * nx[i];
        cat3[t * 3 * d + d + ch] = na[i];
        cat3[t * 3 * d + 2 * d + ch] = gv[ch];
      }
    const h = linearRef(linearRef(cat3, W(w, `${g}.fusion.0.weight`), T, 3 * d, d, W(w, `${g}.fusion.0.bias`)).map(f), W(w, `${g}.fusion.3.weight`), T, d, d, W(w, `${g}.fusion.3.bias`));
    const fo = addV(s, addV(h, a));
    // MoE
    const m = `${p}.moe`;
    const nm = rms(w, fo, d, `${p}.norm_moe`);
    const route = gateRef(nm, W(w, `${m}.gate.gate.weight`), T, d, cfg.num_experts, cfg.k);
    const experts: ExpertRef[] = Array.from({ length: cfg.num_experts }, (_, e) => ({ w1: W(w, `${m}.experts.${e}.w1.weight`), w3: W(w, `${m}.experts.${e}.w3.weight`), w2: W(w, `${m}.experts.${e}.w2.weight`) }));
    const mo = moeRef(nm, route.indices, route.weights, experts, T, d, cfg.d_ff, cfg.k, cfg.act_fn, cfg.moe_mode);
    x = addV(fo, mo.out);
  }
  const logits = linearRef(rms(w, x, d, 'gen_logits.0'), W(w, 'gen_logits.1.weight'), T, d, V);
  return { logits, cross, self };
}

/** The whole forward: image [3,S,S] and ids → logits [T,V] with every intermediate the explanations use. */
export function modelRef(w: Weights64, cfg: MicarConfig, image: ArrayLike<number>, ids: readonly number[], hooks: DecoderHooks = {}) {
  const fused = visionRef(w, cfg, image);
  const pooled = poolRef(fused);
  const enc = encoderRef(w, cfg, pooled);
  const dec = decoderRef(w, cfg, enc.img, ids, hooks);
  return { fused, pooled, enc, dec };
}
