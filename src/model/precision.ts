// The `precision` option of inference and training: f32, f16 (weights, activations and the
// key/value cache in f16, reductions in f32; training keeps f32 master weights), or auto.
import { runtime } from '../graph/runtime.ts';

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
