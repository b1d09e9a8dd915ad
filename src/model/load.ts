// The one model loader, used by the CLI, the web app and the library: weights, config and
// vocabulary from
//   - a micar checkpoint (safetensors with config and vocabulary in its metadata),
//   - the authors' `model_snapshot.pth` (or any plain safetensors / .pth state dict, DDP's
//     `module.` prefix stripped) with a vocabulary (token2id.json + id2token.json, a micar
//     tokenizer JSON or an HF tokenizer.json) and a config (preset name, JSON file or object),
//   - a folder in the Hugging Face layout (config.json, model.safetensors, tokenizer.json,
//     tokenizer_config.json) or the authors' layout (model_snapshot.pth, token2id.json, id2token.json),
//   - a URL of a file or (ending in "/") of such a folder, or bytes / a Blob / named files.
// Every error names the file and, where one is involved, the field or tensor.
import { type Precision, type ResolvedPrecision, resolvePrecision } from './precision.ts';
import { Tokenizer, type CleanerName, type TokenizerJSON } from '../data/tokenizer.ts';
import { joinPath, localFiles } from '../data/fs.ts';
import { readPth } from '../io/pth.ts';
import { type HostTensor, readSafetensors } from '../io/safetensors.ts';
import { type MicarConfig, normaliseConfig } from './config.ts';
import { isPreset, presetConfig } from './presets.ts';

import { checkStateDictFits, Weights } from './weights.ts';

export const CHECKPOINT_FORMAT = 'micar-checkpoint/1';
/** `model_type` in an exported Hugging Face config.json. */
export const HF_MODEL_TYPE = 'micar_vlmoe';

export interface NamedFile {
  name: string;
  bytes: Uint8Array;
}

/** A model source: a path (file or folder, Deno/Node), a URL (a folder when it ends in "/"), bytes, a Blob / File, or named files (e.g. picked in a page). */
export type ModelSource = string | URL | Uint8Array | ArrayBuffer | Blob | NamedFile[];

export interface ReadModelOptions {
  /** Vocabulary for a plain state dict: a folder (path or URL) with token2id.json + id2token.json or tokenizer.json, one such file, named files, or a Tokenizer. */
  vocab?: string | URL | NamedFile[] | Tokenizer;
  /** Config for a plain state dict: a preset name (tiny, paper, …), a JSON file (path or URL), or the config fields. */
  config?: string | URL | Record<string, unknown>;
  /** Config used when neither `config` nor a config file beside the weights is given (the web app's preset choice). */
  fallbackConfig?: string | Record<string, unknown>;
  /** Name used in messages when the source is bytes. */
  name?: string;
  /**
   * Element type of the model on the GPU: f32 (default), f16 (weights, activations and the
   * key/value cache in f16; needs shader-f16), or auto (f16 where the adapter has it).
   */
  precision?: Precision;
}

/** A model read into host memory (no GPU needed): what export and the GPU loader start from. */
export interface HostModel {
  cfg: MicarConfig;
  /** Null only when read with `vocabOptional` and no vocabulary was found. */
  tokenizer: Tokenizer | null;
  /** The state dict, keys and shapes checked against the config; dtypes as stored. */
  stateDict: Map<string, HostTensor>;
  /** The weights file, for messages. */
  file: string;
  source: string;
  checkpoint?: LoadedModel['checkpoint'];
}

export interface LoadedModel {
  cfg: MicarConfig;
  tokenizer: Tokenizer;
  weights: Weights;
  /** Where the model came from, in words. */
  source: string;
  /** The precision the weights were loaded in (`note` set when auto fell back to f32). */
  precision: ResolvedPrecision;
  /** Set when the source was a micar checkpoint: its metadata and optimiser tensors (names without "optim."). */
  checkpoint?: { file: string; metadata: Record<string, string>; optim: Map<string, HostTensor> };
}

const WEIGHTS_EXT = /\.(safetensors|pth|pt|bin|ckpt)$/i;

function baseName(name: string): string {
  return name.split(/[\\/]/).pop()!.toLowerCase();
}

function isZip(b: Uint8Array): boolean {
  return b.length >= 2 && b[0] === 0x50 && b[1] === 0x4b;
}

/** safetensors: an 8-byte little-endian header length, then a JSON object. */
function looksLikeSafetensors(b: Uint8Array): boolean {
  if (b.length < 10) return false;
  const n = Number(new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true));
  return n > 1 && n <= b.length - 8 && b[8] === 0x7b;
}

function parseJson(f: NamedFile): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(f.bytes));
  } catch (e) {
    throw new Error(`${f.name}: not valid JSON (${(e as Error).message})`);
  }
}

function isRemote(s: string | URL): boolean {
  return s instanceof URL || /^(https?|blob|data):/i.test(s);
}

async function fetchBytes(url: URL | string, optional = false): Promise<Uint8Array | null> {
  let res: Response;
  try {
    res = await fetch(url);
  } catch (e) {
    throw new Error(`${url}: fetch failed (${(e as Error).message})`);
  }
  if (!res.ok) {
    if (optional && res.status === 404) return null;
    throw new Error(`${url}: HTTP ${res.status} ${res.statusText}`);
  }
  // Single-page-app servers (vite preview, many static hosts) answer a missing file with their
  // index.html and status 200: that is a missing file, not model data.
  if (/text\/html/i.test(res.headers.get('content-type') ?? '') && !/\.html?$/i.test(new URL(url).pathname)) {
    if (optional) return null;
    throw new Error(`${url}: not found (the server answered with an HTML page, HTTP ${res.status})`);
  }
  return new Uint8Array(await res.arrayBuffer());
}

/** Files of a folder in the Hugging Face or the authors' layout (the weights file and the small JSON files beside it). */
const FOLDER_FILES = ['config.json', 'model.safetensors', 'model_snapshot.pth', 'pytorch_model.bin', 'tokenizer.json', 'tokenizer_config.json', 'token2id.json', 'id2token.json'];

async function readLocal(path: string): Promise<NamedFile[]> {
  const fs = await localFiles();
  let names: string[] | null = null;
  try {
    names = await fs.list(path);
  } catch {
    names = null; // not a folder
  }
  if (names === null) {
    try {
      return [{ name: path, bytes: await fs.readFile(path) }];
    } catch (e) {
      throw new Error(`${path}: cannot read (${(e as Error).message})`);
    }
  }
  const weights = names.filter((n) => WEIGHTS_EXT.test(n));
  const pick = ['model.safetensors', 'model_snapshot.pth', 'pytorch_model.bin'].find((n) => names!.includes(n)) ?? (weights.length === 1 ? weights[0] : undefined);
  if (!pick) {
    throw new Error(weights.length
      ? `${path}: several weights files (${weights.join(', ')}); name the one to load`
      : `${path}: folder has no weights file (expected model.safetensors, model_snapshot.pth or one .safetensors / .pth)`);
  }
  const out: NamedFile[] = [];
  for (const n of names) {
    if (n === pick || (FOLDER_FILES.includes(n) && !WEIGHTS_EXT.test(n))) out.push({ name: joinPath(path, n), bytes: await fs.readFile(joinPath(path, n)) });
  }
  return out;
}

async function readRemote(url: URL | string): Promise<NamedFile[]> {
  const u = new URL(url);
  if (!u.pathname.endsWith('/')) return [{ name: u.href, bytes: (await fetchBytes(u))! }];
  // A folder: the Hugging Face layout first, else the authors'.
  const out: NamedFile[] = [];
  const get = async (n: string, optional: boolean) => {
    const b = await fetchBytes(new URL(n, u), optional);
    if (b) out.push({ name: new URL(n, u).href, bytes: b });
    return b !== null;
  };
  if (!(await get('model.safetensors', true)) && !(await get('model_snapshot.pth', true)))
    throw new Error(`${u.href}: neither model.safetensors nor model_snapshot.pth found (HTTP 404)`);
  for (const n of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'token2id.json', 'id2token.json']) await get(n, true);
  return out;
}

/** The files a source names, read into memory. */
export async function readSourceFiles(source: ModelSource, name?: string): Promise<NamedFile[]> {
  if (Array.isArray(source)) return source;
  if (source instanceof Uint8Array) return [{ name: name ?? 'model', bytes: source }];
  if (source instanceof ArrayBuffer) return [{ name: name ?? 'model', bytes: new Uint8Array(source) }];
  if (typeof source !== 'string' && !(source instanceof URL)) {
    const n = name ?? ((source as { name?: unknown }).name as string | undefined) ?? 'model';
    return [{ name: n, bytes: new Uint8Array(await source.arrayBuffer()) }];
  }
  if (source instanceof URL && source.protocol === 'file:') return readLocal(decodeURIComponent(source.pathname));
  return isRemote(source) ? readRemote(source) : readLocal(source as string);
}

interface Classified {
  weights: NamedFile[];
  token2id?: NamedFile;
  id2token?: NamedFile;
  /** A micar tokenizer JSON or a Hugging Face tokenizer.json. */
  tokenizer?: NamedFile;
  tokenizerConfig?: NamedFile;
  config?: NamedFile;
  ignored: string[];
}

/** Sorts files into weights, vocabulary and config by name and content. */
export function classifyFiles(files: NamedFile[]): Classified {
  const c: Classified = { weights: [], ignored: [] };
  for (const f of files) {
    const n = baseName(f.name);
    if (WEIGHTS_EXT.test(n) || (!n.endsWith('.json') && (isZip(f.bytes) || looksLikeSafetensors(f.bytes)))) c.weights.push(f);
    else if (n === 'token2id.json') c.token2id = f;
    else if (n === 'id2token.json') c.id2token = f;
    else if (n === 'tokenizer_config.json') c.tokenizerConfig = f;
    else if (n.endsWith('.json')) {
      const j = parseJson(f) as Record<string, unknown>;
      if (j && typeof j === 'object' && (j.format === 'micar-tokenizer/1' || (j.model as { type?: unknown } | undefined)?.type === 'WordLevel')) c.tokenizer = f;
      else if (j && typeof j === 'object' && 'backbone' in j) {
        if (c.config) throw new Error(`two config files: ${c.config.name} and ${f.name}`);
        c.config = f;
      } else c.ignored.push(`${f.name} (JSON that is neither a config with "backbone" nor a vocabulary)`);
    } else c.ignored.push(`${f.name} (not a weights, vocabulary or config file)`);
  }
  return c;
}

/** Drops a DataParallel / DDP `module.` prefix when every key has it. */
export function stripModulePrefix(sd: Map<string, HostTensor>): Map<string, HostTensor> {
  const keys = [...sd.keys()];
  if (!keys.length || !keys.every((k) => k.startsWith('module.'))) return sd;
  return new Map([...sd].map(([k, v]) => [k.slice('module.'.length), v]));
}

/** A JSON field of a checkpoint's metadata; errors name the file and the key. */
export function metaJson<T>(metadata: Record<string, string>, key: string, file: string): T {
  const raw = metadata[key];
  if (raw === undefined) throw new Error(`${file}: checkpoint metadata has no "${key}"`);
  try {
    return JSON.parse(raw) as T;
  } catch (e) {
    throw new Error(`${file}: checkpoint metadata "${key}" is not valid JSON: ${(e as Error).message}`);
  }
}

/** A safetensors file carrying its config and vocabulary in the metadata (a micar checkpoint, or another writer's). */
export function hostModelFromCheckpoint(tensors: Map<string, HostTensor>, metadata: Record<string, string>, file: string): HostModel {
  const cfg = normaliseConfig(metaJson<Record<string, unknown>>(metadata, 'config', file), `${file} (config)`);
  const tokenizer = Tokenizer.fromJSON(metaJson<TokenizerJSON>(metadata, 'tokenizer', file));
  if (tokenizer.vocabSize !== cfg.vocab_size) throw new Error(`${file}: tokenizer has ${tokenizer.vocabSize} tokens but config vocab_size is ${cfg.vocab_size}`);
  const model = new Map<string, HostTensor>();
  const optim = new Map<string, HostTensor>();
  for (const [k, t] of tensors) {
    if (k.startsWith('optim.')) optim.set(k.slice(6), t);
    else model.set(k, t);
  }
  checkStateDictFits(cfg, model, file);
  return { cfg, tokenizer, stateDict: model, file, source: `checkpoint ${file}`, checkpoint: { file, metadata, optim } };
}

/** A checkpoint's model on the GPU (see hostModelFromCheckpoint). */
export function modelFromCheckpoint(
  tensors: Map<string, HostTensor>, metadata: Record<string, string>, file: string, precision: ResolvedPrecision = { dtype: 'f32', note: null },
): LoadedModel {
  return toGpu(hostModelFromCheckpoint(tensors, metadata, file), precision);
}

/** Uploads a host model (f16: F16 tensors as they are, others converted on the GPU by `weights.ready()`). */
function toGpu(h: HostModel, precision: ResolvedPrecision): LoadedModel {
  if (!h.tokenizer) throw new Error(`${h.file}: no vocabulary`);
  const weights = Weights.fromStateDict(h.cfg, h.stateDict, h.file, { dtype: precision.dtype });
  return { cfg: h.cfg, tokenizer: h.tokenizer, weights, source: h.source, precision, checkpoint: h.checkpoint };
}

/** The state dict of a plain weights file (safetensors or torch.save zip), keys as stored. */
function stateDictOf(f: NamedFile): Map<string, HostTensor> {
  if (isZip(f.bytes)) return readPth(f.bytes, f.name).stateDict;
  if (/\.(pth|pt|bin|ckpt)$/i.test(f.name)) throw new Error(`${f.name}: not a torch.save zip archive (first bytes are not "PK"); legacy non-zip .pth files are not supported`);
  return readSafetensors(f.bytes, f.name).tensors;
}

/** Tokens by id from a Hugging Face WordLevel tokenizer.json. */
function tokenizerFromHf(j: { model?: { type?: string; vocab?: Record<string, number> } }, file: string, cleaner: CleanerName): Tokenizer {
  const vocab = j.model?.vocab;
  if (j.model?.type !== 'WordLevel' || !vocab || typeof vocab !== 'object') throw new Error(`${file}: field "model" must be a WordLevel model with a "vocab" object`);
  const id2token: Record<string, string> = {};
  for (const [t, id] of Object.entries(vocab)) id2token[String(id)] = t;
  try {
    return Tokenizer.fromAuthorsVocab(vocab, id2token, cleaner);
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`);
  }
}

function cleanerOf(c: Classified): CleanerName {
  if (!c.tokenizerConfig) return 'whitespace';
  const j = parseJson(c.tokenizerConfig) as { micar_cleaner?: CleanerName };
  return j.micar_cleaner ?? 'whitespace';
}

/** The vocabulary among classified files, or null when there is none. */
function tokenizerOf(c: Classified): { tokenizer: Tokenizer; from: string } | null {
  if (c.tokenizer) {
    const j = parseJson(c.tokenizer) as TokenizerJSON & { model?: { type?: string; vocab?: Record<string, number> } };
    if (j.format === 'micar-tokenizer/1') {
      try {
        return { tokenizer: Tokenizer.fromJSON(j), from: c.tokenizer.name };
      } catch (e) {
        throw new Error(`${c.tokenizer.name}: ${(e as Error).message}`);
      }
    }
    return { tokenizer: tokenizerFromHf(j, c.tokenizer.name, cleanerOf(c)), from: c.tokenizer.name };
  }
  if (c.token2id && c.id2token) {
    try {
      return { tokenizer: Tokenizer.fromAuthorsVocab(parseJson(c.token2id) as Record<string, number>, parseJson(c.id2token) as Record<string, string>, cleanerOf(c)), from: `${c.token2id.name} + ${c.id2token.name}` };
    } catch (e) {
      throw new Error(`${c.token2id.name} / ${c.id2token.name}: ${(e as Error).message}`);
    }
  }
  return null;
}

/** A vocabulary given apart from the weights (--vocab). */
export async function readVocabulary(vocab: NonNullable<ReadModelOptions['vocab']>): Promise<{ tokenizer: Tokenizer; from: string }> {
  if (vocab instanceof Tokenizer) return { tokenizer: vocab, from: 'the given tokenizer' };
  let files: NamedFile[];
  if (Array.isArray(vocab)) files = vocab;
  else if (isRemote(vocab)) {
    const u = new URL(vocab);
    if (u.pathname.endsWith('/')) {
      files = [];
      for (const n of ['tokenizer.json', 'tokenizer_config.json', 'token2id.json', 'id2token.json']) {
        const b = await fetchBytes(new URL(n, u), true);
        if (b) files.push({ name: new URL(n, u).href, bytes: b });
      }
    } else files = [{ name: u.href, bytes: (await fetchBytes(u))! }];
  } else {
    const path = vocab instanceof URL ? decodeURIComponent(vocab.pathname) : vocab;
    const fs = await localFiles();
    let names: string[] | null;
    try {
      names = await fs.list(path);
    } catch {
      names = null;
    }
    files = [];
    if (names) {
      for (const n of names) if (['tokenizer.json', 'tokenizer_config.json', 'token2id.json', 'id2token.json'].includes(n) || /tokenizer.*\.json$/.test(n)) files.push({ name: joinPath(path, n), bytes: await fs.readFile(joinPath(path, n)) });
    } else {
      files.push({ name: path, bytes: await fs.readFile(path).catch((e) => { throw new Error(`${path}: cannot read vocabulary (${(e as Error).message})`); }) });
      // token2id.json names its partner.
      const other = baseName(path) === 'token2id.json' ? 'id2token.json' : baseName(path) === 'id2token.json' ? 'token2id.json' : null;
      if (other) {
        const p = path.replace(/[^\\/]+$/, other);
        files.push({ name: p, bytes: await fs.readFile(p).catch(() => { throw new Error(`${path}: the authors' vocabulary needs ${other} beside it (${p} is missing)`); }) });
      }
    }
  }
  const got = tokenizerOf(classifyFiles(files));
  if (!got) throw new Error(`${typeof vocab === 'string' || vocab instanceof URL ? vocab : 'vocabulary files'}: no vocabulary found (need token2id.json + id2token.json, tokenizer.json, or a micar tokenizer JSON)`);
  return got;
}

/** Config fields from a preset name, a JSON file (path or URL) or an object. */
export async function readConfig(config: NonNullable<ReadModelOptions['config']>): Promise<{ raw: Record<string, unknown>; from: string }> {
  if (typeof config === 'object' && !(config instanceof URL)) return { raw: { ...config }, from: 'the given config' };
  if (typeof config === 'string' && isPreset(config)) return { raw: presetConfig(config), from: `preset ${config}` };
  if (typeof config === 'string' && !/[/\\.]/.test(config)) return { raw: presetConfig(config), from: `preset ${config}` }; // throws: names the presets
  const name = String(config);
  const bytes = isRemote(config) ? (await fetchBytes(config))! : await (await localFiles()).readFile(config instanceof URL ? decodeURIComponent(config.pathname) : config).catch((e) => {
    throw new Error(`${name}: cannot read config (${(e as Error).message})`);
  });
  const raw = parseJson({ name, bytes });
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`${name}: config must be a JSON object`);
  return { raw: raw as Record<string, unknown>, from: name };
}

/** The config for a vocabulary: a config's vocab_size 0 (the presets) takes the vocabulary's size; another must agree. */
export function configForVocabulary(raw: Record<string, unknown>, from: string, tokenizer: Tokenizer): MicarConfig {
  const given = Number(raw.vocab_size ?? 0);
  if (given && given !== tokenizer.vocabSize) throw new Error(`${from}: field "vocab_size" is ${given} but the vocabulary has ${tokenizer.vocabSize} tokens`);
  // Fields a Hugging Face config.json adds around the model's own.
  const { model_type: _t, architectures: _a, torch_dtype: _d, transformers_version: _v, ...fields } = raw;
  return normaliseConfig({ ...fields, vocab_size: tokenizer.vocabSize }, from);
}

/**
 * Reads the model a source describes into host memory, names and shapes checked against the
 * config. Files beside the weights (a folder, or named files) supply the vocabulary and config
 * unless `opts` gives them. With `vocabOptional`, a plain state dict without a vocabulary is
 * read too (tokenizer null; vocab_size from the config, else from the embedding's rows).
 */
export async function readHostModel(source: ModelSource, opts: ReadModelOptions & { vocabOptional?: boolean } = {}): Promise<HostModel> {
  const files = await readSourceFiles(source, opts.name);
  if (!files.length) throw new Error('no files given');
  const c = classifyFiles(files);
  if (c.weights.length === 0) throw new Error(`no weights file among ${files.map((f) => f.name).join(', ')} (give a micar checkpoint, or a .safetensors / .pth state dict with its vocabulary and config)`);
  if (c.weights.length > 1) throw new Error(`one weights file expected, got ${c.weights.map((f) => f.name).join(', ')}`);
  const wf = c.weights[0];
  if (!isZip(wf.bytes)) {
    const st = readSafetensors(wf.bytes, wf.name);
    // A checkpoint carries config and vocabulary itself.
    if (st.metadata.format === CHECKPOINT_FORMAT || (st.metadata.config !== undefined && st.metadata.tokenizer !== undefined))
      return hostModelFromCheckpoint(st.tensors, st.metadata, wf.name);
  }
  const sd = stripModulePrefix(stateDictOf(wf));
  const vocab = opts.vocab !== undefined ? await readVocabulary(opts.vocab) : tokenizerOf(c);
  if (!vocab && !opts.vocabOptional) {
    const have = [c.token2id?.name, c.id2token?.name].filter(Boolean).join(', ');
    throw new Error(`${wf.name} is a plain state dict: it needs its vocabulary (token2id.json + id2token.json as the authors save them, a tokenizer.json, or a micar tokenizer JSON; --vocab DIR on the command line)${have ? `; only ${have} was given` : ''}`);
  }
  let conf: { raw: Record<string, unknown>; from: string };
  if (opts.config !== undefined) conf = await readConfig(opts.config);
  else if (c.config) conf = { raw: parseJson(c.config) as Record<string, unknown>, from: c.config.name };
  else if (opts.fallbackConfig !== undefined) conf = await readConfig(opts.fallbackConfig);
  else throw new Error(`${wf.name} is a plain state dict: it needs a config (a preset such as tiny or paper, or a config.json; --config on the command line)`);
  let cfg: MicarConfig;
  if (vocab) cfg = configForVocabulary(conf.raw, conf.from, vocab.tokenizer);
  else {
    const emb = sd.get('text_embs.embedding.weight');
    const rows = Number(conf.raw.vocab_size ?? 0) || (emb?.shape.length === 2 ? emb.shape[0] : 0);
    if (!rows) throw new Error(`${wf.name}: without a vocabulary the vocabulary size must come from ${conf.from} (field "vocab_size") or the tensor text_embs.embedding.weight, and neither has it`);
    cfg = configForVocabulary({ ...conf.raw, vocab_size: 0 }, conf.from, { vocabSize: rows } as Tokenizer);
  }
  checkStateDictFits(cfg, sd, wf.name);
  return {
    cfg, tokenizer: vocab?.tokenizer ?? null, stateDict: sd, file: wf.name,
    source: `${wf.name} with ${conf.from} and ${vocab ? `a ${vocab.tokenizer.vocabSize}-token vocabulary (${vocab.from})` : 'no vocabulary'}`,
  };
}

/** Builds the model a source describes on the GPU (the runtime must be initialised); see readHostModel. */
export async function readModel(source: ModelSource, opts: ReadModelOptions = {}): Promise<LoadedModel> {
  const precision = resolvePrecision(opts.precision ?? 'f32');
  const m = toGpu(await readHostModel(source, opts), precision);
  await m.weights.ready();
  return m;
}
