// Attention visualisation: reading the generator's traces to the CPU, teacher-forced traces for a
// given report (beam search output), the figures and the page for one image, grounding over the
// phantom dataset (the `micar attention` / `explain` commands are in src/cli/viz.ts). File access goes through DataFiles and
// io/files, so nothing here needs Deno; the demo app imports the same functions.
import type { Tensor } from '../graph/tensor.ts';
import { dispose, fromData, read } from '../graph/runtime.ts';
import { CachedDecoder, disposeStepTrace, type StepTrace } from '../generate/generator.ts';
import { beamSearch, generate } from '../generate/decode.ts';
import type { Weights } from '../model/weights.ts';
import { inputGeometry, type MicarConfig } from '../model/config.ts';
import { type LoadedModel, readModel } from '../model/load.ts';
import type { RGBImage } from '../data/images.ts';
import { preprocess } from '../data/preprocess.ts';
import { type DataFiles, joinPath, localFiles } from '../data/fs.ts';
import type { PhantomSample } from '../data/phantom.ts';
import { type AttentionTrace, crossRow, GRID } from './heatmap.ts';
import { type ColormapName } from './colormap.ts';
import { expertUsage, routingPerWord } from './experts.ts';
import { aggregateGrounding, groundingScore, type GroundingResult, type GroundingSummary } from './grounding.ts';
import { buildAttentionPageData, renderAttentionPage } from './page.ts';
import { headLayerGridFigure, heatmapFigure, matrixFigure, modelView, Raster } from './png.ts';
import { type ExplainMap, type ExplainMethod, type ExplainOptions, explainSteps } from './explain.ts';
import { findingSentenceMaps } from './explain-scores.ts';

export * from './colormap.ts';
export * from './heatmap.ts';
export * from './experts.ts';
export * from './grounding.ts';
export * from './explain.ts';
export * from './explain-scores.ts';
export * from './page.ts';
export * from './png.ts';

/**
 * Copies row `row` of the generator's per-step traces to the CPU (and frees them unless
 * `keep`). `tokens`: the ids generated for that row; steps past its length are ignored.
 */
const traceReads = new WeakMap<Tensor, Promise<Float32Array | Int32Array>>();

export async function readTrace(traces: readonly StepTrace[], tokens: readonly number[], cfg: MicarConfig, opts: { row?: number; keep?: boolean } = {}): Promise<AttentionTrace> {
  const row = opts.row ?? 0, L = cfg.num_layers, H = cfg.num_heads, N = GRID * GRID;
  if (traces.length < tokens.length) throw new Error(`readTrace: ${traces.length} traced steps for ${tokens.length} tokens (was generate called with trace: true?)`);
  const tr: AttentionTrace = { layers: L, heads: H, grid: GRID, numExperts: cfg.num_experts, tokens: [...tokens], cross: [], self: [], experts: [] };
  const rowOf = async (t: Tensor, per: number, what: string): Promise<Float32Array | Int32Array> => {
    if (t.shape[0] <= row || t.size !== t.shape[0] * per) throw new Error(`readTrace: ${what} has shape [${t.shape}], expected [≥${row + 1}, …] with ${per} values per row`);
    // One read per traced tensor, shared by every row of the batch (rows are read in turn).
    let all = traceReads.get(t);
    if (!all) traceReads.set(t, (all = read(t) as Promise<Float32Array | Int32Array>));
    return (await all).slice(row * per, (row + 1) * per);
  };
  for (let t = 0; t < tokens.length; t++) {
    const s = traces[t];
    if (s.cross.length !== L) throw new Error(`readTrace: step ${t} has ${s.cross.length} cross-attention layers, expected ${L}`);
    const cross: Float32Array[] = [], self: Float32Array[] = [], experts: AttentionTrace['experts'][number] = [];
    for (let l = 0; l < L; l++) {
      cross.push((await rowOf(s.cross[l], H * N, `cross-attention step ${t} layer ${l}`)) as Float32Array);
      self.push((await rowOf(s.self[l], H * (t + 1), `self-attention step ${t} layer ${l}`)) as Float32Array);
      const idx = await rowOf(s.experts[l].indices, cfg.k, `expert indices step ${t} layer ${l}`);
      const wts = await rowOf(s.experts[l].weights, cfg.k, `expert weights step ${t} layer ${l}`);
      experts.push({ indices: Array.from(idx), weights: Array.from(wts) });
    }
    tr.cross.push(cross);
    tr.self.push(self);
    tr.experts.push(experts);
  }
  if (!opts.keep) disposeTraces(traces);
  return tr;
}

export function disposeTraces(traces: readonly StepTrace[]): void {
  for (const s of traces) disposeStepTrace(s);
}

/**
 * Traces of the decoder reading a given report for one image ([1,3,S,S]): step t feeds
 * position t (<sos>, tokens[0..t−1]) exactly as generation does, so for the tokens a beam search
 * chose these are the maps of that hypothesis.
 */
export async function traceTokens(w: Weights, image: Tensor, tokens: readonly number[]): Promise<StepTrace[]> {
  if (image.shape[0] !== 1) throw new Error(`traceTokens: one image expected, got [${image.shape}]`);
  const dec = new CachedDecoder(w, true);
  const out: StepTrace[] = [];
  try {
    await dec.encode(image);
    dec.start(1, 1);
    let prev = w.cfg.sos_id;
    for (const tok of tokens.slice(0, w.cfg.text_seq_len)) {
      const { trace } = await dec.step([prev]);
      out.push(trace!);
      prev = tok;
    }
  } finally {
    dec.dispose();
  }
  return out;
}

/** Generates a report for preprocessed pixels [3,S,S] (greedy, or beam search with `beam` > 1) and traces it. */
export async function attentionForPixels(w: Weights, pixels: Float32Array, opts: { beam?: number; maxLen?: number; lengthPenalty?: number } = {}): Promise<AttentionTrace> {
  const S = w.cfg.image_size;
  if (pixels.length !== 3 * S * S) throw new Error(`attentionForPixels: ${pixels.length} pixel values, expected 3×${S}×${S}`);
  const image = fromData(pixels, [1, 3, S, S], 'f32', 'image');
  try {
    if ((opts.beam ?? 1) > 1) {
      const [best] = (await beamSearch(w, image, { beamWidth: opts.beam!, maxLen: opts.maxLen, lengthPenalty: opts.lengthPenalty, nBest: 1 }))[0];
      return await readTrace(await traceTokens(w, image, best.tokens), best.tokens, w.cfg);
    }
    const r = await generate(w, image, { trace: true, maxLen: opts.maxLen });
    return await readTrace(r.traces, r.tokens[0], w.cfg);
  } finally {
    dispose(image);
  }
}

export interface AttentionOutputs {
  /** File name → bytes (PNGs, the HTML page, routing JSON). */
  files: Map<string, Uint8Array>;
  html: string;
  report: string;
}

function fileWord(w: string): string {
  return w.replace(/[^a-z0-9]+/gi, '_').replace(/^_|_$/g, '') || 'tok';
}

export { inputGeometry };

/**
 * Every figure and the page for one traced image. `original`: the image as loaded (the display
 * is its model view at `displaySize`). PNGs: image.png, word_<t>_<word>.png (mean over layers
 * and heads, with colour bar), word_<t>_<word>_heads.png (layer × head grid), self_attention.png;
 * attention.html; routing.json.
 */
export interface AttentionOutputOptions {
  displaySize?: number;
  colormap?: ColormapName;
  title?: string;
  notes?: string[];
  /** Explanation maps (explainTrace): word_<t>_<w>_<method>.png per method, and the page's method selector. */
  explain?: Map<ExplainMethod, ExplainMap[]>;
  /** The method word_<t>_<w>.png shows and the page opens with (default attention). */
  method?: ExplainMethod;
}

/** Every word of a traced report explained with `methods` (the words past text_seq_len excepted). */
export async function explainTrace(w: Weights, pixels: Float32Array, tokens: readonly number[], methods: readonly ExplainMethod[], opts: ExplainOptions = {}): Promise<Map<ExplainMethod, ExplainMap[]>> {
  const steps = tokens.map((_, i) => i).filter((i) => i < w.cfg.text_seq_len);
  const grad = methods.filter((m) => m !== 'attention');
  const out = grad.length && steps.length ? await explainSteps(w, pixels, tokens, steps, grad, opts) : new Map<ExplainMethod, ExplainMap[]>();
  return new Map(methods.filter((m) => out.has(m)).map((m) => [m, out.get(m)!]));
}

/** The row and grid side a figure draws for an explanation map (its finer map when square). */
function figureMap(m: ExplainMap): { row: ArrayLike<number>; grid: number; what: string } {
  if (m.fine && m.fine.height === m.fine.width) return { row: m.fine.values, grid: m.fine.height, what: m.fine.level === 'pixels' ? 'per pixel' : `${m.fine.height}x${m.fine.width} FPN map` };
  return { row: m.grid, grid: GRID, what: `${GRID}x${GRID} grid` };
}

export function attentionOutputs(tr: AttentionTrace, vocab: readonly string[], cfg: MicarConfig, original: RGBImage, opts: AttentionOutputOptions = {}): AttentionOutputs {
  const D = opts.displaySize ?? Math.max(224, cfg.image_size);
  const geo = inputGeometry(cfg);
  const display = modelView(original, geo.resize, geo.crop, D);
  const tile = modelView(original, geo.resize, geo.crop, Math.min(D, 96));
  const files = new Map<string, Uint8Array>();
  const png = (img: RGBImage) => {
    const r = new Raster(img.width, img.height);
    r.blit(img, 0, 0);
    return r.toPng();
  };
  files.set('image.png', png(display));
  const words = tr.tokens.map((id) => vocab[id] ?? `<${id}>`);
  const pad = String(Math.max(0, words.length - 1)).length;
  words.forEach((w, t) => {
    const name = `word_${String(t).padStart(pad, '0')}_${fileWord(w)}`;
    const shown = opts.method && opts.method !== 'attention' ? opts.explain?.get(opts.method)?.[t] : undefined;
    if (opts.method && opts.method !== 'attention' && !shown) throw new Error(`attentionOutputs: no ${opts.method} map for word ${t}`);
    if (shown) {
      const f = figureMap(shown);
      files.set(`${name}.png`, png(heatmapFigure(display, f.row, { grid: f.grid, colormap: opts.colormap, title: `${t}: ${w} (${opts.method}, ${f.what})` }).image));
    } else files.set(`${name}.png`, png(heatmapFigure(display, crossRow(tr, t), { colormap: opts.colormap, title: `${t}: ${w} (mean of layers and heads)` }).image));
    for (const [method, list] of opts.explain ?? []) {
      if (method === opts.method || !list[t]) continue;
      const f = figureMap(list[t]);
      files.set(`${name}_${method}.png`, png(heatmapFigure(display, f.row, { grid: f.grid, colormap: opts.colormap, title: `${t}: ${w} (${method}, ${f.what})` }).image));
    }
    const maps = tr.cross[t].map((a) => Array.from({ length: tr.heads }, (_, h) => a.subarray(h * tr.grid * tr.grid, (h + 1) * tr.grid * tr.grid)));
    files.set(`${name}_heads.png`, png(headLayerGridFigure(tile, maps, { colormap: opts.colormap, title: `${t}: ${w} - cross-attention per layer and head (shared scale)` })));
  });
  if (words.length) {
    const rows = words.map((_, t) => {
      const r = new Float64Array(t + 1);
      for (let l = 0; l < tr.layers; l++) for (let h = 0; h < tr.heads; h++) for (let j = 0; j <= t; j++) r[j] += tr.self[t][l][h * (t + 1) + j] / (tr.layers * tr.heads);
      return r;
    });
    files.set('self_attention.png', png(matrixFigure(rows, words, ['<sos>', ...words.slice(0, -1)], { colormap: opts.colormap, title: 'self-attention (mean of layers and heads)' })));
  }
  // Per finding sentence (a location stated) and method: the sentence's map, and the map specific
  // to it (minus the other finding sentences' mean, positive part) — on the main job's model the
  // word maps of a two-lesion report draw on both lesions, the specific ones point at their own
  // (README, "Sentence-specific maps"). The page shows the specific ones.
  const pageFigures: { name: string; png: Uint8Array }[] = [];
  if (opts.explain?.size) {
    const S = cfg.image_size, per = findingSentenceMaps(words, opts.explain, S);
    const several = new Set(per.map((x) => x.sentence)).size > 1;
    for (const x of per) {
      const name = `sentence_${x.sentence + 1}_${x.method}`, label = `finding ${x.sentence + 1} "${x.text}" (${x.method}`;
      const mean = png(heatmapFigure(display, x.mean, { grid: S, colormap: opts.colormap, title: `${label}, mean of its words)` }).image);
      files.set(`${name}.png`, mean);
      if (!several) {
        pageFigures.push({ name: `${label}, mean of its words)`, png: mean });
        continue;
      }
      const specific = png(heatmapFigure(display, x.specific, { grid: S, colormap: opts.colormap, title: `${label}, specific: minus the other findings)` }).image);
      files.set(`${name}_specific.png`, specific);
      pageFigures.push({ name: `${label}, specific to it: its map minus the other findings' mean, positive part)`, png: specific });
    }
  }
  const usage = words.length ? expertUsage([tr]) : undefined;
  const data = buildAttentionPageData(tr, vocab, display, {
    title: opts.title, colormap: opts.colormap, usage, notes: opts.notes, figures: pageFigures,
    explain: opts.explain?.size ? { initial: opts.method ?? 'attention', maps: opts.explain } : undefined,
  });
  const html = renderAttentionPage(data);
  files.set('attention.html', new TextEncoder().encode(html));
  const routing = routingPerWord(tr).map((r) => ({ step: r.step, word: words[r.step], layers: r.layers }));
  files.set('routing.json', new TextEncoder().encode(JSON.stringify({ words, routing, usage }, null, 1)));
  return { files, html, report: data.report };
}

export async function writeOutputs(out: AttentionOutputs, dir: string, fs?: DataFiles): Promise<string[]> {
  const files = fs ?? (await localFiles());
  await files.mkdirp(dir);
  const written: string[] = [];
  for (const [name, bytes] of out.files) {
    const p = joinPath(dir, name);
    await files.writeFile(p, bytes);
    written.push(p);
  }
  return written;
}

/** A micar checkpoint (or any source the model loader takes: src/model/load.ts). */
export async function loadModelCheckpoint(source: string | Uint8Array, name = typeof source === 'string' ? source : 'checkpoint'): Promise<LoadedModel> {
  return readModel(source, { name });
}

/** Generates a report per phantom sample (batched greedy, traced) and scores grounding. */
export async function evaluateGrounding(w: Weights, vocab: readonly string[], samples: readonly PhantomSample[], opts: { batch?: number; maxLen?: number } = {}): Promise<{ summary: GroundingSummary; results: GroundingResult[]; tokens: number[][] }> {
  const cfg = w.cfg, S = cfg.image_size, B = opts.batch ?? 8;
  const results: GroundingResult[] = [], tokens: number[][] = [];
  for (let i = 0; i < samples.length; i += B) {
    const chunk = samples.slice(i, i + B);
    const pixels = new Float32Array(chunk.length * 3 * S * S);
    chunk.forEach((s, j) => {
      if (s.image.width !== S || s.image.height !== S) throw new Error(`evaluateGrounding: sample ${s.id} is ${s.image.width}×${s.image.height}; boxes are in model-input pixels, so it must be ${S}×${S}`);
      pixels.set(preprocess(s.image, { resize: S, crop: S }), j * 3 * S * S);
    });
    const image = fromData(pixels, [chunk.length, 3, S, S], 'f32', 'image');
    try {
      const r = await generate(w, image, { trace: true, maxLen: opts.maxLen });
      for (let j = 0; j < chunk.length; j++) {
        const tr = await readTrace(r.traces, r.tokens[j], cfg, { row: j, keep: true });
        results.push(groundingScore(tr, tr.tokens, vocab, chunk[j].findings, S));
        tokens.push(tr.tokens);
      }
      disposeTraces(r.traces);
    } finally {
      dispose(image);
    }
  }
  return { summary: aggregateGrounding(results), results, tokens };
}
