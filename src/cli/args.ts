// The `micar` command line's options, declared once per verb: parsing, `--help` text, defaults,
// value checks and "did you mean" all come from these tables. Flags are kebab-case; the authors'
// snake_case argparse names (AI-14/micar-vl-moe configs/cfg.py) are accepted as aliases where
// they mean the same thing.
//
// To add an option: one line in a verb's `options` (or in a shared group such as MODEL_SOURCE,
// which several verbs spread in). To add a verb: one entry in COMMANDS here and one in `run` in
// main.ts. Read values with `p.str('name')`, `p.num('name')`, `p.flag('name')`, `p.given('name')`.

import { ACT_NAMES, BACKBONES, editDistance } from '../model/config.ts';

/** How a value is read: text, a finite number, an integer (≥ `min` if given), one of a list, or a bare flag. */
export type OptionType = 'string' | 'number' | 'int' | 'boolean' | readonly string[];

export interface OptionSpec {
  /** kebab-case, without the leading `--`. */
  name: string;
  type: OptionType;
  /** One line for `--help`. */
  help: string;
  /** Value used when the option is absent (booleans default to false). */
  default?: string | number | boolean;
  /** Shown as the default in `--help` when it is not a constant (e.g. "from --config"). */
  defaultHelp?: string;
  /** Other accepted spellings, e.g. the authors' snake_case `batch_size`. */
  aliases?: string[];
  required?: boolean;
  /** The value's placeholder in `--help` (N, DIR, FILE…). */
  meta?: string;
  /** For model/training overrides: the config key this option sets (see `configOverrides`). */
  configKey?: string;
  /** Smallest accepted value for `int`/`number`. */
  min?: number;
}

export interface PositionalSpec {
  name: string;
  help: string;
  required?: boolean;
}

export interface CommandSpec {
  /** One line for `micar --help`. */
  summary: string;
  /** Further lines for `micar <verb> --help`. */
  description?: string;
  options: OptionSpec[];
  positionals?: PositionalSpec[];
}

/** A bad command line: printed with a pointer to `--help`, exit code 2. */
export class UsageError extends Error {
  constructor(message: string, readonly verb?: string) {
    super(message);
    this.name = 'UsageError';
  }
}

// ---- shared option groups ---------------------------------------------------------------------

/** Where a trained model comes from (generate, eval, attention, …). */
/** f32 | f16 | auto: the element type of weights, activations and key/value cache on the GPU. */
export const PRECISION_OPTION: OptionSpec = {
  name: 'precision', type: ['f32', 'f16', 'auto'], default: 'f32',
  help: 'f16: weights, activations and KV cache in half precision, sums in f32 (needs shader-f16); auto: f16 where the adapter has it',
};

export const MODEL_SOURCE: OptionSpec[] = [
  PRECISION_OPTION,
  { name: 'checkpoint', type: 'string', meta: 'SOURCE', required: true, aliases: ['weights'], help: 'micar checkpoint, the authors\' model_snapshot.pth (with --vocab), a Hugging Face or authors\' folder, or a URL' },
  { name: 'vocab', type: 'string', meta: 'DIR|FILE', defaultHelp: 'beside the weights', help: 'vocabulary for a plain state dict: token2id.json + id2token.json folder, or tokenizer.json' },
  { name: 'config', type: 'string', meta: 'NAME|FILE', defaultHelp: 'beside the weights', help: 'config for a plain state dict: preset (tiny, paper, covctr, …) or JSON file' },
];

export const DATA_FORMATS = ['phantom', 'covctr', 'mmretinal', 'pgross', 'roco'] as const;

/** Which dataset, where, and how much of it is kept in memory. */
export const DATA_OPTIONS: OptionSpec[] = [
  { name: 'data', type: DATA_FORMATS, default: 'phantom', aliases: ['dataset_name'], help: 'dataset format (phantom = the built-in synthetic set, written on first use)' },
  { name: 'data-dir', type: 'string', meta: 'DIR', defaultHelp: 'runs/phantom for --data phantom, required otherwise', help: 'dataset folder' },
  { name: 'limit', type: 'int', min: 1, meta: 'N', defaultHelp: 'all', help: 'examples per split' },
  { name: 'phantom-count', type: 'int', min: 1, default: 3000, meta: 'N', help: 'built-in dataset: number of images' },
  { name: 'phantom-seed', type: 'int', default: 7, meta: 'N', help: 'built-in dataset: generator seed' },
  { name: 'phantom-size', type: 'int', min: 8, meta: 'PX', defaultHelp: 'the config\'s image_size', help: 'built-in dataset: image side' },
  { name: 'roco-images', type: 'string', meta: 'DIR', defaultHelp: 'DATA-DIR/images', help: 'ROCO: where images are extracted from the parquet files' },
  { name: 'pixel-memory-mb', type: 'number', min: 0, default: 1024, meta: 'MIB', help: 'preprocessed images kept in memory per split; larger splits are decoded per batch' },
];

const fromConfig = 'from --config';

/** Model and training settings that override the config (named as the authors' argparse names them). */
export const CONFIG_OVERRIDES: OptionSpec[] = [
  { name: 'epochs', type: 'int', min: 1, configKey: 'epochs', defaultHelp: fromConfig, meta: 'N', help: 'training epochs' },
  { name: 'batch-size', type: 'int', min: 1, configKey: 'batch_size', aliases: ['batch_size'], defaultHelp: fromConfig, meta: 'N', help: 'examples per step' },
  { name: 'lr', type: 'number', min: 0, configKey: 'lr', defaultHelp: fromConfig, meta: 'X', help: 'learning rate of the text side (projection, embeddings, encoder, decoder, logits)' },
  { name: 'v-lr', type: 'number', min: 0, configKey: 'v_lr', aliases: ['v_lr'], defaultHelp: fromConfig, meta: 'X', help: 'learning rate of the visual backbone' },
  { name: 'weight-decay', type: 'number', min: 0, configKey: 'weight_decay', aliases: ['weight_decay'], defaultHelp: fromConfig, meta: 'X', help: 'AdamW weight decay' },
  { name: 'gamma', type: 'number', min: 0, configKey: 'gamma', defaultHelp: fromConfig, meta: 'X', help: 'StepLR decay factor' },
  { name: 'step-size', type: 'int', min: 1, configKey: 'step_size', aliases: ['step_size'], defaultHelp: fromConfig, meta: 'N', help: 'StepLR period in epochs' },
  { name: 'patience', type: 'int', min: 1, configKey: 'patience', aliases: ['max_patience'], defaultHelp: fromConfig, meta: 'N', help: 'early stopping: epochs without a better validation score' },
  { name: 'seed', type: 'int', configKey: 'seed', defaultHelp: fromConfig, meta: 'N', help: 'initialisation and shuffling seed' },
  { name: 'min-frequency', type: 'int', min: 1, configKey: 'min_frequency', aliases: ['min_frequency'], defaultHelp: fromConfig, meta: 'N', help: 'vocabulary: fewest occurrences a word needs' },
  { name: 'text-seq-len', type: 'int', min: 2, configKey: 'text_seq_len', aliases: ['text_seq_len'], defaultHelp: fromConfig, meta: 'N', help: 'report length in tokens' },
  { name: 'image-size', type: 'int', min: 8, configKey: 'image_size', aliases: ['image_size'], defaultHelp: fromConfig, meta: 'PX', help: 'crop side fed to the model' },
  { name: 'resize-size', type: 'int', min: 8, configKey: 'resize_size', aliases: ['resize_size'], defaultHelp: fromConfig, meta: 'PX', help: 'shorter side after resizing, before the centre crop' },
  { name: 'backbone', type: BACKBONES, configKey: 'backbone', defaultHelp: fromConfig, help: 'visual backbone' },
  { name: 'moe-mode', type: ['sum', 'weighted'], configKey: 'moe_mode', aliases: ['moe_mode'], defaultHelp: fromConfig, help: 'how the chosen experts\' outputs are combined' },
  { name: 'act-fn', type: ACT_NAMES, configKey: 'act_fn', aliases: ['act_fn'], defaultHelp: fromConfig, help: 'expert activation' },
  { name: 'd-model', type: 'int', min: 1, configKey: 'd_model', aliases: ['d_model'], defaultHelp: fromConfig, meta: 'N', help: 'model width' },
  { name: 'd-v', type: 'int', min: 1, configKey: 'd_v', aliases: ['d_v'], defaultHelp: fromConfig, meta: 'N', help: 'visual feature width' },
  { name: 'd-latent', type: 'int', min: 1, configKey: 'd_latent', aliases: ['d_latent'], defaultHelp: fromConfig, meta: 'N', help: 'attention latent width' },
  { name: 'd-ff', type: 'int', min: 1, configKey: 'd_ff', aliases: ['d_ff'], defaultHelp: fromConfig, meta: 'N', help: 'expert hidden width' },
  { name: 'qk-nope-dim', type: 'int', min: 1, configKey: 'qk_nope_dim', aliases: ['qk_nope_dim'], defaultHelp: fromConfig, meta: 'N', help: 'query/key width without rotary encoding' },
  { name: 'qk-rope-dim', type: 'int', min: 1, configKey: 'qk_rope_dim', aliases: ['qk_rope_dim'], defaultHelp: fromConfig, meta: 'N', help: 'query/key width with rotary encoding' },
  { name: 'num-heads', type: 'int', min: 1, configKey: 'num_heads', aliases: ['num_heads'], defaultHelp: fromConfig, meta: 'N', help: 'attention heads' },
  { name: 'num-layers', type: 'int', min: 1, configKey: 'num_layers', aliases: ['num_layers'], defaultHelp: fromConfig, meta: 'N', help: 'encoder and decoder layers (each)' },
  { name: 'num-experts', type: 'int', min: 1, configKey: 'num_experts', aliases: ['num_experts'], defaultHelp: fromConfig, meta: 'N', help: 'experts per mixture' },
  { name: 'k', type: 'int', min: 1, configKey: 'k', defaultHelp: fromConfig, meta: 'N', help: 'experts chosen per token' },
  { name: 'dropout', type: 'number', min: 0, configKey: 'dropout', defaultHelp: fromConfig, meta: 'P', help: 'dropout probability' },
  { name: 'attention-dropout', type: 'number', min: 0, configKey: 'attention_dropout', aliases: ['attention_dropout'], defaultHelp: fromConfig, meta: 'P', help: 'attention dropout probability' },
];

/** Training run options other than config overrides. */
export const TRAIN_OPTIONS: OptionSpec[] = [
  PRECISION_OPTION,
  { name: 'config', type: 'string', default: 'tiny', meta: 'NAME|FILE', help: 'preset (configs/NAME.json: tiny, paper, covctr, mmretinal, pgross, roco) or a JSON file' },
  { name: 'out', type: 'string', default: 'runs/train', meta: 'DIR', help: 'checkpoints (best/last), history.json and training.html' },
  { name: 'resume', type: 'boolean', help: 'continue from OUT/last.safetensors (bit-exact)' },
  { name: 'init', type: 'string', meta: 'SOURCE', help: 'start from this model\'s weights and vocabulary (any source `generate --checkpoint` takes)' },
  { name: 'vocab', type: 'string', meta: 'DIR|FILE', defaultHelp: 'beside the --init weights', help: 'vocabulary for an --init state dict such as the authors\' .pth' },
  { name: 'backbone-weights', type: 'string', meta: 'FILE', help: 'ImageNet ResNet weights (.pth or .safetensors) for the visual backbone' },
  { name: 'time-budget', type: 'number', min: 0, meta: 'S', defaultHelp: 'none', help: 'stop (after checkpointing) when this many seconds have passed' },
  { name: 'max-steps', type: 'int', min: 1, meta: 'N', defaultHelp: 'none', help: 'stop after this many optimiser steps' },
  { name: 'val-limit', type: 'int', min: 1, meta: 'N', defaultHelp: 'all', help: 'validation examples scored per epoch' },
  { name: 'checkpoint-every', type: 'int', min: 1, default: 50, meta: 'N', help: 'write last.safetensors every N steps' },
];

/** One image in, one report out. */
export const IMAGE_OPTIONS: OptionSpec[] = [
  { name: 'image', type: 'string', meta: 'FILE', required: true, help: 'PNG or JPEG image' },
  { name: 'max-len', type: 'int', min: 1, meta: 'N', defaultHelp: 'the config\'s text_seq_len', help: 'longest report in tokens' },
];

/** `options` with some entries changed (e.g. another default for one verb). */
export function patch(options: OptionSpec[], changes: Record<string, Partial<OptionSpec>>): OptionSpec[] {
  for (const name of Object.keys(changes)) if (!options.some((o) => o.name === name)) throw new Error(`patch: no option --${name}`);
  return options.map((o) => (changes[o.name] ? { ...o, ...changes[o.name] } : o));
}

// ---- verbs --------------------------------------------------------------------------------------

export const COMMANDS: Record<string, CommandSpec> = {
  main: {
    summary: 'the main job: built-in dataset → train → evaluate against baselines → attention maps',
    description: 'Accepts the `train` options too (the data is always the built-in set).',
    options: patch([
      { name: 'budget', type: 'number', min: 1, default: 900, meta: 'S', help: 'wall-clock budget for the whole job' },
      { name: 'explain-limit', type: 'int', min: 0, default: 40, meta: 'N', help: 'test images on which the explanation methods are scored (fewer when the budget runs out; 0: none)' },
      ...TRAIN_OPTIONS, ...DATA_OPTIONS.filter((o) => o.name !== 'data' && o.name !== 'roco-images'), ...CONFIG_OVERRIDES,
    ], {
      out: { default: 'runs/main' },
      'data-dir': { defaultHelp: 'OUT/data' },
      'val-limit': { default: 64, defaultHelp: undefined },
    }),
  },
  train: {
    summary: 'train a model (AdamW, StepLR, early stopping; best/last checkpoints)',
    options: [...TRAIN_OPTIONS, ...DATA_OPTIONS, ...CONFIG_OVERRIDES],
  },
  eval: {
    summary: 'score a model on the test split beside two baselines; writes predictions.csv and metrics.json',
    options: [
      ...MODEL_SOURCE, ...DATA_OPTIONS,
      { name: 'out', type: 'string', default: 'runs/eval', meta: 'DIR', help: 'where predictions.csv (image_id, actual_report, generated_report) and metrics.json go' },
      { name: 'explain-limit', type: 'int', min: 0, default: 100, meta: 'N', help: 'test images on which the explanation methods are scored (built-in data; 0: none)' },
      { name: 'explain-smoothgrad', type: 'int', min: 0, default: 0, meta: 'N', help: 'score saliency with SmoothGrad over N noisy copies (0: plain)' },
      { name: 'explain-smoothgrad-sigma', type: 'number', min: 0, default: 0.5, meta: 'S', help: 'SmoothGrad noise std on the normalised pixels' },
      { name: 'explain-smoothgrad-kind', type: ['mean', 'squared', 'var'], default: 'mean', help: 'SmoothGrad: mean |map|, SmoothGrad-Squared, or VarGrad' },
      { name: 'explain-methods', type: 'string', default: 'attention,rollout,grad-attention,gradcam,saliency', meta: 'LIST', help: 'methods scored (comma-separated, or all: adds integrated-gradients, ~17× saliency\'s cost)' },
      { name: 'explain-target', type: ['logit', 'logprob'], default: 'logit', help: 'what the gradient methods explain: the word\'s logit or its log-probability' },
      { name: 'explain-ig-steps', type: 'int', min: 1, default: 16, meta: 'M', help: 'integrated gradients: trapezoid intervals' },
      { name: 'explain-ig-baseline', type: ['mean', 'black'], default: 'mean', help: 'integrated gradients: baseline image' },
    ],
  },
  generate: {
    summary: 'write the report for one image',
    options: [
      ...MODEL_SOURCE, ...IMAGE_OPTIONS,
      { name: 'beam', type: 'int', min: 1, default: 1, aliases: ['beam_width'], meta: 'K', help: 'beam width (1 = greedy, streamed word by word)' },
      { name: 'length-penalty', type: 'number', default: 1, meta: 'A', help: 'beam search: score = log p / length^A' },
      { name: 'nbest', type: 'int', min: 1, default: 1, meta: 'N', help: 'beam search: print the N best hypotheses' },
    ],
  },
  attention: {
    summary: 'attention heat maps, expert routing and an HTML page for one image',
    options: [
      ...MODEL_SOURCE, ...IMAGE_OPTIONS,
      { name: 'out', type: 'string', meta: 'DIR', required: true, help: 'where the PNGs, JSON and attention.html go' },
      { name: 'beam', type: 'int', min: 1, default: 1, aliases: ['beam_width'], meta: 'K', help: 'beam width (the best hypothesis is traced again)' },
      { name: 'size', type: 'int', min: 1, meta: 'PX', defaultHelp: 'the image\'s size', help: 'side of the heat-map figures' },
      { name: 'colormap', type: ['viridis', 'inferno'], default: 'viridis', help: 'heat-map colours' },
      { name: 'method', type: ['attention', 'rollout', 'grad-attention', 'gradcam', 'saliency'], default: 'attention', help: 'what the word maps show (see micar explain)' },
    ],
  },
  explain: {
    summary: 'explain each word of a report: attention, rollout, grad-attention, gradcam, saliency, integrated-gradients maps (PNG + HTML page)',
    options: [
      ...MODEL_SOURCE, ...IMAGE_OPTIONS,
      { name: 'out', type: 'string', meta: 'DIR', required: true, help: 'where the PNGs, JSON and attention.html go' },
      { name: 'methods', type: 'string', default: 'all', meta: 'LIST', help: 'comma-separated: attention, rollout, grad-attention, gradcam, saliency, integrated-gradients, occlusion (or all)' },
      { name: 'target', type: ['logit', 'logprob'], default: 'logit', help: 'what the gradient methods explain: the word\'s logit or its log-probability' },
      { name: 'ig-steps', type: 'int', min: 1, default: 16, meta: 'M', help: 'integrated gradients: trapezoid intervals' },
      { name: 'ig-baseline', type: ['mean', 'black'], default: 'mean', help: 'integrated gradients: baseline image' },
      { name: 'smoothgrad-kind', type: ['mean', 'squared', 'var'], default: 'mean', help: 'SmoothGrad: mean |map|, SmoothGrad-Squared, or VarGrad' },
      { name: 'beam', type: 'int', min: 1, default: 1, aliases: ['beam_width'], meta: 'K', help: 'beam width (the best hypothesis is explained)' },
      { name: 'smoothgrad', type: 'int', min: 0, default: 0, meta: 'N', help: 'saliency: average over N noisy copies (SmoothGrad; 0 = plain gradient × input)' },
      { name: 'smoothgrad-sigma', type: 'number', min: 0, default: 0.5, meta: 'S', help: 'SmoothGrad noise std on the normalised pixels' },
      { name: 'size', type: 'int', min: 1, meta: 'PX', defaultHelp: 'the image\'s size', help: 'side of the heat-map figures' },
      { name: 'colormap', type: ['viridis', 'inferno'], default: 'viridis', help: 'heat-map colours' },
    ],
  },
  export: {
    summary: 'write a model for the authors\' PyTorch code, Hugging Face tools or as plain safetensors',
    description: 'Runs on the CPU. Without a vocabulary (a plain state dict and no --vocab) the weights are written and a warning says the vocabulary is missing.',
    options: [
      { name: 'to', type: ['authors', 'hf', 'safetensors'], required: true, help: 'authors: model_snapshot.pth ({"model": state_dict}) + token2id.json / id2token.json; hf: config.json, model.safetensors, tokenizer.json; safetensors: the state dict alone' },
      { name: 'out', type: 'string', required: true, meta: 'DIR', help: 'folder to write (created)' },
      { name: 'dtype', type: ['f32', 'f16'], default: 'f32', help: 'float tensors\' type (rotary frequencies and the positional table stay f32)' },
      ...MODEL_SOURCE,
    ],
  },
  golden: {
    summary: 'compare every tensor of a ../shared/golden case with the authors\' PyTorch model',
    positionals: [{ name: 'case', help: 'case folder, e.g. ../shared/golden/tiny', required: true }],
    options: [PRECISION_OPTION],
  },
  tune: {
    summary: 'measure the fastest kernels for a model\'s shapes on this adapter and cache them',
    description: 'One training step and one evaluation forward at --batch on synthetic data; every kernel geometry met is measured (see also --tune off|cached|full, accepted by every verb that uses the GPU: cached, the default, measures what the cache lacks, at most 30 s per run).',
    options: [
      { name: 'config', type: 'string', default: 'tiny', meta: 'NAME|FILE', help: 'preset (tiny, paper, covctr, mmretinal, pgross, roco) or a JSON file' },
      { name: 'batch', type: 'int', min: 1, meta: 'B', defaultHelp: 'the config\'s batch_size', help: 'batch size of the shapes to tune' },
      { name: 'mode', type: ['cached', 'full'], default: 'cached', help: 'cached: measure what the cache lacks; full: measure every shape again' },
      { name: 'budget', type: 'number', min: 1, default: 300, meta: 'S', help: 'seconds of measuring allowed' },
    ],
  },
  smoke: {
    summary: 'print the adapter and run one matmul + autograd step',
    options: [],
  },
};

// ---- parsing ------------------------------------------------------------------------------------

export type Value = string | number | boolean;

/** A parsed command line: values by kebab-case name, defaults filled in. */
export class Parsed {
  constructor(
    readonly verb: string,
    private readonly spec: CommandSpec,
    private readonly values: Map<string, Value>,
    private readonly explicit: Set<string>,
    readonly positionals: string[],
  ) {}

  /** Whether the user gave this option (rather than its default applying). */
  given(name: string): boolean {
    return this.explicit.has(name);
  }

  get(name: string): Value | undefined {
    return this.values.get(name);
  }

  str(name: string): string;
  str(name: string, optional: 'optional'): string | undefined;
  str(name: string, optional?: 'optional'): string | undefined {
    const v = this.values.get(name);
    if (v === undefined) {
      if (optional) return undefined;
      throw new UsageError(`micar ${this.verb}: missing --${name}`, this.verb);
    }
    return String(v);
  }

  num(name: string): number;
  num(name: string, optional: 'optional'): number | undefined;
  num(name: string, optional?: 'optional'): number | undefined {
    const v = this.values.get(name);
    if (v === undefined) {
      if (optional) return undefined;
      throw new UsageError(`micar ${this.verb}: missing --${name}`, this.verb);
    }
    return v as number;
  }

  flag(name: string): boolean {
    return this.values.get(name) === true;
  }

  /** Config keys set by options that carry a `configKey` (only those the user gave). */
  configOverrides(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const o of this.spec.options) if (o.configKey && this.explicit.has(o.name)) out[o.configKey] = this.values.get(o.name);
    return out;
  }
}

export { editDistance };

/** The valid spelling nearest to `name` (names and aliases; `-` and `_` compared alike first). */
export function closestOption(spec: CommandSpec, name: string): OptionSpec | undefined {
  let best: OptionSpec | undefined, bestD = Infinity;
  const norm = (s: string) => s.toLowerCase().replace(/_/g, '-');
  for (const o of [...spec.options, ...HELP_OPTIONS]) {
    for (const n of [o.name, ...(o.aliases ?? [])]) {
      const d = editDistance(norm(name), norm(n));
      if (d < bestD) [best, bestD] = [o, d];
    }
  }
  return best;
}

const HELP_OPTIONS: OptionSpec[] = [{ name: 'help', type: 'boolean', aliases: ['h'], help: 'show this help' }];

export function wantsHelp(argv: string[]): boolean {
  return argv.some((a) => a === '--help' || a === '-h');
}

function readValue(verb: string, o: OptionSpec, raw: string): Value {
  const bad = (what: string) => new UsageError(`micar ${verb}: --${o.name} ${what}, got ${JSON.stringify(raw)}`, verb);
  if (Array.isArray(o.type)) {
    if (!o.type.includes(raw)) throw bad(`must be one of ${o.type.join(', ')}`);
    return raw;
  }
  if (o.type === 'number' || o.type === 'int') {
    const n = raw.trim() === '' ? NaN : Number(raw);
    if (!Number.isFinite(n)) throw bad('must be a number');
    if (o.type === 'int' && !Number.isInteger(n)) throw bad('must be an integer');
    if (o.min !== undefined && n < o.min) throw bad(`must be at least ${o.min}`);
    return n;
  }
  if (o.type === 'boolean') {
    if (/^(true|1|yes)$/i.test(raw)) return true;
    if (/^(false|0|no)$/i.test(raw)) return false;
    throw bad('is a flag (give it alone, or =true / =false)');
  }
  return raw;
}

/**
 * Parses `argv` (the words after the verb) against the verb's spec: `--name value`,
 * `--name=value`, bare `--flag`; aliases map to the kebab-case name; anything unknown, a
 * missing value, a bad number or a missing required option throws UsageError.
 */
export function parseCommand(verb: string, argv: string[], spec: CommandSpec | undefined = COMMANDS[verb]): Parsed {
  if (!spec) throw new UsageError(`micar: unknown command "${verb}"`);
  const byName = new Map<string, OptionSpec>();
  for (const o of spec.options) for (const n of [o.name, ...(o.aliases ?? [])]) byName.set(n, o);
  const values = new Map<string, Value>(), explicit = new Set<string>(), positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('-') || a === '-' || /^-\d/.test(a)) {
      positionals.push(a);
      continue;
    }
    if (a === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    const body = a.replace(/^--?/, ''), eq = body.indexOf('=');
    const name = eq >= 0 ? body.slice(0, eq) : body;
    const o = byName.get(name);
    if (!o) {
      const near = closestOption(spec, name);
      const alias = near?.aliases?.length ? ` (also ${near.aliases.map((x) => `--${x}`).join(', ')})` : '';
      throw new UsageError(`micar ${verb}: unknown option ${a.slice(0, a.length - body.length + name.length)}${near ? `; did you mean --${near.name}${alias}?` : ''}`, verb);
    }
    if (!a.startsWith('--') && name.length > 1) throw new UsageError(`micar ${verb}: options take two dashes: --${name}`, verb);
    let raw: string | undefined;
    if (eq >= 0) raw = body.slice(eq + 1);
    else if (o.type !== 'boolean') {
      raw = argv[i + 1];
      if (raw === undefined || (raw.startsWith('--') && raw.length > 2)) throw new UsageError(`micar ${verb}: --${o.name} needs a value (${o.meta ?? describeType(o.type)})`, verb);
      i++;
    }
    if (explicit.has(o.name)) throw new UsageError(`micar ${verb}: --${o.name} given twice`, verb);
    values.set(o.name, raw === undefined ? true : readValue(verb, o, raw));
    explicit.add(o.name);
  }
  for (const o of spec.options) {
    if (!values.has(o.name)) {
      if (o.required) throw new UsageError(`micar ${verb}: missing --${o.name} (${o.help})`, verb);
      if (o.default !== undefined) values.set(o.name, o.default);
      else if (o.type === 'boolean') values.set(o.name, false);
    }
  }
  const want = spec.positionals ?? [];
  if (positionals.length > want.length) throw new UsageError(`micar ${verb}: unexpected argument "${positionals[want.length]}"`, verb);
  for (let i = positionals.length; i < want.length; i++) if (want[i].required) throw new UsageError(`micar ${verb}: missing <${want[i].name}> (${want[i].help})`, verb);
  return new Parsed(verb, spec, values, explicit, positionals);
}

// ---- help ---------------------------------------------------------------------------------------

function describeType(t: OptionType): string {
  if (Array.isArray(t)) return t.join('|');
  return t === 'int' ? 'N' : t === 'number' ? 'X' : t === 'boolean' ? '' : 'VALUE';
}

function defaultText(o: OptionSpec): string {
  if (o.defaultHelp !== undefined) return o.defaultHelp;
  if (o.default !== undefined) return String(o.default);
  if (o.type === 'boolean') return 'off';
  return 'none';
}

/** `micar <verb> --help`: usage line, then every option with its value, default and aliases. */
export function commandHelp(verb: string, spec: CommandSpec = COMMANDS[verb]): string {
  const pos = (spec.positionals ?? []).map((p) => (p.required ? `<${p.name}>` : `[<${p.name}>]`)).join(' ');
  const req = spec.options.filter((o) => o.required).map((o) => `--${o.name} ${o.meta ?? describeType(o.type)}`).join(' ');
  const lines = [`usage: micar ${verb} ${[pos, req, spec.options.some((o) => !o.required) ? '[options]' : ''].filter(Boolean).join(' ')}`.trimEnd(), '', spec.summary];
  if (spec.description) lines.push(spec.description);
  if (spec.positionals?.length) {
    lines.push('', 'arguments:');
    for (const p of spec.positionals) lines.push(`  ${`<${p.name}>`.padEnd(28)}${p.help}`);
  }
  lines.push('', 'options:');
  for (const o of [...spec.options, ...HELP_OPTIONS]) {
    const value = o.type === 'boolean' ? '' : ` ${o.meta ?? describeType(o.type)}`;
    const left = `  --${o.name}${value}`;
    const alias = o.aliases?.length ? `; also ${o.aliases.map((a) => (a.length === 1 ? `-${a}` : `--${a}`)).join(', ')}` : '';
    const def = o.name === 'help' ? '' : o.required ? ' [required]' : ` [default: ${defaultText(o)}]`;
    lines.push(`${left.length >= 30 ? `${left}\n${' '.repeat(30)}` : left.padEnd(30)}${o.help}${def}${alias}`);
  }
  return lines.join('\n');
}

/** `micar --help`: every verb with its summary. */
export function mainHelp(commands: Record<string, CommandSpec> = COMMANDS): string {
  const width = Math.max(...Object.keys(commands).map((k) => k.length)) + 4;
  return [
    'usage: micar <command> [options]      (npm run micar -- <command> …)',
    '',
    'commands:',
    ...Object.entries(commands).map(([k, c]) => `  ${k.padEnd(width)}${c.summary}`),
    '',
    'micar <command> --help lists the command\'s options with their defaults.',
  ].join('\n');
}
