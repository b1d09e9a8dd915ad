// micar-webgpu as a library: load a MicarVLMoE model from any source the loader takes, write
// reports (greedy, streamed, beam search), read attention maps and expert routing, fine-tune
// with a progress callback, score reports, and export to the authors' PyTorch format, the
// Hugging Face layout or plain safetensors. Runs in Deno and in browsers with WebGPU.
//
//   import { loadModel } from 'micar-webgpu';
//   const model = await loadModel('runs/main/best.safetensors');
//   console.log((await model.generate(pngBytes)).text);
import { dispose, fromData, init } from './graph/runtime.ts';
import { AdamW } from './graph/ops/optim.ts';
import { decodeImage, type RGBImage, toRGB } from './data/images.ts';
import { preprocess } from './data/preprocess.ts';
import { type CleanerName, Tokenizer } from './data/tokenizer.ts';
import { phantomSamples } from './data/datasets.ts';
import { beamSearch as beamSearchOnGpu, generate as generateOnGpu, generateStream as streamOnGpu } from './generate/decode.ts';
import { type MicarConfig, normaliseConfig } from './model/config.ts';
import { type LoadedModel, type ModelSource, readModel, type ReadModelOptions } from './model/load.ts';
import { presetConfig } from './model/presets.ts';
import { Weights } from './model/weights.ts';
import { checkpointBytes } from './train/checkpoint.ts';
import { epochOrder, hostBatch, type TrainExample } from './train/batches.ts';
import { stepLr, trainStep } from './train/trainer.ts';
import { attentionForPixels, attentionOutputs, type AttentionOutputs, type ExplainMap, type ExplainMethod, type ExplainOptions, explainTrace, inputGeometry } from './viz/index.ts';
import type { AttentionTrace } from './viz/heatmap.ts';
import { expertUsage, type ExpertUsage, routingPerWord, type WordRouting } from './viz/experts.ts';

export type { AttentionOutputs, AttentionTrace, CleanerName, ExpertUsage, MicarConfig, ModelSource, RGBImage, WordRouting };
export { computeMetrics, type CaptionMetrics, type ComputeMetricsOptions } from './metrics/index.ts';
export { decodeImage, encodePng } from './data/images.ts';
// JPEG goes through libjpeg-turbo (WASM): in a browser, give the .wasm's URL once before the first JPEG
// (e.g. Vite: import url from '@cornerstonejs/codec-libjpeg-turbo-8bit/decodewasm?url').
export { setJpegWasm } from './data/jpeg.ts';
export { Tokenizer } from './data/tokenizer.ts';
export { EXPLAIN_METHODS, type ExplainMap, type ExplainMethod, type ExplainOptions } from './viz/explain.ts';
export { PRESETS, type PresetName, presetConfig } from './model/presets.ts';
import { type ExportFormat, exportModel, type ExportOptions } from './model/export.ts';
export { exportModel, type ExportFormat, type ExportOptions };

/**
 * An image: encoded PNG / JPEG bytes, a Blob / File, 8-bit RGB ({width, height, data} with 3
 * values a pixel), RGBA ImageData, or pixels already preprocessed for the model (Float32Array
 * [3, S, S], normalised).
 */
export type ImageInput = Uint8Array | ArrayBuffer | Blob | RGBImage | { width: number; height: number; data: Uint8ClampedArray | Uint8Array } | Float32Array;

export interface LoadModelOptions extends ReadModelOptions {}

/** A report with its token ids. */
export interface Report {
  text: string;
  tokens: number[];
  /** Sum of the tokens' log-probabilities. */
  logp: number;
}

export interface BeamReport extends Report {
  /** logp / length^lengthPenalty (the ranking score). */
  score: number;
  /** Ended with <eos> (else cut at maxLen). */
  finished: boolean;
}

/** What the model looked at while writing a report: per word, cross-attention over the 7×7 image grid (per layer and head), self-attention and the experts chosen. */
export interface AttentionReport extends Report {
  words: string[];
  trace: AttentionTrace;
  /** Per word and layer: the experts chosen and their weights. */
  routing: WordRouting[];
  /** How often each expert was chosen, per layer. */
  usage: ExpertUsage;
}

export interface FineTuneExample {
  image: ImageInput;
  report: string;
}

export interface FineTuneProgress {
  step: number;
  steps: number;
  epoch: number;
  loss: number;
}

export interface FineTuneOptions {
  /** Optimiser steps (default: one pass over the data). */
  steps?: number;
  batchSize?: number;
  /** Learning rate of the decoder side (default the config's lr) and of the vision encoder (default the config's v_lr). */
  lr?: number;
  visionLr?: number;
  seed?: number;
  onProgress?: (p: FineTuneProgress) => void;
  /** Stops after the current step. */
  signal?: AbortSignal;
}

let ready: Promise<unknown> | null = null;
/** Starts WebGPU (once). loadModel and createModel call it. */
export function initGpu(): Promise<unknown> {
  return (ready ??= init());
}

async function toRgb(image: Exclude<ImageInput, Float32Array>): Promise<RGBImage> {
  if (image instanceof Uint8Array) return decodeImage(image, 'image');
  if (image instanceof ArrayBuffer) return decodeImage(new Uint8Array(image), 'image');
  if (typeof Blob !== 'undefined' && image instanceof Blob) return decodeImage(new Uint8Array(await image.arrayBuffer()), (image as { name?: string }).name ?? 'image');
  const { width, height, data } = image as RGBImage;
  const channels = data.length / (width * height);
  if (channels === 3 && data instanceof Uint8Array) return image as RGBImage;
  if (channels !== 3 && channels !== 4) throw new Error(`image: ${data.length} values for ${width}×${height} pixels (expected 3 or 4 a pixel)`);
  return toRGB(width, height, channels, data);
}

/** A MicarVLMoE model on the GPU with its vocabulary. */
export class MicarModel {
  private opt: AdamW | null = null;

  constructor(readonly config: MicarConfig, readonly tokenizer: Tokenizer, readonly weights: Weights, readonly source: string) {}

  /** The model's input for an image: decoded, resized and centre-cropped as the authors do, normalised, [3, S, S]. */
  async pixels(image: ImageInput): Promise<Float32Array> {
    const S = this.config.image_size;
    if (image instanceof Float32Array) {
      if (image.length !== 3 * S * S) throw new Error(`image: ${image.length} preprocessed values, expected 3×${S}×${S}`);
      return image;
    }
    return preprocess(await toRgb(image), inputGeometry(this.config));
  }

  private async withImage<T>(image: ImageInput, fn: (t: ReturnType<typeof fromData>) => Promise<T>): Promise<T> {
    const S = this.config.image_size;
    const t = fromData(await this.pixels(image), [1, 3, S, S], 'f32', 'image');
    try {
      return await fn(t);
    } finally {
      dispose(t);
    }
  }

  private report(tokens: number[], logp: number): Report {
    return { text: this.tokenizer.decode(tokens), tokens, logp };
  }

  /**
   * Greedy decoding (or sampling with `sample`). Greedy reads the chosen tokens back every
   * `readEvery` steps (default 8; the GPU feeds each step's choice to the next, and each
   * read-back costs a fixed wait: Deno ≥ 10 ms, Firefox ~100 ms).
   */
  generate(image: ImageInput, opts: { maxLen?: number; sample?: { temperature?: number; topP?: number; seed?: number }; readEvery?: number } = {}): Promise<Report> {
    return this.withImage(image, async (t) => {
      const r = await generateOnGpu(this.weights, t, { maxLen: opts.maxLen, sample: opts.sample, readEvery: opts.readEvery });
      return this.report(r.tokens[0], r.scores[0]);
    });
  }

  /**
   * Each word as soon as it is read back (greedy); stops at <eos>. Words come in batches of up
   * to `readEvery` (default 8: the first after one step, then 2, 4, 8); 1 gives each word
   * right after its step, at one read-back wait per word.
   */
  async *generateStream(image: ImageInput, opts: { maxLen?: number; readEvery?: number } = {}): AsyncGenerator<{ token: number; word: string; step: number }> {
    const S = this.config.image_size;
    const t = fromData(await this.pixels(image), [1, 3, S, S], 'f32', 'image');
    try {
      for await (const s of streamOnGpu(this.weights, t, { maxLen: opts.maxLen, readEvery: opts.readEvery })) {
        if (s.token === this.config.eos_id) break;
        yield { token: s.token, word: this.tokenizer.decode([s.token]), step: s.step };
      }
    } finally {
      dispose(t);
    }
  }

  /** The n best reports by beam search, best first. */
  beamSearch(image: ImageInput, opts: { beamWidth?: number; maxLen?: number; lengthPenalty?: number; nBest?: number } = {}): Promise<BeamReport[]> {
    const beamWidth = opts.beamWidth ?? this.config.beam_width ?? 3;
    return this.withImage(image, async (t) => {
      const hyps = (await beamSearchOnGpu(this.weights, t, { beamWidth, maxLen: opts.maxLen, lengthPenalty: opts.lengthPenalty, nBest: Math.min(opts.nBest ?? 1, beamWidth) }))[0];
      return hyps.map((h) => ({ ...this.report(h.tokens, h.logp), score: h.score, finished: h.finished }));
    });
  }

  /** Writes a report (greedy, or the best beam with `beam` > 1) and returns what the model attended to and which experts it used for every word. */
  async attention(image: ImageInput, opts: { beam?: number; maxLen?: number; lengthPenalty?: number } = {}): Promise<AttentionReport> {
    const trace = await attentionForPixels(this.weights, await this.pixels(image), opts);
    const words = trace.tokens.map((id) => this.tokenizer.tokens[id] ?? `<${id}>`);
    const body = trace.tokens.filter((id) => id !== this.config.eos_id);
    return { text: this.tokenizer.decode(body), tokens: trace.tokens, logp: NaN, words, trace, routing: routingPerWord(trace), usage: expertUsage([trace]) };
  }

  /**
   * Every word of a report explained with each method (attention, rollout, grad-attention,
   * gradcam, saliency; see src/viz/explain.ts): method → one map per word.
   */
  async explain(image: ImageInput, report: Pick<Report, 'tokens'>, methods: readonly ExplainMethod[], opts: ExplainOptions = {}): Promise<Map<ExplainMethod, ExplainMap[]>> {
    return explainTrace(this.weights, await this.pixels(image), report.tokens, methods, opts);
  }

  /** The figures (PNG per word, self-attention matrix) and a self-contained HTML page for an attention report; with `explain` (from explain()) also per-method figures and a method selector. */
  async attentionPage(image: Exclude<ImageInput, Float32Array>, report: AttentionReport, opts: { title?: string; displaySize?: number; explain?: Map<ExplainMethod, ExplainMap[]>; method?: ExplainMethod } = {}): Promise<AttentionOutputs> {
    return attentionOutputs(report.trace, this.tokenizer.tokens, this.config, await toRgb(image), opts);
  }

  /** Fine-tunes in place (see fineTune). */
  fineTune(data: FineTuneExample[], opts: FineTuneOptions = {}): Promise<{ losses: number[] }> {
    return fineTune(this, data, opts);
  }

  /** The model's files for the authors' PyTorch code (`authors`), Hugging Face tools (`hf`) or as a plain state dict (`safetensors`). */
  async export(to: ExportFormat, opts: ExportOptions = {}): Promise<Map<string, Uint8Array>> {
    return exportModel({ cfg: this.config, tokenizer: this.tokenizer, stateDict: await this.weights.toStateDict() }, to, opts).files;
  }

  /** A micar checkpoint (weights, config, vocabulary) as bytes: loadModel reads it back. */
  async checkpoint(): Promise<Uint8Array> {
    return checkpointBytes(this.weights, null, this.tokenizer, null);
  }

  /** The AdamW state fineTune keeps between calls. */
  optimizer(): AdamW {
    if (!this.opt) {
      const c = this.config, { vision, other } = this.weights.trainable();
      this.opt = new AdamW([{ params: vision, lr: c.v_lr ?? 5e-5 }, { params: other, lr: c.lr ?? 1e-4 }], {
        betas: c.betas ?? [0.9, 0.999], eps: c.eps ?? 1e-8, weightDecay: c.weight_decay ?? 5e-5, amsgrad: c.amsgrad ?? true,
      });
    }
    return this.opt;
  }

  /** Frees the model's GPU memory. */
  dispose(): void {
    dispose(...this.weights.tensors.values(), ...[...this.weights.chunked.values()].flat());
    this.opt = null;
  }
}

function wrap(m: LoadedModel): MicarModel {
  return new MicarModel(m.cfg, m.tokenizer, m.weights, m.source);
}

/**
 * Loads a model: a micar checkpoint; the authors' `model_snapshot.pth` (or any state dict) with
 * `vocab` and `config`; a folder in the Hugging Face or the authors' layout; a URL (a folder
 * when it ends in "/"); bytes, a Blob, or named files.
 */
export async function loadModel(source: ModelSource, opts: LoadModelOptions = {}): Promise<MicarModel> {
  await initGpu();
  return wrap(await readModel(source, opts));
}

/**
 * A new, randomly initialised model (the authors' initialisation) from a config (preset name or
 * fields) and a vocabulary (a Tokenizer, or reports to build one from).
 */
export async function createModel(config: string | Record<string, unknown>, vocabulary: Tokenizer | { reports: string[]; minFrequency?: number; cleaner?: CleanerName }, opts: { seed?: number } = {}): Promise<MicarModel> {
  await initGpu();
  const raw = typeof config === 'string' ? presetConfig(config) : { ...config };
  const tokenizer = vocabulary instanceof Tokenizer ? vocabulary : Tokenizer.build(vocabulary.reports, vocabulary.minFrequency ?? Number(raw.min_frequency ?? 1), vocabulary.cleaner ?? 'whitespace');
  const cfg = normaliseConfig({ ...raw, vocab_size: tokenizer.vocabSize }, typeof config === 'string' ? `preset ${config}` : 'config');
  const seed = opts.seed ?? cfg.seed ?? 1;
  return new MicarModel(cfg, tokenizer, Weights.init(cfg, seed), `new ${typeof config === 'string' ? config : 'model'} (random init, seed ${seed})`);
}

/**
 * Fine-tunes `model` in place on (image, report) pairs with the trainer's own step (AdamW with
 * the config's two learning rates, dropout as configured, BatchNorm statistics updated), the
 * trainer's shuffling, and StepLR per pass over the data. The optimiser state carries over to
 * later calls. `onProgress` is called after every step.
 */
export async function fineTune(model: MicarModel, data: FineTuneExample[], opts: FineTuneOptions = {}): Promise<{ losses: number[] }> {
  if (!data.length) throw new Error('fineTune: no examples');
  const cfg = model.config;
  const B = Math.min(opts.batchSize ?? cfg.batch_size ?? 16, data.length);
  const perEpoch = Math.ceil(data.length / B);
  const steps = opts.steps ?? perEpoch;
  if (!Number.isInteger(steps) || steps < 1) throw new Error(`fineTune: steps must be a positive integer, got ${steps}`);
  const seed = opts.seed ?? cfg.seed ?? 1;
  const examples: TrainExample[] = [];
  for (const [i, d] of data.entries()) {
    if (typeof d.report !== 'string') throw new Error(`fineTune: example ${i} has no report string`);
    examples.push({ id: String(i), pixels: await model.pixels(d.image), report: d.report });
  }
  const opt = model.optimizer();
  const lr = opts.lr ?? cfg.lr ?? 1e-4, vLr = opts.visionLr ?? cfg.v_lr ?? 5e-5;
  const losses: number[] = [];
  for (let step = 0; step < steps; step++) {
    if (opts.signal?.aborted) break;
    const epoch = Math.floor(step / perEpoch), s = step % perEpoch;
    opt.setLr(0, stepLr(vLr, epoch, cfg.step_size ?? Number.MAX_SAFE_INTEGER, cfg.gamma ?? 0.1));
    opt.setLr(1, stepLr(lr, epoch, cfg.step_size ?? Number.MAX_SAFE_INTEGER, cfg.gamma ?? 0.1));
    const order = epochOrder(examples.length, seed, epoch);
    const batch = await hostBatch(order.slice(s * B, (s + 1) * B).map((j) => examples[j]), model.tokenizer, cfg.text_seq_len, cfg.image_size);
    const stepSeed = (Math.imul(seed, 0x27d4eb2d) + (opt.stepCount + 1) * 0x165667b1) >>> 0;
    const loss = await trainStep(model.weights, opt, batch, model.tokenizer, stepSeed);
    losses.push(loss);
    opts.onProgress?.({ step: step + 1, steps, epoch, loss });
  }
  return { losses };
}

/** Images and reports of the built-in synthetic dataset (CT / MRI / X-ray / fundus / specimen phantoms with templated reports). */
export function builtInExamples(opts: { count: number; seed?: number; size: number }): { id: string; image: RGBImage; report: string }[] {
  return phantomSamples({ count: opts.count, seed: opts.seed ?? 7, size: opts.size }).map((s) => {
    if (!s.image) throw new Error(`built-in sample ${s.id} has no image`);
    return { id: s.id, image: s.image as RGBImage, report: s.report };
  });
}
