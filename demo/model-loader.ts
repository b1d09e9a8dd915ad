// Loading a model in the page from the files a person picked: a training checkpoint (config and
// vocabulary inside), or a plain safetensors / the authors' .pth state dict plus a vocabulary
// (token2id.json + id2token.json, or a micar tokenizer JSON) and a config (a config.json, or a
// preset from configs/). Everything goes through the same readers and Weights.fromStateDict the
// CLI uses, so a mismatch gives the same precise message.
import { readSafetensors, type HostTensor } from '../src/io/safetensors.ts';
import { readPth } from '../src/io/pth.ts';
import { CHECKPOINT_FORMAT, parseCheckpoint, type TrainState } from '../src/train/checkpoint.ts';
import { type MicarConfig, normaliseConfig } from '../src/model/config.ts';
import { Weights } from '../src/model/weights.ts';
import { Tokenizer, type TokenizerJSON } from '../src/data/tokenizer.ts';
import { phantomSamples } from '../src/data/datasets.ts';
import type { AdamW } from '../src/graph/ops/optim.ts';

export interface PickedFile {
  name: string;
  bytes: Uint8Array;
}

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

/** Config presets shipped in configs/ (fetched by URL, so the built app emits them as assets). */
export const PRESETS = ['tiny', 'covctr', 'mmretinal', 'pgross', 'roco', 'paper'] as const;
export type PresetName = (typeof PRESETS)[number];

const PRESET_URLS: Record<PresetName, URL> = {
  tiny: new URL('../configs/tiny.json', import.meta.url),
  covctr: new URL('../configs/covctr.json', import.meta.url),
  mmretinal: new URL('../configs/mmretinal.json', import.meta.url),
  pgross: new URL('../configs/pgross.json', import.meta.url),
  roco: new URL('../configs/roco.json', import.meta.url),
  paper: new URL('../configs/paper.json', import.meta.url),
};

export async function fetchPreset(name: PresetName): Promise<Record<string, unknown>> {
  const url = PRESET_URLS[name];
  if (!url) throw new Error(`config preset "${name}" does not exist (have ${PRESETS.join(', ')})`);
  const res = await fetch(url);
  if (!res.ok) throw new Error(`config preset ${name}: HTTP ${res.status} for ${url}`);
  return (await res.json()) as Record<string, unknown>;
}

function parseJson(f: PickedFile): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(f.bytes));
  } catch (e) {
    throw new Error(`${f.name}: not valid JSON (${(e as Error).message})`);
  }
}

function baseName(name: string): string {
  return name.split('/').pop()!.toLowerCase();
}

interface Classified {
  weights: PickedFile[];
  token2id?: PickedFile;
  id2token?: PickedFile;
  tokenizer?: PickedFile;
  config?: PickedFile;
  ignored: string[];
}

/** Sorts picked files into weights, vocabulary and config by name and content. */
export function classifyFiles(files: PickedFile[]): Classified {
  const c: Classified = { weights: [], ignored: [] };
  for (const f of files) {
    const n = baseName(f.name);
    if (/\.(safetensors|pth|pt|bin|ckpt)$/.test(n)) c.weights.push(f);
    else if (n === 'token2id.json') c.token2id = f;
    else if (n === 'id2token.json') c.id2token = f;
    else if (n.endsWith('.json')) {
      const j = parseJson(f) as Record<string, unknown>;
      if (j && typeof j === 'object' && j.format === 'micar-tokenizer/1') c.tokenizer = f;
      else if (j && typeof j === 'object' && 'backbone' in j) {
        if (c.config) throw new Error(`two config files picked: ${c.config.name} and ${f.name}`);
        c.config = f;
      } else c.ignored.push(`${f.name} (JSON that is neither a config with "backbone" nor a vocabulary)`);
    } else c.ignored.push(`${f.name} (not a weights, vocabulary or config file)`);
  }
  return c;
}

/** The state dict of a plain weights file (safetensors or torch.save zip), keys as stored. */
function stateDictOf(f: PickedFile): Map<string, HostTensor> {
  const n = baseName(f.name);
  const isZip = f.bytes[0] === 0x50 && f.bytes[1] === 0x4b;
  if (isZip || /\.(pth|pt|bin|ckpt)$/.test(n)) {
    if (!isZip) throw new Error(`${f.name}: not a torch.save zip archive (first bytes are not "PK"); legacy non-zip .pth files are not supported`);
    return readPth(f.bytes, f.name).stateDict;
  }
  return readSafetensors(f.bytes, f.name).tensors;
}

/** Drops a DataParallel `module.` prefix when every key has it. */
function stripModulePrefix(sd: Map<string, HostTensor>): Map<string, HostTensor> {
  const keys = [...sd.keys()];
  if (!keys.length || !keys.every((k) => k.startsWith('module.'))) return sd;
  return new Map([...sd].map(([k, v]) => [k.slice('module.'.length), v]));
}

/**
 * Builds a model from the picked files. `preset`: the config to use when no config file was
 * picked (for a plain state dict). Errors say what is missing or wrong, naming the files.
 */
export async function loadModelFiles(files: PickedFile[], preset: PresetName | null): Promise<DemoModel> {
  if (!files.length) throw new Error('no files picked');
  const c = classifyFiles(files);
  if (c.weights.length === 0) throw new Error(`no weights file among ${files.map((f) => f.name).join(', ')} (pick a .safetensors checkpoint, or a .safetensors / .pth state dict with its vocabulary)`);
  if (c.weights.length > 1) throw new Error(`pick one weights file, got ${c.weights.map((f) => f.name).join(', ')}`);
  const wf = c.weights[0];
  // A training checkpoint carries config and vocabulary itself.
  if (/\.safetensors$/i.test(wf.name) || (wf.bytes[0] !== 0x50 || wf.bytes[1] !== 0x4b)) {
    const { metadata } = readSafetensors(wf.bytes, wf.name);
    if (metadata.format === CHECKPOINT_FORMAT) {
      const ck = parseCheckpoint(wf.bytes, wf.name);
      return { cfg: ck.cfg, tokenizer: ck.tokenizer, weights: ck.weights, state: ck.state, source: `checkpoint ${wf.name} (step ${ck.state.step})`, loadOptimizer: ck.loadOptimizer };
    }
  }
  const sd = stripModulePrefix(stateDictOf(wf));
  let tokenizer: Tokenizer;
  if (c.tokenizer) tokenizer = Tokenizer.fromJSON(parseJson(c.tokenizer) as TokenizerJSON);
  else if (c.token2id && c.id2token) {
    tokenizer = Tokenizer.fromAuthorsVocab(parseJson(c.token2id) as Record<string, number>, parseJson(c.id2token) as Record<string, string>);
  } else {
    const have = [c.token2id?.name, c.id2token?.name].filter(Boolean).join(', ');
    throw new Error(`${wf.name} is a plain state dict: it needs its vocabulary too: pick token2id.json and id2token.json (the authors' files) or a micar tokenizer JSON along with it${have ? ` (only ${have} was picked)` : ''}`);
  }
  let raw: Record<string, unknown>;
  let cfgSource: string;
  if (c.config) {
    raw = parseJson(c.config) as Record<string, unknown>;
    cfgSource = c.config.name;
  } else if (preset) {
    raw = await fetchPreset(preset);
    cfgSource = `preset ${preset}`;
  } else throw new Error(`${wf.name} is a plain state dict: pick a config.json with it or choose a config preset`);
  // The vocabulary decides the vocabulary size (presets leave it 0).
  const given = Number(raw.vocab_size ?? 0);
  if (given && given !== tokenizer.vocabSize) throw new Error(`${cfgSource}: vocab_size ${given} but the vocabulary has ${tokenizer.vocabSize} tokens`);
  const cfg = normaliseConfig({ ...raw, vocab_size: tokenizer.vocabSize }, cfgSource);
  const weights = Weights.fromStateDict(cfg, sd, wf.name);
  return { cfg, tokenizer, weights, state: null, source: `${wf.name} with ${cfgSource} and a ${tokenizer.vocabSize}-token vocabulary` };
}

/**
 * A fresh model from configs/tiny.json (random init) with the built-in dataset's vocabulary,
 * so the page is usable without any file: it can be fine-tuned on the built-in dataset.
 */
export async function newTinyModel(seed = 1): Promise<DemoModel> {
  const raw = await fetchPreset('tiny');
  // Reports do not depend on the image size; 8-px images keep this fast.
  const reports = phantomSamples({ count: 400, seed: 7, size: 8 }).map((s) => s.report);
  const tokenizer = Tokenizer.build(reports, 1, 'whitespace');
  const cfg = normaliseConfig({ ...raw, vocab_size: tokenizer.vocabSize }, 'configs/tiny.json');
  return { cfg, tokenizer, weights: Weights.init(cfg, seed), state: null, source: `new tiny model (configs/tiny.json, random init, seed ${seed})` };
}
