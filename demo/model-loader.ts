// Loading a model in the page from the files a person picked: a training checkpoint (config and
// vocabulary inside), or a plain safetensors / the authors' .pth state dict plus a vocabulary
// (token2id.json + id2token.json, tokenizer.json, or a micar tokenizer JSON) and a config (a
// config.json, or a preset). Everything goes through src/model/load.ts, the loader the CLI and
// the library use, so a mismatch gives the same precise message.
import { readModel, type ModelSource, type NamedFile } from '../src/model/load.ts';
import type { Precision } from '../src/model/precision.ts';
import { PRESETS, type PresetName, presetConfig } from '../src/model/presets.ts';
import { type MicarConfig, normaliseConfig } from '../src/model/config.ts';
import { Weights } from '../src/model/weights.ts';
import { Tokenizer } from '../src/data/tokenizer.ts';
import { phantomSamples } from '../src/data/datasets.ts';
import { checkpointTraining, type TrainState } from '../src/train/checkpoint.ts';
import type { AdamW } from '../src/graph/ops/optim.ts';

export { PRESETS, type PresetName };
export type PickedFile = NamedFile;

export interface DemoModel {
  cfg: MicarConfig;
  tokenizer: Tokenizer;
  weights: Weights;
  /** Training state when the model came from a checkpoint (continues the step count). */
  state: TrainState | null;
  /** Where it came from, in words. */
  source: string;
  /** Puts a checkpoint's saved optimiser state into `opt` (absent for other sources). */
  loadOptimizer?: (opt: AdamW, w: Weights) => void;
  /** The optimiser once the model has been trained in this tab (kept across training runs and saved in checkpoints). */
  opt?: AdamW;
}

/**
 * Builds a model from picked files or a URL. `preset`: the config to use when no config file
 * was picked (for a plain state dict). Errors say what is missing or wrong, naming the files.
 */
export async function loadModelFiles(files: PickedFile[] | URL | string, preset: PresetName | null, precision: Precision = 'f32'): Promise<DemoModel> {
  if (Array.isArray(files) && !files.length) throw new Error('no files picked');
  const m = await readModel(files as ModelSource, { fallbackConfig: preset ?? undefined, precision });
  if (m.checkpoint?.metadata.format === 'micar-checkpoint/1') {
    const t = checkpointTraining(m);
    const metaOpt = m.checkpoint.metadata.optimizer !== undefined;
    return { cfg: m.cfg, tokenizer: m.tokenizer, weights: m.weights, state: t.state, source: `${m.source} (step ${t.state.step})`, loadOptimizer: metaOpt ? t.loadOptimizer : undefined };
  }
  return { cfg: m.cfg, tokenizer: m.tokenizer, weights: m.weights, state: null, source: m.source };
}

/**
 * A fresh model from the tiny preset (random init) with the built-in dataset's vocabulary,
 * so the page is usable without any file: it can be fine-tuned on the built-in dataset.
 */
export async function newTinyModel(seed = 1): Promise<DemoModel> {
  const raw = presetConfig('tiny');
  // Reports do not depend on the image size; 8-px images keep this fast.
  const reports = phantomSamples({ count: 400, seed: 7, size: 8 }).map((s) => s.report);
  const tokenizer = Tokenizer.build(reports, 1, 'whitespace');
  const cfg = normaliseConfig({ ...raw, vocab_size: tokenizer.vocabSize }, 'preset tiny');
  return { cfg, tokenizer, weights: Weights.init(cfg, seed), state: null, source: `new tiny model (preset tiny, random init, seed ${seed})` };
}
