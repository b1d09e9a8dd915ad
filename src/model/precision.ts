// The `precision` option of inference and training: f32, f16 (weights, activations and the
// key/value cache in f16, reductions in f32; training keeps f32 master weights), or auto.
import { runtime } from '../graph/runtime.ts';
import { type Backbone, backboneLayout } from './config.ts';

export type Precision = 'f32' | 'f16' | 'auto';
export const PRECISIONS: readonly Precision[] = ['f32', 'f16', 'auto'];

export interface ResolvedPrecision {
  dtype: 'f32' | 'f16';
  /** Set when `auto` fell back to f32 (say so to the user). */
  note: string | null;
}

/** Checks a user-given value (CLI flag, config field, API option). */
export function parsePrecision(v: unknown, where = 'precision'): Precision {
  if (v === undefined || v === null || v === '') return 'f32';
  if (typeof v === 'string' && (PRECISIONS as readonly string[]).includes(v)) return v as Precision;
  throw new Error(`${where}: "${String(v)}" is not a precision (f32, f16 or auto)`);
}

/**
 * The element type to run in on this adapter: `auto` is f16 where the adapter has shader-f16,
 * else f32 (with a note); `f16` without shader-f16 is an error naming the adapter.
 */
export function resolvePrecision(p: Precision = 'f32'): ResolvedPrecision {
  if (p === 'f32') return { dtype: 'f32', note: null };
  const gpu = runtime().gpu;
  if (gpu.hasF16) return { dtype: 'f16', note: null };
  if (p === 'f16')
    throw new Error(`precision f16: the adapter "${gpu.adapterName}" has no shader-f16 feature; use precision f32 or auto`);
  return { dtype: 'f32', note: `precision auto: the adapter "${gpu.adapterName}" has no shader-f16 feature, running in f32` };
}

/**
 * Element type of the ResNet backbone's activations for a model whose activations are `dtype`.
 * A deep backbone runs in f32 under f16: a fresh ResNet-101 amplifies relative rounding by
 * ~10⁴ (the paper golden case: torch f32 vs float64 differ by 4e-4 at the MSVE output), so f16
 * activations (u = 2⁻¹¹) there gave rel L2 8e-3 at C3, 0.16 at C4 (23 blocks) and 0.38 at the
 * output (logits 8.4e-2), while f16 weights read in f32 reproduce f32 exactly when the weights
 * are f16 values. Its weights are small (largest 2.4M); the FPN after it (the large convs)
 * stays f16. The tiny backbones (4 blocks) stay within ~1e-3 in f16 (golden f16 tiny cases).
 */
export function backboneComputeType(cfg: { backbone: Backbone }, dtype: 'f32' | 'f16'): 'f32' | 'f16' {
  if (dtype === 'f32') return 'f32';
  const blocks = backboneLayout(cfg.backbone).blocks.reduce((a, b) => a + b, 0);
  return blocks > DEEP_BACKBONE_BLOCKS ? 'f32' : 'f16';
}
/** More residual blocks than this run the vision encoder in f32 under f16 (ResNet-34/50: 16). */
export const DEEP_BACKBONE_BLOCKS = 8;
