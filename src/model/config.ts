// Model and training configuration (SPEC "Configuration"); presets live in configs/*.json.

export type Backbone = 'resnet10' | 'resnet14b' | 'resnet18' | 'resnet34' | 'resnet50' | 'resnet101' | 'resnet152';
export const ACT_NAMES = ['silu', 'gelu', 'selu', 'telu', 'relu'] as const;
export type ActName = typeof ACT_NAMES[number];
export type MoeMode = 'sum' | 'weighted';

export interface MicarConfig {
  name?: string;
  backbone: Backbone;
  image_size: number;
  /** Shorter side before the centre crop (SPEC §7: 232 for 224). */
  resize_size?: number;
  d_v: number;
  d_model: number;
  d_latent: number;
  num_heads: number;
  qk_nope_dim: number;
  qk_rope_dim: number;
  d_ff: number;
  num_layers: number;
  num_experts: number;
  k: number;
  act_fn: ActName;
  moe_mode: MoeMode;
  /**
   * EXPERIMENT, not the SPEC model (default off; bench/explain-locality.json): image tokens kept
   * local — the FPN's top-down path is cut (the fused map is fusion(lateral C2) alone) and the
   * image encoder's self-attention is skipped (its FFN stays), so a token carries only its own
   * neighbourhood. Used to measure whether token-level explanations can point when tokens do not
   * already encode the lesion's location (issue 14). Read in two places only: fpnFromFeatures
   * (vision.ts) and encoderLayer (blocks.ts). No preset sets it (configs/*.json); the unused
   * weights (fpn_c3..c5, the encoder's norm_sa / self_attention) stay in the state dict. The
   * authors' PyTorch model cannot represent it: export refuses the formats that carry no config
   * (authors .pth, plain safetensors); the Hugging Face config.json and micar checkpoints record it.
   */
  local_tokens_experiment?: boolean;
  text_seq_len: number;
  vocab_size: number;
  dropout: number;
  attention_dropout: number;
  lb_loss_weight: number;
  pad_id: number;
  sos_id: number;
  eos_id: number;
  unk_id: number;
  // training
  batch_size?: number;
  epochs?: number;
  patience?: number;
  lr?: number;
  v_lr?: number;
  weight_decay?: number;
  betas?: [number, number];
  eps?: number;
  amsgrad?: boolean;
  step_size?: number;
  gamma?: number;
  beam_width?: number;
  min_frequency?: number;
  seed?: number;
}

export const BACKBONES: Backbone[] = ['resnet10', 'resnet14b', 'resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152'];

/** Every field of MicarConfig (the compile-time check below keeps the list complete). */
export const CONFIG_KEYS = [
  'name', 'backbone', 'image_size', 'resize_size', 'd_v', 'd_model', 'd_latent', 'num_heads', 'qk_nope_dim', 'qk_rope_dim', 'd_ff',
  'num_layers', 'num_experts', 'k', 'act_fn', 'moe_mode', 'local_tokens_experiment', 'text_seq_len', 'vocab_size', 'dropout',
  'attention_dropout', 'lb_loss_weight', 'pad_id', 'sos_id', 'eos_id', 'unk_id', 'batch_size', 'epochs', 'patience', 'lr', 'v_lr',
  'weight_decay', 'betas', 'eps', 'amsgrad', 'step_size', 'gamma', 'beam_width', 'min_frequency', 'seed',
] as const satisfies readonly (keyof MicarConfig)[];
const _allKeysListed: Exclude<keyof MicarConfig, typeof CONFIG_KEYS[number]> extends never ? true : never = true;
void _allKeysListed;

/** Levenshtein distance (for "did you mean"). */
export function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0];
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j];
      prev[j] = Math.min(prev[j] + 1, prev[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length];
}

/**
 * A field that is not a micar config field but is within one edit (two for names of 8+
 * characters) of one: a misspelling that would otherwise be ignored silently (e.g.
 * `local_token_experiment`, leaving the SPEC model). Fields further from every name are other
 * tools' (a golden case's `tolerance`, Hugging Face's `architectures`) and are ignored.
 */
function misspeltField(raw: Record<string, unknown>): { field: string; near: string } | null {
  const known = new Set<string>([...CONFIG_KEYS, 'batch']);
  for (const field of Object.keys(raw)) {
    if (known.has(field)) continue;
    const limit = field.length >= 8 ? 2 : 1;
    let near = '', best = Infinity;
    for (const k of CONFIG_KEYS) {
      const d = editDistance(field, k);
      if (d < best) [best, near] = [d, k];
    }
    if (best <= limit) return { field, near };
  }
  return null;
}

/** Fills defaults and checks every field a model needs; errors name the field. */
export function normaliseConfig(raw: Record<string, unknown>, source = 'config'): MicarConfig {
  const typo = misspeltField(raw);
  if (typo) throw new Error(`${source}: unknown field "${typo.field}"; did you mean "${typo.near}"?`);
  const c = { lb_loss_weight: 0.01, pad_id: 0, sos_id: 1, eos_id: 2, unk_id: 3, dropout: 0, attention_dropout: 0, moe_mode: 'sum', ...raw } as Record<string, unknown>;
  if (c.batch_size === undefined && typeof c.batch === 'number') c.batch_size = c.batch;
  const need = (k: string, test: (v: unknown) => boolean, what: string) => {
    if (!test(c[k])) throw new Error(`${source}: field "${k}" must be ${what} (got ${JSON.stringify(c[k])})`);
  };
  const posInt = (v: unknown) => Number.isInteger(v) && (v as number) > 0;
  need('backbone', (v) => BACKBONES.includes(v as Backbone), `one of ${BACKBONES.join(', ')}`);
  for (const k of ['image_size', 'd_v', 'd_model', 'd_latent', 'num_heads', 'qk_nope_dim', 'qk_rope_dim', 'd_ff', 'num_layers', 'num_experts', 'k', 'text_seq_len', 'vocab_size'])
    need(k, posInt, 'a positive integer');
  need('act_fn', (v) => ACT_NAMES.includes(v as ActName), ACT_NAMES.join(', '));
  need('moe_mode', (v) => v === 'sum' || v === 'weighted', '"sum" or "weighted"');
  if (c.local_tokens_experiment !== undefined) need('local_tokens_experiment', (v) => typeof v === 'boolean', 'true or false');
  const cfg = c as unknown as MicarConfig;
  if (cfg.d_model % cfg.num_heads) throw new Error(`${source}: d_model ${cfg.d_model} is not divisible by num_heads ${cfg.num_heads}`);
  if (cfg.d_latent % cfg.num_heads) throw new Error(`${source}: d_latent ${cfg.d_latent} is not divisible by num_heads ${cfg.num_heads}`);
  if (cfg.d_latent / cfg.num_heads !== cfg.qk_nope_dim + cfg.qk_rope_dim)
    throw new Error(`${source}: d_latent/num_heads (${cfg.d_latent / cfg.num_heads}) must equal qk_nope_dim + qk_rope_dim (${cfg.qk_nope_dim + cfg.qk_rope_dim})`);
  if (cfg.qk_rope_dim % 4) throw new Error(`${source}: qk_rope_dim ${cfg.qk_rope_dim} must be a multiple of 4`);
  if (cfg.k > cfg.num_experts) throw new Error(`${source}: k ${cfg.k} exceeds num_experts ${cfg.num_experts}`);
  if (cfg.image_size < 32) throw new Error(`${source}: image_size ${cfg.image_size} is below 32 (the backbone downsamples by 32)`);
  return cfg;
}

/**
 * The model input's geometry, shared by training, evaluation, generation, the viewers and the
 * library: shorter side resized to `resize_size` (default the authors' 232/224 ratio, SPEC §7),
 * then a centre crop of `image_size`.
 */
export function inputGeometry(cfg: Pick<MicarConfig, 'image_size' | 'resize_size'>): { resize: number; crop: number } {
  return { resize: cfg.resize_size ?? Math.round((cfg.image_size * 232) / 224), crop: cfg.image_size };
}

/** Backbone stage layout: block kind and blocks per stage. */
export function backboneLayout(b: Backbone): { bottleneck: boolean; blocks: number[] } {
  switch (b) {
    case 'resnet10': return { bottleneck: false, blocks: [1, 1, 1, 1] };
    case 'resnet14b': return { bottleneck: true, blocks: [1, 1, 1, 1] };
    case 'resnet18': return { bottleneck: false, blocks: [2, 2, 2, 2] };
    case 'resnet34': return { bottleneck: false, blocks: [3, 4, 6, 3] };
    case 'resnet50': return { bottleneck: true, blocks: [3, 4, 6, 3] };
    case 'resnet101': return { bottleneck: true, blocks: [3, 4, 23, 3] };
    case 'resnet152': return { bottleneck: true, blocks: [3, 8, 36, 3] };
  }
}
