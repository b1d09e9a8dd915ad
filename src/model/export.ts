// Writing a model for other tools: the authors' PyTorch format (`model_snapshot.pth` as their
// code saves it, `{"model": state_dict}`, with token2id.json / id2token.json), the Hugging Face
// layout (config.json, model.safetensors, tokenizer.json, tokenizer_config.json) or a plain
// safetensors state dict. Weights keep the authors' state_dict names and order; `f16` rounds
// the float tensors (not the rotary frequencies and positional table, formula constants kept
// in f32 as the golden files keep them).
import type { Tokenizer } from '../data/tokenizer.ts';
import { writePth } from '../io/pth-writer.ts';
import { fromFloat32, type HostTensor, toFloat32, writeSafetensors } from '../io/safetensors.ts';
import type { MicarConfig } from './config.ts';
import { HF_MODEL_TYPE } from './load.ts';
import { stateDictSpec } from './spec.ts';

export type ExportFormat = 'authors' | 'hf' | 'safetensors';

export interface ExportOptions {
  dtype?: 'f32' | 'f16';
}

export interface ExportSource {
  cfg: MicarConfig;
  /** Null: the weights are written and the result says the vocabulary is missing. */
  tokenizer: Tokenizer | null;
  stateDict: Map<string, HostTensor>;
}

export interface ExportResult {
  /** File name → bytes. */
  files: Map<string, Uint8Array>;
  /** Set when the vocabulary files could not be written. */
  warning?: string;
}

/** The state dict in the authors' key order, float tensors as `dtype`. */
function orderedStateDict(src: ExportSource, dtype: 'f32' | 'f16'): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  for (const e of stateDictSpec(src.cfg)) {
    const t = src.stateDict.get(e.name);
    if (!t) throw new Error(`export: the model has no tensor "${e.name}"`);
    if (e.kind === 'bn_count') {
      out.set(e.name, t.dtype === 'I64' ? t : { dtype: 'I64', shape: [], data: new Uint8Array(new BigInt64Array([BigInt(Math.round(toFloat32(t)[0]))]).buffer) });
      continue;
    }
    const keepF32 = e.kind === 'rope_freqs' || e.kind === 'pe';
    const want = dtype === 'f16' && !keepF32 ? 'F16' : 'F32';
    out.set(e.name, t.dtype === want ? t : fromFloat32(toFloat32(t), t.shape.slice(), want));
  }
  return out;
}

/** A Hugging Face `tokenizers` WordLevel tokenizer.json (whitespace split) for the vocabulary. */
export function hfTokenizerJson(tok: Tokenizer): string {
  const vocab: Record<string, number> = {};
  tok.tokens.forEach((t, i) => (vocab[t] = i));
  const special = tok.tokens.slice(0, 4).map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
  return JSON.stringify({
    version: '1.0', truncation: null, padding: null, added_tokens: special, normalizer: null,
    pre_tokenizer: { type: 'WhitespaceSplit' }, post_processor: null, decoder: null,
    model: { type: 'WordLevel', vocab, unk_token: '<unk>' },
  }, null, 1);
}

function hfTokenizerConfig(tok: Tokenizer, cfg: MicarConfig): string {
  return JSON.stringify({
    tokenizer_class: 'PreTrainedTokenizerFast', bos_token: '<sos>', eos_token: '<eos>', pad_token: '<pad>', unk_token: '<unk>',
    model_max_length: cfg.text_seq_len,
    // micar's report cleaning before the whitespace split (src/data/tokenizer.ts).
    micar_cleaner: tok.cleaner,
  }, null, 1);
}

const enc = (s: string) => new TextEncoder().encode(s);

/** The files of `src` in format `to`. */
export function exportModel(src: ExportSource, to: ExportFormat, opts: ExportOptions = {}): ExportResult {
  const dtype = opts.dtype ?? 'f32';
  if (dtype !== 'f32' && dtype !== 'f16') throw new Error(`export: dtype must be f32 or f16, got ${JSON.stringify(dtype)}`);
  if (src.cfg.local_tokens_experiment && (to === 'authors' || to === 'safetensors'))
    throw new Error(
      `export: the model has "local_tokens_experiment" set (an experiment: FPN top-down path cut, encoder self-attention skipped), ` +
        `which ${to === 'authors' ? "the authors' PyTorch model cannot represent" : 'a plain state dict, having no config, cannot record'}: ` +
        `its weights would load as the SPEC model and compute something else. Export --to hf (its config.json records the flag) or keep the micar checkpoint`,
    );
  const sd = orderedStateDict(src, dtype);
  const files = new Map<string, Uint8Array>();
  const tok = src.tokenizer;
  const noVocab = 'no vocabulary was given (--vocab DIR): the weights were written without one';
  switch (to) {
    case 'authors': {
      files.set('model_snapshot.pth', writePth(sd, { prefix: 'model_snapshot' }));
      if (tok) for (const [n, text] of Object.entries(tok.toAuthorsVocabFiles())) files.set(n, enc(text));
      return { files, warning: tok ? undefined : `${noVocab} (token2id.json / id2token.json missing)` };
    }
    case 'hf': {
      const { name: _n, ...fields } = src.cfg;
      files.set('config.json', enc(JSON.stringify({ architectures: ['MicarVLMoE'], model_type: HF_MODEL_TYPE, torch_dtype: dtype === 'f16' ? 'float16' : 'float32', ...fields }, null, 1)));
      files.set('model.safetensors', writeSafetensors(sd, { format: 'pt' }));
      if (tok) {
        files.set('tokenizer.json', enc(hfTokenizerJson(tok)));
        files.set('tokenizer_config.json', enc(hfTokenizerConfig(tok, src.cfg)));
      }
      return { files, warning: tok ? undefined : `${noVocab} (tokenizer.json missing)` };
    }
    case 'safetensors':
      files.set('model.safetensors', writeSafetensors(sd, { format: 'pt' }));
      return { files };
    default:
      throw new Error(`export: format must be authors, hf or safetensors, got ${JSON.stringify(to)}`);
  }
}
