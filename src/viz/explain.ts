// Explanations of one generated word: where in the image the model's evidence for it lies.
// Every method runs the model on the GPU (the gradients through the graph's autograd); the
// explained quantity is the word's logit (pre-softmax score, as Grad-CAM and Chefer et al. use)
// at its position, the decoder reading <sos> and the words before it (teacher forcing, exactly
// the state generation was in when it chose the word).
//
//   attention       the cross-attention row of the word (per layer and head; `grid` = their mean).
//   rollout         attention rollout through encoder and decoder, residual paths included:
//                     R_ii = Π_enc (½I + ½Ā_enc)            image tokens ← image tokens (49×49)
//                     R_tt = I, R_ti = 0                    text ← text, text ← image
//                     per decoder layer:  M = ½I + ½Ā_self;  R_tt ← M·R_tt;  R_ti ← M·R_ti
//                                         R_ti ← R_ti + Ā_cross·R_ii
//                   (Ā = mean over heads). Self-attention mixes a token with earlier tokens, the
//                   residual keeping half (Abnar & Zuidema 2020); cross-attention adds image
//                   relevance to what the residual carries (Chefer et al. 2021's additive
//                   co-attention rule with raw attention in place of gradient-weighted). So the
//                   word's map also includes what earlier words attended to, as far as
//                   self-attention routed it. The gated fusion's global vector (mean and max
//                   over all image tokens) carries no location a rollout can follow: left out.
//                   The map is row t of R_ti normalised to sum 1.
//   grad-attention  mean over layers and heads of (A ⊙ ∂logit/∂A)⁺ on the cross-attention row
//                   (Chefer et al. 2021, the gradient-weighted attention they roll out).
//   gradcam         Grad-CAM (Selvaraju et al. 2017): ReLU(Σ_c α_c F_c), α_c = spatial mean of
//                   ∂logit/∂F_c, on the vision encoder's fused FPN map (stride 4: `fine`) and on
//                   its 7×7 adaptive-average-pooled map (the image tokens: `grid`).
//   saliency        |Σ_c x_c · ∂logit/∂x_c| per input pixel (gradient × input, Shrikumar et al.
//                   2016) on the normalised pixels, so the implicit baseline is the mean colour;
//                   optionally SmoothGrad over n noisy copies x+ε, ε ~ N(0, σ²), of the signed
//                   map s = Σ_c x_c·∂logit/∂x_c: 'mean' E|s| (Smilkov et al. 2017), 'squared'
//                   E[s²] (SmoothGrad-Squared) or 'var' E[s²] − E[s]² (VarGrad; Hooker et al. 2019).
//                   `grid` = the pixel map summed over the 7×7 adaptive-pool bins.
//   integrated-gradients
//                   |Σ_c (x_c − b_c)·∫₀¹ ∂logit/∂x_c(b + α(x − b)) dα| per pixel (Sundararajan et al.
//                   2017), the integral by the midpoint rule on α = (i + ½)/m, i < m (all rows of
//                   one word batched), baseline b the mean colour (0 after normalisation)
//                   or black. Completeness: the signed attributions sum to f(x) − f(b) up to the
//                   quadrature error; both are returned (`completeness`).
//   occlusion       occlusion sensitivity (Zeiler & Fergus 2014): a w×w window of the image set to
//                   the mean colour (0 after normalisation, the deletion test's fill) at every
//                   position on a stride-s lattice; a pixel's value is max(0, mean over the windows
//                   covering it of y(x) − y(x with that window occluded)). Forward passes only, and
//                   every word of the report from the same passes (teacher forcing). Default
//                   w = max(2, round(S/6)) (8 px at 48, 37 at 224), s = max(1, round(w/4)): on
//                   the main job's val split (48 px, 111 findings, target 'logprob') window 8 /
//                   stride 2 pointed at .802 against .687 for 6 / 2 (10 / 2: .867 but less mass
//                   in the box, .397 against .408 and .424); earlier, w 4 trailed w 6 and target
//                   'logprob' led 'logit'.
// `target`: 'logit' (default) or 'logprob' — the word's log-probability log softmax(logits)_w,
// which subtracts the evidence shared with the other words (∂/∂z = onehot − p): contrastive.
// It applies to every gradient method; attention and rollout do not depend on it.
// Several words (steps) are explained in one batched pass: each batch row is the same image and
// sequence, seeded at its own word, so one backward gives every row's gradients.
import type { Tensor } from '../graph/tensor.ts';
import { dispose, fromData, readMany, realize } from '../graph/runtime.ts';
import { grad } from '../graph/autograd.ts';
import { mul, relu } from '../graph/ops/elementwise.ts';
import { mean, sum } from '../graph/ops/reduce.ts';
import { reshape } from '../graph/ops/shape.ts';
import { Forward } from '../model/context.ts';
import { decodeText, decoderMask, encodeImage } from '../model/micar.ts';
import type { Weights } from '../model/weights.ts';
import { mulberry32 } from '../graph/ops/random.ts';
import { GRID } from './heatmap.ts';
import { IMAGENET_MEAN, IMAGENET_STD } from '../data/preprocess.ts';
import { logSoftmax } from '../graph/ops/softmax.ts';

export const EXPLAIN_METHODS = ['attention', 'rollout', 'grad-attention', 'gradcam', 'saliency', 'integrated-gradients', 'occlusion'] as const;
export type ExplainMethod = (typeof EXPLAIN_METHODS)[number];

const GRADIENT_METHODS: readonly ExplainMethod[] = ['grad-attention', 'gradcam', 'saliency', 'integrated-gradients'];

export function isExplainMethod(m: string): m is ExplainMethod {
  return (EXPLAIN_METHODS as readonly string[]).includes(m);
}

export interface FineMap {
  height: number;
  width: number;
  /** Row-major height×width, ≥ 0. */
  values: Float64Array;
  /** 'fpn': the vision encoder's fused FPN map (stride 4); 'pixels': the model input. */
  level: 'fpn' | 'pixels';
}

export interface ExplainMap {
  method: ExplainMethod;
  /** Position of the explained word in the generated tokens. */
  step: number;
  token: number;
  /** GRID×GRID map over the image tokens (row-major), ≥ 0. */
  grid: Float64Array;
  /** A finer map where the method has one (gradcam: FPN level; saliency: pixels). */
  fine?: FineMap;
  /** attention and grad-attention: [layer][head] grid maps (their mean is `grid`). */
  perHead?: Float64Array[][];
  /** The explained quantity: the word's logit, or its log-probability with target 'logprob'. */
  logit: number;
  /** integrated-gradients: Σ of the signed attributions and f(x) − f(baseline) (equal up to the quadrature error). */
  completeness?: { attributionSum: number; difference: number };
}

export type ExplainTarget = 'logit' | 'logprob';
export type SmoothGradKind = 'mean' | 'squared' | 'var';

export interface ExplainOptions {
  /** Words explained per batched pass (default 8). */
  batch?: number;
  /** SmoothGrad for saliency: `samples` copies with N(0, sigma²) noise on the normalised pixels, combined by `kind` (default 'mean'). */
  smoothGrad?: { samples: number; sigma: number; seed?: number; kind?: SmoothGradKind };
  /** Integrated gradients: `steps` midpoint-rule intervals (default 16), baseline 'mean' colour (default) or 'black'. */
  integratedGradients?: { steps?: number; baseline?: 'mean' | 'black' };
  /** What the gradient methods explain (default 'logit'). */
  target?: ExplainTarget;
  /** Batch rows per forward + backward for SmoothGrad and integrated gradients (default 32; occlusion, forward only: twice that). */
  rowsPerPass?: number;
  /** Occlusion: window side and stride in model-input pixels (defaults in the header). */
  occlusion?: { window?: number; stride?: number };
}

/** The occlusion lattice for an S×S image: window side, stride, and the windows' top-left corners (the last row and column end at the border). */
export function occlusionWindows(S: number, o: ExplainOptions['occlusion'] = {}): { window: number; stride: number; corners: [number, number][] } {
  const window = o.window ?? Math.max(2, Math.round(S / 6));
  const stride = o.stride ?? Math.max(1, Math.round(window / 4));
  if (!(Number.isInteger(window) && window >= 1 && window <= S)) throw new Error(`explain: occlusion window ${window} is not an integer in 1..${S} (the image side)`);
  if (!(Number.isInteger(stride) && stride >= 1)) throw new Error(`explain: occlusion stride ${stride} is not a positive integer`);
  const starts: number[] = [];
  for (let v = 0; v + window <= S; v += stride) starts.push(v);
  if (starts[starts.length - 1] !== S - window) starts.push(S - window);
  return { window, stride, corners: starts.flatMap((y) => starts.map((x) => [x, y] as [number, number])) };
}

/** The integrated-gradients baseline in normalised pixels: 'mean' colour = 0, 'black' = −mean/std per channel. */
export function igBaseline(kind: 'mean' | 'black', S: number): Float32Array {
  const b = new Float32Array(3 * S * S);
  if (kind === 'black') for (let c = 0; c < 3; c++) b.fill(-IMAGENET_MEAN[c] / IMAGENET_STD[c], c * S * S, (c + 1) * S * S);
  return b;
}

/**
 * Explains the word at `step` of `tokens` (generated ids, no <sos>) for one preprocessed image
 * (3·S·S normalised pixels) with `method`.
 */
export async function explain(w: Weights, pixels: Float32Array, tokens: readonly number[], step: number, method: ExplainMethod, opts: ExplainOptions = {}): Promise<ExplainMap> {
  return (await explainSteps(w, pixels, tokens, [step], [method], opts)).get(method)![0];
}

/** Several words and methods at once: method → one map per entry of `steps` (same order). */
export async function explainSteps(
  w: Weights, pixels: Float32Array, tokens: readonly number[], steps: readonly number[], methods: readonly ExplainMethod[], opts: ExplainOptions = {},
): Promise<Map<ExplainMethod, ExplainMap[]>> {
  const cfg = w.cfg, S = cfg.image_size;
  if (pixels.length !== 3 * S * S) throw new Error(`explain: ${pixels.length} pixel values, expected 3×${S}×${S}`);
  for (const m of methods) if (!isExplainMethod(m)) throw new Error(`explain: unknown method "${m}"; one of ${EXPLAIN_METHODS.join(', ')}`);
  if (opts.target !== undefined && opts.target !== 'logit' && opts.target !== 'logprob') throw new Error(`explain: target "${opts.target}" is not 'logit' or 'logprob'`);
  const kind = opts.smoothGrad?.kind;
  if (kind !== undefined && !['mean', 'squared', 'var'].includes(kind)) throw new Error(`explain: SmoothGrad kind "${kind}" is not mean, squared or var`);
  const ig = opts.integratedGradients;
  if (ig?.steps !== undefined && !(Number.isInteger(ig.steps) && ig.steps >= 1)) throw new Error(`explain: integrated-gradients steps ${ig.steps} is not a positive integer`);
  if (ig?.baseline !== undefined && ig.baseline !== 'mean' && ig.baseline !== 'black') throw new Error(`explain: integrated-gradients baseline "${ig.baseline}" is not mean or black`);
  if (methods.includes('occlusion')) occlusionWindows(S, opts.occlusion); // throws on a bad window or stride
  for (const s of steps) {
    if (!Number.isInteger(s) || s < 0 || s >= tokens.length) throw new Error(`explain: step ${s} outside the ${tokens.length} generated tokens`);
    if (s >= cfg.text_seq_len) throw new Error(`explain: step ${s} is past text_seq_len ${cfg.text_seq_len}`);
    const t = tokens[s];
    if (!(Number.isInteger(t) && t >= 0 && t < cfg.vocab_size)) throw new Error(`explain: token ${t} at step ${s} is outside the vocabulary (${cfg.vocab_size})`);
  }
  const out = new Map<ExplainMethod, ExplainMap[]>(methods.map((m) => [m, []]));
  const B = Math.max(1, opts.batch ?? 8);
  const perChunk = methods.filter((m) => m !== 'occlusion');
  if (perChunk.length) {
    for (let i = 0; i < steps.length; i += B) {
      const chunk = steps.slice(i, i + B);
      const maps = await explainChunk(w, pixels, tokens, chunk, perChunk, opts);
      for (const m of perChunk) out.get(m)!.push(...maps.get(m)!);
    }
  }
  // Occlusion: the same forward passes serve every word, so all steps at once.
  if (methods.includes('occlusion')) out.set('occlusion', await occlusionMaps(w, pixels, tokens, steps, opts));
  return out;
}

interface PassResult {
  logits: Float64Array; // one per row: the explained logit or log-probability
  cross?: Float32Array[]; // per layer [B,H,T,N]
  crossGrad?: Float32Array[]; // per layer relu(A ⊙ ∂y/∂A) [B,H,T,N]
  decSelf?: Float32Array[]; // per layer [B,H,T,T]
  encSelf?: Float32Array[]; // per layer [B,H,N,N]
  camFine?: Float32Array; // [B, h·w]
  camGrid?: Float32Array; // [B, 49]
  fineSize?: [number, number];
  inputGrad?: Float32Array; // [B, S·S]: signed Σ_c times_c · ∂y/∂x_c
}

/**
 * One batched forward (+ backward): row j explains the word steps[j] on the image inputs[j]
 * (3·S·S normalised pixels). `times[j]` multiplies the input gradient before the channel sum
 * (default: the row's input, i.e. gradient × input); only 'saliency' or 'integrated-gradients'
 * in `methods` asks for it.
 */
async function explainPass(
  w: Weights, tokens: readonly number[], steps: readonly number[], methods: readonly ExplainMethod[],
  inputs: readonly Float32Array[], target: ExplainTarget, times?: readonly Float32Array[],
): Promise<PassResult> {
  const cfg = w.cfg, S = cfg.image_size, V = cfg.vocab_size;
  const B = steps.length, T = Math.max(...steps) + 1;
  const needGrad = methods.some((m) => GRADIENT_METHODS.includes(m));
  const wantInputGrad = methods.includes('saliency') || methods.includes('integrated-gradients');
  const px = new Float32Array(B * 3 * S * S);
  inputs.forEach((x, j) => px.set(x, j * 3 * S * S));
  const image = fromData(px, [B, 3, S, S], 'f32', 'explain_image');
  image.requiresGrad = needGrad;
  const timesT = times ? fromData(Float32Array.from({ length: B * 3 * S * S }, (_, i) => times[Math.floor(i / (3 * S * S))][i % (3 * S * S)]), [B, 3, S, S], 'f32', 'explain_times') : null;
  const ids = new Int32Array(B * T);
  for (let j = 0; j < B; j++) for (let t = 0; t < T; t++) ids[j * T + t] = t === 0 ? cfg.sos_id : tokens[t - 1];
  const idsT = fromData(ids, [B, T], 'i32', 'explain_ids');
  const mask = decoderMask(new Float32Array(B * T).fill(1), B, T);
  const f = new Forward(w, { keepAttention: true, differentiableAttention: needGrad, capture: methods.includes('gradcam') });
  const enc = encodeImage(f, image);
  const dec = decodeText(f, enc.out, idsT, mask);
  // The explained quantity y per row: the word's logit, or its log-probability (contrastive).
  const scores = target === 'logprob' ? logSoftmax(dec.logits) : dec.logits;
  const seed = new Float32Array(B * T * V);
  steps.forEach((s, j) => (seed[(j * T + s) * V + tokens[s]] = 1));
  const seedT = fromData(seed, [B, T, V], 'f32', 'explain_seed');
  const targetScore = sum(reshape(mul(scores, seedT), [B, T * V]), 1); // [B]
  const cross = dec.layers.map((l) => l.cross!);
  const targets: Tensor[] = [targetScore];
  const slots: Record<string, number> = {};
  const push = (k: string, ts: Tensor[]) => {
    slots[k] = targets.length;
    targets.push(...ts);
  };
  if (methods.includes('attention') || methods.includes('rollout') || methods.includes('grad-attention')) push('cross', cross);
  let nEnc = 0;
  if (methods.includes('rollout')) {
    push('decSelf', dec.layers.map((l) => l.self!));
    const encAttn = enc.attn.filter((a): a is Tensor => a !== null); // none: tokens do not mix (identity)
    nEnc = encAttn.length;
    push('encSelf', encAttn);
  }
  let fineSize: [number, number] | undefined;
  if (needGrad) {
    const fused = f.captures.get('vis_enc.fused'), pooled = f.captures.get('vis_enc.pooled');
    const wrt: Tensor[] = [...cross, image];
    if (fused && pooled) wrt.push(fused, pooled);
    const g = grad(scores, wrt, seedT);
    if (methods.includes('grad-attention')) push('crossGrad', cross.map((a, l) => relu(mul(a, g[l]!))));
    if (wantInputGrad) push('inputGrad', [sum(mul(g[cross.length]!, timesT ?? image), 1)]); // [B,S,S]
    if (methods.includes('gradcam')) {
      const cam = (F: Tensor, gF: Tensor) => {
        const [b, C, h, wd] = F.shape;
        const F3 = reshape(F, [b, C, h * wd]);
        const alpha = mean(reshape(gF, [b, C, h * wd]), 2, true); // [b,C,1]
        return relu(sum(mul(F3, alpha), 1)); // [b, h·w]
      };
      fineSize = [fused!.shape[2], fused!.shape[3]];
      push('cam', [cam(fused!, g[cross.length + 1]!), cam(pooled!, g[cross.length + 2]!)]);
    }
  }
  const res: PassResult = { logits: new Float64Array(B), fineSize };
  try {
    await realize(targets);
    const host = await readMany(targets);
    res.logits = Float64Array.from(host[0]);
    const L = cfg.num_layers;
    const get = (k: string, n: number) => host.slice(slots[k], slots[k] + n) as Float32Array[];
    if (slots.cross !== undefined) res.cross = get('cross', L);
    if (slots.decSelf !== undefined) {
      res.decSelf = get('decSelf', L);
      res.encSelf = get('encSelf', nEnc);
    }
    if (slots.crossGrad !== undefined) res.crossGrad = get('crossGrad', L);
    if (slots.inputGrad !== undefined) res.inputGrad = get('inputGrad', 1)[0];
    if (slots.cam !== undefined) [res.camFine, res.camGrid] = get('cam', 2);
  } finally {
    dispose(...targets, image, idsT, mask, seedT, ...(timesT ? [timesT] : []));
  }
  return res;
}

/**
 * Signed input-gradient maps of many rows (row r: word steps[r] on inputs[r]), `rowsPerPass`
 * rows per forward + backward. Returns [rows, S·S] and the rows' explained values.
 */
async function inputGradRows(
  w: Weights, tokens: readonly number[], steps: readonly number[], inputs: readonly Float32Array[], target: ExplainTarget,
  times: readonly Float32Array[] | undefined, rowsPerPass: number,
): Promise<{ maps: Float32Array[]; values: Float64Array }> {
  const SS = w.cfg.image_size ** 2;
  const maps: Float32Array[] = [], values = new Float64Array(steps.length);
  for (let i = 0; i < steps.length; i += rowsPerPass) {
    const n = Math.min(rowsPerPass, steps.length - i);
    const r = await explainPass(w, tokens, steps.slice(i, i + n), ['saliency'], inputs.slice(i, i + n), target, times?.slice(i, i + n));
    for (let j = 0; j < n; j++) {
      maps.push(r.inputGrad!.slice(j * SS, (j + 1) * SS));
      values[i + j] = r.logits[j];
    }
  }
  return { maps, values };
}

async function explainChunk(w: Weights, pixels: Float32Array, tokens: readonly number[], steps: readonly number[], methods: readonly ExplainMethod[], opts: ExplainOptions): Promise<Map<ExplainMethod, ExplainMap[]>> {
  const cfg = w.cfg, S = cfg.image_size, N = GRID * GRID, H = cfg.num_heads, L = cfg.num_layers, SS = S * S;
  const B = steps.length, T = Math.max(...steps) + 1;
  const target = opts.target ?? 'logit', rowsPerPass = Math.max(1, opts.rowsPerPass ?? 32);
  const direct = methods.filter((m) => m !== 'integrated-gradients');
  const r: PassResult = direct.length ? await explainPass(w, tokens, steps, direct, steps.map(() => pixels), target) : { logits: new Float64Array(B) };
  let saliency: Float64Array[] | undefined;
  const sg = opts.smoothGrad;
  if (methods.includes('saliency')) {
    if (sg && sg.samples > 0) {
      // Noisy copies: sample k, word j; the noise of sample k is seeded by k (same for every word).
      const rows: Float32Array[] = [], rowSteps: number[] = [];
      for (let k = 0; k < sg.samples; k++) {
        const rnd = mulberry32(((sg.seed ?? 1) + k * 0x9e3779b1) >>> 0);
        const noisy = Float32Array.from(pixels, (v) => v + sg.sigma * Math.sqrt(-2 * Math.log(1 - rnd())) * Math.cos(2 * Math.PI * rnd()));
        for (const s of steps) rows.push(noisy), rowSteps.push(s);
      }
      const { maps } = await inputGradRows(w, tokens, rowSteps, rows, target, undefined, rowsPerPass);
      const kind = sg.kind ?? 'mean';
      saliency = steps.map((_, j) => {
        const m1 = new Float64Array(SS), m2 = new Float64Array(SS), ma = new Float64Array(SS);
        for (let k = 0; k < sg.samples; k++) {
          const v = maps[k * B + j];
          for (let p = 0; p < SS; p++) m1[p] += v[p] / sg.samples, m2[p] += (v[p] * v[p]) / sg.samples, ma[p] += Math.abs(v[p]) / sg.samples;
        }
        if (kind === 'mean') return ma;
        if (kind === 'squared') return m2;
        return m2.map((v, p) => Math.max(0, v - m1[p] * m1[p]));
      });
    } else saliency = steps.map((_, j) => Float64Array.from(r.inputGrad!.subarray(j * SS, (j + 1) * SS), Math.abs));
  }
  let ig: { map: Float64Array; sum: number; fx: number; fb: number }[] | undefined;
  if (methods.includes('integrated-gradients')) {
    const m = opts.integratedGradients?.steps ?? 16;
    const b = igBaseline(opts.integratedGradients?.baseline ?? 'mean', S);
    const d = Float32Array.from(pixels, (v, i) => v - b[i]);
    // Rows: the midpoints α_i = (i + ½)/m (i < m) for every word, all with times = x − b. The
    // midpoint rule never takes a gradient at the baseline itself: the mean-colour baseline is the
    // all-zero input, where every ReLU and max-pool sits exactly on a tie and the autograd's
    // choice of subgradient is arbitrary (measured: it gave φ'(0) ≈ 0, outside both one-sided slopes).
    const rows: Float32Array[] = [], rowSteps: number[] = [];
    for (let i = 0; i < m; i++) {
      const a = (i + 0.5) / m, x = Float32Array.from(b, (v, p) => v + a * d[p]);
      for (const s of steps) rows.push(x), rowSteps.push(s);
    }
    const { maps } = await inputGradRows(w, tokens, rowSteps, rows, target, rows.map(() => d), rowsPerPass);
    // f(b) and f(x) for completeness: one forward, no gradient.
    const ends = await explainPass(w, tokens, [...steps, ...steps], [], [...steps.map(() => b), ...steps.map(() => pixels)], target);
    ig = steps.map((_, j) => {
      const acc = new Float64Array(SS);
      for (let i = 0; i < m; i++) {
        const v = maps[i * B + j];
        for (let p = 0; p < SS; p++) acc[p] += v[p] / m;
      }
      let tot = 0;
      for (const v of acc) tot += v;
      return { map: acc.map(Math.abs), sum: tot, fx: ends.logits[B + j], fb: ends.logits[j] };
    });
  }
  // Row (j, query s) of a [B,H,T,K] tensor for head h.
  const row = (a: Float32Array, j: number, h: number, q: number, K: number, Tq = T) => a.subarray(((j * H + h) * Tq + q) * K, ((j * H + h) * Tq + q + 1) * K);
  const perHeadOf = (a: Float32Array[], j: number, s: number) => a.map((al) => Array.from({ length: H }, (_, h) => Float64Array.from(row(al, j, h, s, N))));
  const meanOf = (ph: Float64Array[][]) => {
    const g = new Float64Array(N);
    for (const l of ph) for (const h of l) for (let i = 0; i < N; i++) g[i] += h[i] / (L * H);
    return g;
  };
  const out = new Map<ExplainMethod, ExplainMap[]>();
  for (const m of methods) {
    const maps: ExplainMap[] = [];
    steps.forEach((s, j) => {
      const base = { method: m, step: s, token: tokens[s], logit: m === 'integrated-gradients' ? ig![j].fx : r.logits[j] };
      if (m === 'attention' || m === 'grad-attention') {
        const ph = perHeadOf(m === 'attention' ? r.cross! : r.crossGrad!, j, s);
        maps.push({ ...base, grid: meanOf(ph), perHead: ph });
      } else if (m === 'rollout') {
        maps.push({ ...base, grid: rolloutRow(r, j, s, T, H, L, N) });
      } else if (m === 'gradcam') {
        const [h, wd] = r.fineSize!;
        maps.push({ ...base, grid: Float64Array.from(r.camGrid!.subarray(j * N, (j + 1) * N)), fine: { height: h, width: wd, level: 'fpn', values: Float64Array.from(r.camFine!.subarray(j * h * wd, (j + 1) * h * wd)) } });
      } else if (m === 'saliency') {
        const values = saliency![j];
        maps.push({ ...base, grid: poolSum(values, S, S, GRID), fine: { height: S, width: S, level: 'pixels', values } });
      } else {
        const g = ig![j];
        maps.push({ ...base, grid: poolSum(g.map, S, S, GRID), fine: { height: S, width: S, level: 'pixels', values: g.map }, completeness: { attributionSum: g.sum, difference: g.fx - g.fb } });
      }
    });
    out.set(m, maps);
  }
  return out;
}

/** Head-mean of a [B,H,n,n'] attention tensor, batch row j, as a row-major n×n' matrix. */
function headMean(a: Float32Array, j: number, H: number, n: number, n2: number): Float64Array {
  const m = new Float64Array(n * n2);
  const off = j * H * n * n2;
  for (let h = 0; h < H; h++) for (let i = 0; i < n * n2; i++) m[i] += a[off + h * n * n2 + i] / H;
  return m;
}

/** C = A·B for row-major A [n×k], B [k×m]. */
function matmul64(A: Float64Array, B: Float64Array, n: number, k: number, m: number): Float64Array {
  const C = new Float64Array(n * m);
  for (let i = 0; i < n; i++)
    for (let p = 0; p < k; p++) {
      const a = A[i * k + p];
      if (a !== 0) for (let q = 0; q < m; q++) C[i * m + q] += a * B[p * m + q];
    }
  return C;
}

/** ½I + ½A for a row-major n×n A. */
function halfResidual(A: Float64Array, n: number): Float64Array {
  const M = new Float64Array(n * n);
  for (let i = 0; i < n * n; i++) M[i] = 0.5 * A[i];
  for (let i = 0; i < n; i++) M[i * n + i] += 0.5;
  return M;
}

/** The rollout rule in the header, for batch row j and word position s. */
function rolloutRow(r: PassResult, j: number, s: number, T: number, H: number, L: number, N: number): Float64Array {
  let Rii: Float64Array = new Float64Array(N * N);
  for (let i = 0; i < N; i++) Rii[i * N + i] = 1;
  for (const a of r.encSelf!) Rii = matmul64(halfResidual(headMean(a, j, H, N, N), N), Rii, N, N, N);
  let Rti: Float64Array = new Float64Array(T * N);
  for (let l = 0; l < L; l++) {
    Rti = matmul64(halfResidual(headMean(r.decSelf![l], j, H, T, T), T), Rti, T, T, N);
    const add = matmul64(headMean(r.cross![l], j, H, T, N), Rii, T, N, N);
    for (let i = 0; i < T * N; i++) Rti[i] += add[i];
  }
  const out = Rti.slice(s * N, (s + 1) * N);
  let tot = 0;
  for (const v of out) tot += v;
  if (tot > 0) for (let i = 0; i < N; i++) out[i] /= tot;
  return out;
}

/** Sums an H×W map over the adaptive-average-pool bins of a grid×grid pooling (PyTorch bins). */
export function poolSum(values: ArrayLike<number>, H: number, W: number, grid: number): Float64Array {
  const out = new Float64Array(grid * grid);
  const bins = (n: number) => Array.from({ length: grid }, (_, i) => [Math.floor((i * n) / grid), Math.ceil(((i + 1) * n) / grid)]);
  const by = bins(H), bx = bins(W);
  for (let i = 0; i < grid; i++)
    for (let k = 0; k < grid; k++) {
      let s = 0;
      for (let y = by[i][0]; y < by[i][1]; y++) for (let x = bx[k][0]; x < bx[k][1]; x++) s += values[y * W + x];
      out[i * grid + k] = s;
    }
  return out;
}

/**
 * The explained value (logit or log-probability of tokens[s] at position s, s < T) of every
 * position for each image row, teacher-forced: [rows][T]. Forward passes only, `rowsPerPass` rows each.
 */
export async function teacherForcedValues(w: Weights, tokens: readonly number[], T: number, images: readonly Float32Array[], target: ExplainTarget, rowsPerPass = 64): Promise<Float64Array[]> {
  const cfg = w.cfg, S = cfg.image_size, V = cfg.vocab_size;
  const out: Float64Array[] = [];
  for (let i = 0; i < images.length; i += rowsPerPass) {
    const rows = images.slice(i, i + rowsPerPass), B = rows.length;
    const px = new Float32Array(B * 3 * S * S);
    rows.forEach((r, j) => px.set(r, j * 3 * S * S));
    const ids = new Int32Array(B * T);
    for (let j = 0; j < B; j++) for (let t = 0; t < T; t++) ids[j * T + t] = t === 0 ? cfg.sos_id : tokens[t - 1];
    const image = fromData(px, [B, 3, S, S], 'f32', 'occlusion_images'), idsT = fromData(ids, [B, T], 'i32', 'occlusion_ids');
    const mask = decoderMask(new Float32Array(B * T).fill(1), B, T);
    const f = new Forward(w);
    const dec = decodeText(f, encodeImage(f, image).out, idsT, mask);
    try {
      const logits = (await readMany([dec.logits]))[0] as Float32Array;
      for (let j = 0; j < B; j++) {
        out.push(Float64Array.from({ length: T }, (_, t) => {
          const row = logits.subarray((j * T + t) * V, (j * T + t + 1) * V);
          if (target === 'logit') return row[tokens[t]];
          let m = -Infinity, z = 0;
          for (const v of row) m = Math.max(m, v);
          for (const v of row) z += Math.exp(v - m);
          return row[tokens[t]] - m - Math.log(z);
        }));
      }
    } finally {
      dispose(dec.logits, image, idsT, mask);
    }
  }
  return out;
}

/** Occlusion maps of `steps` (see the header): one pixel-level map per step. */
async function occlusionMaps(w: Weights, pixels: Float32Array, tokens: readonly number[], steps: readonly number[], opts: ExplainOptions): Promise<ExplainMap[]> {
  const S = w.cfg.image_size, SS = S * S, T = Math.max(...steps) + 1, target = opts.target ?? 'logit';
  const { window: win, corners } = occlusionWindows(S, opts.occlusion);
  const images = [pixels, ...corners.map(([x0, y0]) => {
    const img = Float32Array.from(pixels);
    for (let c = 0; c < 3; c++) for (let y = y0; y < y0 + win; y++) img.fill(0, c * SS + y * S + x0, c * SS + y * S + x0 + win);
    return img;
  })];
  const values = await teacherForcedValues(w, tokens, T, images, target, 2 * Math.max(1, opts.rowsPerPass ?? 32));
  const cover = new Float64Array(SS);
  for (const [x0, y0] of corners) for (let y = y0; y < y0 + win; y++) for (let x = x0; x < x0 + win; x++) cover[y * S + x]++;
  return steps.map((s) => {
    const acc = new Float64Array(SS);
    corners.forEach(([x0, y0], k) => {
      const drop = values[0][s] - values[k + 1][s];
      for (let y = y0; y < y0 + win; y++) for (let x = x0; x < x0 + win; x++) acc[y * S + x] += drop;
    });
    const map = acc.map((v, p) => Math.max(0, v / cover[p]));
    return { method: 'occlusion' as const, step: s, token: tokens[s], logit: values[0][s], grid: poolSum(map, S, S, GRID), fine: { height: S, width: S, level: 'pixels' as const, values: map } };
  });
}
