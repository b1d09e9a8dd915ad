// The local_tokens_experiment flag (src/model/config.ts; bench/explain-locality.json): an
// experiment, never the SPEC model. With it the FPN's top-down path is cut (fused =
// fusion(lateral(C2))) and the image encoder's self-attention is skipped (x + FFN(norm_ff(x))).
//
// What is guaranteed, from the architecture: C2 is computed by the stem (conv 7×7 s2 p3, max-pool
// 3×3 s2 p1) and stage 1 (stride 1; two 3×3 convs per BasicBlock, one per Bottleneck; the
// identity / 1×1 downsample path sees less); the lateral is 1×1, the fusion 3×3 pad 1; the
// 7×7 adaptive pool averages bin (i, j) of the fused map; the projection and the FFN-only encoder
// work per token. So image token (i, j) is a function of the input pixels in a window computed
// here by composing each layer's [o·s − p, o·s − p + k − 1] backwards — and of nothing else. A
// perturbation inside a box must leave every token whose window misses the box unchanged BIT FOR
// BIT (the same kernels read the same values in the same order). That is a statement about this
// flag's path only: in the SPEC model C3..C5 (whose receptive field at a 96-pixel image is the
// whole image) reach every fused pixel through the top-down path, and self-attention mixes all 49
// tokens — the test shows the SPEC model on the same perturbation changing tokens outside the
// windows, so the check can tell the two apart on every seed.
//
// Tolerances against the float64 composition (tests/ref/model.ts pieces, composed here): the GPU
// runs in f32 (u = 2⁻²⁴ ≈ 6e-8). A dot product of K random-sign terms rounds like a random walk:
// about √K·u relative to its result (the worst case γ_K·Σ|terms| is no use here: Σ|terms| is
// ~√K times the result); eval BatchNorm, ReLU and max-pool add at most an ulp. Summed over the
// sequential layers of a stage, times 10 for the tail and for sums that cancel more than random
// ones: the bound on the stage's relative L2 error. Stages: C2 = stem (K 147) + stage-1 convs
// (K 576 each); lateral (K 64) + fusion (K 9·d_v); pool (≤ 4×4 = 16 terms); projection (K d_v)
// and per encoder layer RMSNorm + w1/w3 (K d_model) + w2 (K d_ff). A wrong path (the top-down
// sum left in, attention not skipped) errs by O(1), ≥ 10× the end-to-end bound (checked).
import { beforeAll, describe, expect, it } from 'vitest';
import { fromData, init, readMany } from '../src/graph/runtime.ts';
import { backboneLayout, type MicarConfig, normaliseConfig } from '../src/model/config.ts';
import { Weights } from '../src/model/weights.ts';
import { Forward } from '../src/model/context.ts';
import { encodeImage, forward } from '../src/model/micar.ts';
import { PRESETS, presetConfig } from '../src/model/presets.ts';
import { exportModel } from '../src/model/export.ts';
import { readHostModel } from '../src/model/load.ts';
import { toFloat32 } from '../src/io/safetensors.ts';
import { backboneRef, encoderRef, fusionRef, lateralRef, type Map3, poolRef, visionRef, type Weights64 } from './ref/model.ts';
import { adaptiveBins } from './ref/vision.ts';
import { relL2, rng } from './util.ts';
import locality from '../bench/explain-locality.json' with { type: 'json' };

const base = {
  backbone: 'resnet10', image_size: 96, d_v: 16, d_model: 32, d_latent: 48, num_heads: 4, qk_nope_dim: 4, qk_rope_dim: 8,
  d_ff: 32, num_layers: 2, num_experts: 4, k: 2, act_fn: 'silu', moe_mode: 'weighted', text_seq_len: 8, vocab_size: 20,
};
const spec = normaliseConfig(base);
const local = normaliseConfig({ ...base, local_tokens_experiment: true });
const S = spec.image_size, N = 49;
const u = 2 ** -24;
const R = rng('local tokens');

beforeAll(async () => {
  await init();
});

async function to64(w: Weights): Promise<Weights64> {
  const m: Weights64 = new Map();
  for (const [k, t] of await w.toStateDict()) if (t.dtype !== 'I64') m.set(k, Float64Array.from(toFloat32(t)));
  return m;
}

/** One image through encodeImage: C2, the fused and pooled maps, the encoder output [49, d_model], the attention slots. */
async function encode(w: Weights, pixels: Float64Array) {
  const f = new Forward(w, { capture: true, keepAttention: true });
  const e = encodeImage(f, fromData(Float32Array.from(pixels), [1, 3, S, S]));
  const c = (n: string) => f.captures.get(n)!;
  const [c2, fused, pooled, out] = await readMany([c('vis_enc.c2'), c('vis_enc.fused'), c('vis_enc.pooled'), e.out]);
  return { c2, fused, pooled, out, attn: e.attn, fusedShape: c('vis_enc.fused').shape };
}

/**
 * The input rows (or columns: the layers are square) [lo, hi] that fused-map rows [a, b] read in
 * the local path, composing each layer's window backwards; not clipped to the image.
 */
function inputWindow(cfg: MicarConfig, a: number, b: number): [number, number] {
  const { bottleneck, blocks } = backboneLayout(cfg.backbone);
  // [kernel, stride, padding] from the input to the fused map.
  const layers: [number, number, number][] = [[7, 2, 3], [3, 2, 1]];
  for (let j = 0; j < blocks[0]; j++) for (let c = 0; c < (bottleneck ? 1 : 2); c++) layers.push([3, 1, 1]);
  layers.push([1, 1, 0], [3, 1, 1]); // lateral, fusion
  let [lo, hi] = [a, b];
  for (const [k, s, p] of layers.reverse()) [lo, hi] = [lo * s - p, hi * s - p + k - 1];
  return [lo, hi];
}

/** Tokens (row-major 7×7) whose input window meets the box [x0, x1) × [y0, y1). */
function reachable(cfg: MicarConfig, fusedH: number, box: [number, number, number, number]): Set<number> {
  const bins = adaptiveBins(fusedH, 7).map(([a, e]) => inputWindow(cfg, a, e - 1));
  const meets = ([lo, hi]: [number, number], b0: number, b1: number) => lo <= b1 - 1 && hi >= b0;
  const set = new Set<number>();
  for (let i = 0; i < 7; i++) for (let j = 0; j < 7; j++) if (meets(bins[i], box[1], box[3]) && meets(bins[j], box[0], box[2])) set.add(i * 7 + j);
  return set;
}

const rows = (x: ArrayLike<number>, D: number) => Array.from({ length: N }, (_, t) => Array.from(x).slice(t * D, (t + 1) * D));
const asMap = (x: ArrayLike<number>, C: number, H: number, W: number): Map3 => ({ x: Float64Array.from(x), C, H, W });
/** Σ √K·u over the layers (see the tolerance note at the top). */
const sumSqrtKu = (...K: number[]) => K.reduce((a, k) => a + Math.sqrt(k), 0) * u;

describe('local_tokens_experiment', () => {
  it('off (absent or false) is the SPEC forward: bit for bit the same logits, and the encoder output matches the float64 SPEC reference', async () => {
    const seed = R.int(1, 1 << 30);
    const wAbsent = Weights.init(spec, seed);
    const sd = await wAbsent.toStateDict();
    const wFalse = Weights.fromStateDict(normaliseConfig({ ...base, local_tokens_experiment: false }), sd, 'same weights');
    const wOn = Weights.fromStateDict(local, sd, 'same weights');
    const pixels = R.randn(3 * S * S);
    const T = spec.text_seq_len;
    const ids = Array.from({ length: T }, () => R.int(4, spec.vocab_size - 1));
    const run = async (w: Weights) => {
      const o = forward(w, {
        image: fromData(Float32Array.from(pixels), [1, 3, S, S]), inputIds: fromData(Int32Array.from(ids), [1, T], 'i32'),
        labelIds: fromData(Int32Array.from(ids), [1, T], 'i32'), padMask: new Array(T).fill(1),
      });
      const [logits, img, loss] = await readMany([o.dec.logits, o.enc.out, o.loss]);
      return { logits: Array.from(logits), img: Array.from(img), loss: loss[0] };
    };
    const [a, b, on] = [await run(wAbsent), await run(wFalse), await run(wOn)];
    expect(b.logits).toEqual(a.logits);
    expect(b.img).toEqual(a.img);
    expect(b.loss).toBe(a.loss);
    // The flag is read: on, the image tokens differ (by O(1), not rounding).
    expect(relL2(on.img, a.img)).toBeGreaterThan(0.01);
    // Off = SPEC: against the float64 SPEC model (top-down path, self-attention). Bound 10·Σ √K·u
    // along the longest chain: stem 147, stage 1 576 + 576, stages 2..4 (conv1, conv2) 576 + 1152,
    // 1152 + 2304, 2304 + 4608, lateral 5 (K 512), three bilinear steps (4 terms each), fusion
    // 9·d_v, pool 16, projection d_v; per encoder layer: RMSNorm, qkv down (d_model), RMSNorm and
    // up (3·dk), scores (dh), softmax and P·V (49 each), wo (d_latent), FFN (d_model, d_model, d_ff).
    const w64 = await to64(wAbsent);
    const ref = encoderRef(w64, spec, poolRef(visionRef(w64, spec, pixels))).img;
    const dk = spec.d_model / spec.num_heads, dh = spec.d_latent / spec.num_heads;
    const perLayer = [spec.d_model, spec.d_model, 3 * dk, 3 * dk, dh, 49, 49, spec.d_latent, spec.d_model, spec.d_model, spec.d_ff];
    const tol = 10 * sumSqrtKu(147, 576, 576, 576, 1152, 1152, 2304, 2304, 4608, 512, 4, 4, 4, 9 * spec.d_v, 16, spec.d_v, ...Array(spec.num_layers).fill(perLayer).flat());
    const err = relL2(a.img, ref);
    console.log(`flag off vs float64 SPEC: encoder output rel L2 ${err.toExponential(2)} (bound ${tol.toExponential(2)})`);
    expect(err).toBeLessThan(tol);
  });

  it('on: fused = fusion(lateral(C2)), pooled 7×7, encoder = projection + FFN only (no attention), vs a float64 composition of those ops', async () => {
    const w = Weights.init(local, R.int(1, 1 << 30));
    const w64 = await to64(w);
    const pixels = R.randn(3 * S * S);
    const g = await encode(w, pixels);
    const [, , h, wd] = g.fusedShape;
    expect(g.attn.every((a) => a === null)).toBe(true); // no self-attention to keep (rollout: identity)
    // C2 against float64 (stem + stage 1).
    const [c2] = backboneRef(w64, local, pixels, 1);
    const errC2 = relL2(g.c2, c2.x), tolC2 = 10 * sumSqrtKu(147, 576, 576);
    // The FPN step from the GPU's own C2, so its bound is its own: lateral (K 64) + fusion (K 9·d_v).
    const fused64 = fusionRef(w64, lateralRef(w64, asMap(g.c2, c2.C, c2.H, c2.W), 2));
    expect([fused64.C, fused64.H, fused64.W]).toEqual([local.d_v, h, wd]);
    const errF = relL2(g.fused, fused64.x), tolF = 10 * sumSqrtKu(64, 9 * local.d_v);
    // Pool and encoder from the GPU's own fused map: pool (≤ 16 terms), projection (K d_v), and
    // per layer RMSNorm, w1/w3 (K d_model), w2 (K d_ff).
    const pooled64 = poolRef(asMap(g.fused, local.d_v, h, wd));
    const errP = relL2(g.pooled, pooled64), tolP = 10 * sumSqrtKu(16);
    const enc64 = encoderRef(w64, local, Float64Array.from(g.pooled), { selfAttention: false });
    expect(enc64.attn.length).toBe(0);
    const errE = relL2(g.out, enc64.img), tolE = 10 * sumSqrtKu(local.d_v, local.d_v, ...Array(local.num_layers).fill([local.d_model, local.d_model, local.d_ff]).flat());
    // End to end, from the pixels alone.
    const full64 = encoderRef(w64, local, poolRef(fusionRef(w64, lateralRef(w64, c2, 2))), { selfAttention: false }).img;
    const errAll = relL2(g.out, full64), tolAll = tolC2 + tolF + tolP + tolE;
    console.log(`local path rel L2: C2 ${errC2.toExponential(2)} (bound ${tolC2.toExponential(2)}), fused ${errF.toExponential(2)} (${tolF.toExponential(2)}), pooled ${errP.toExponential(2)} (${tolP.toExponential(2)}), encoder ${errE.toExponential(2)} (${tolE.toExponential(2)}), end to end ${errAll.toExponential(2)} (${tolAll.toExponential(2)})`);
    expect(errC2).toBeLessThan(tolC2);
    expect(errF).toBeLessThan(tolF);
    expect(errP).toBeLessThan(tolP);
    expect(errE).toBeLessThan(tolE);
    expect(errAll).toBeLessThan(tolAll);
    // The SPEC composition (top-down path, self-attention) is far from it: what is checked is the cut, not closeness to the SPEC model.
    expect(relL2(g.out, encoderRef(w64, local, poolRef(visionRef(w64, local, pixels))).img)).toBeGreaterThan(10 * tolAll);
  });

  it('on: perturbing the pixels in a box changes no image token whose receptive window misses the box (bit for bit); the SPEC model changes tokens outside the windows', async () => {
    const seed = R.int(1, 1 << 30);
    const wLocal = Weights.init(local, seed);
    const wSpec = Weights.fromStateDict(spec, await wLocal.toStateDict(), 'same weights');
    const pixels = R.randn(3 * S * S);
    const bw = R.int(1, 12), bh = R.int(1, 12), x0 = R.int(0, S - bw), y0 = R.int(0, S - bh);
    const box: [number, number, number, number] = [x0, y0, x0 + bw, y0 + bh];
    const moved = Float64Array.from(pixels);
    for (let c = 0; c < 3; c++) for (let y = y0; y < y0 + bh; y++) for (let x = x0; x < x0 + bw; x++) moved[(c * S + y) * S + x] += R.normal();
    const [a, b] = [await encode(wLocal, pixels), await encode(wLocal, moved)];
    const fusedH = a.fusedShape[2];
    const may = reachable(local, fusedH, box);
    const D = local.d_model;
    const [ra, rb, pa, pb] = [rows(a.out, D), rows(b.out, D), a.pooled, b.pooled];
    const changed: number[] = [];
    for (let t = 0; t < N; t++) {
      const pooledSame = Array.from({ length: local.d_v }, (_, c) => pa[c * N + t] === pb[c * N + t]).every(Boolean);
      const outSame = ra[t].every((v, i) => v === rb[t][i]);
      if (!may.has(t)) {
        expect(pooledSame, `token ${t} pooled (box ${box}, reachable ${[...may]})`).toBe(true);
        expect(outSame, `token ${t} encoder output (box ${box}, reachable ${[...may]})`).toBe(true);
      }
      if (!outSame) changed.push(t);
    }
    // Not vacuous: some tokens lie outside the windows, and the token whose bin holds the box's
    // centre (its fused pixel reads the centre through the middle of every kernel) changes.
    expect(may.size).toBeLessThan(N);
    const bin = (v: number) => adaptiveBins(fusedH, 7).findIndex(([lo, hi]) => v >= lo && v < hi);
    const centre = bin(Math.floor((y0 + (bh - 1) / 2) / 4)) * 7 + bin(Math.floor((x0 + (bw - 1) / 2) / 4));
    expect(changed).toContain(centre);
    // The SPEC model on the same weights and perturbation changes tokens outside those windows.
    const [sa, sb] = [await encode(wSpec, pixels), await encode(wSpec, moved)];
    const [qa, qb] = [rows(sa.out, D), rows(sb.out, D)];
    const outside = [...Array(N).keys()].filter((t) => !may.has(t) && qa[t].some((v, i) => v !== qb[t][i]));
    console.log(`box ${box}: ${may.size} of 49 tokens reachable, ${changed.length} changed with the flag; SPEC changes ${outside.length} of the ${N - may.size} others`);
    expect(outside.length).toBeGreaterThan(0);
  });

  it('the config: a non-boolean value is an error naming the field; no preset sets it; bench/explain-locality.json does; a misspelt field is an error', () => {
    for (const bad of ['yes', 1, null, 'true'])
      expect(() => normaliseConfig({ ...base, local_tokens_experiment: bad }, 'cfg.json')).toThrow(/cfg\.json: field "local_tokens_experiment" must be true or false/);
    expect(normaliseConfig(base).local_tokens_experiment).toBeUndefined();
    for (const p of PRESETS) expect(Object.keys(presetConfig(p)), p).not.toContain('local_tokens_experiment');
    expect(normaliseConfig({ ...locality, vocab_size: 20 }, 'explain-locality').local_tokens_experiment).toBe(true);
    // A misspelt flag would silently give the SPEC model: a field within an edit or two of a
    // config field is an error naming both; other tools' fields (far from every name) pass.
    expect(() => normaliseConfig({ ...base, local_token_experiment: true }, 'cfg.json')).toThrow(/cfg\.json: unknown field "local_token_experiment"; did you mean "local_tokens_experiment"\?/);
    expect(() => normaliseConfig({ ...base, dmodel: 64 }, 'cfg.json')).toThrow(/unknown field "dmodel"; did you mean "d_model"/);
    expect(() => normaliseConfig({ ...base, epoch: 3 }, 'cfg.json')).toThrow(/unknown field "epoch"; did you mean "epochs"/);
    expect(normaliseConfig({ ...base, tolerance: {}, architectures: ['MicarVLMoE'], case: 'tiny', batch: 4 }).batch_size).toBe(4);
  });

  it("export: the authors' .pth and a plain state dict refuse a model with the flag, naming it; the hf folder records it and loads back with it", async () => {
    const w = Weights.init(local, R.int(1, 1 << 30));
    const src = { cfg: local, tokenizer: null, stateDict: await w.toStateDict() };
    for (const to of ['authors', 'safetensors'] as const) expect(() => exportModel(src, to), to).toThrow(/"local_tokens_experiment".*--to hf/);
    const { files } = exportModel(src, 'hf');
    expect(JSON.parse(new TextDecoder().decode(files.get('config.json')!)).local_tokens_experiment).toBe(true);
    const back = await readHostModel([...files].map(([name, bytes]) => ({ name, bytes })), { vocabOptional: true });
    expect(back.cfg.local_tokens_experiment).toBe(true);
    expect([...back.stateDict.keys()].sort()).toEqual([...src.stateDict.keys()].sort());
    // Without the flag every format exports (as export.test.ts checks in full).
    for (const to of ['authors', 'safetensors', 'hf'] as const) expect(exportModel({ ...src, cfg: spec }, to).files.size).toBeGreaterThan(0);
  });
});
