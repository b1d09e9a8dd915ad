// Examples → GPU batches: preprocessed pixels (CHW floats) and encoded reports.
import { fromData } from '../graph/runtime.ts';
import { mulberry32 } from '../graph/ops/random.ts';
import type { Tokenizer } from '../data/tokenizer.ts';
import type { Batch } from '../model/micar.ts';

export interface TrainExample {
  id: string;
  /** Preprocessed image, [3, S, S] normalised floats, when the split is held in memory. */
  pixels: Float32Array | null;
  /** Decodes and preprocesses the image again (splits too large to hold as floats). */
  load?: () => Promise<Float32Array>;
  /** [3, 16, 16] area average of the preprocessed image (nearest-neighbour baseline of large splits). */
  thumb?: Float32Array;
  report: string;
}

/** The preprocessed image of an example, from memory or decoded on demand. */
export async function pixelsOf(e: TrainExample): Promise<Float32Array> {
  if (e.pixels) return e.pixels;
  if (!e.load) throw new Error(`example ${e.id}: no pixels and no image to load them from`);
  return await e.load();
}

export interface HostBatch {
  ids: string[];
  pixels: Float32Array;
  input: Int32Array;
  labels: Int32Array;
  padMask: Int32Array;
  b: number;
  T: number;
  size: number;
}

/** Pixels and encoded reports of a batch (images decoded here when the split is not in memory). */
export async function hostBatch(examples: TrainExample[], tok: Tokenizer, T: number, size: number): Promise<HostBatch> {
  const b = examples.length;
  const per = 3 * size * size;
  const pixels = new Float32Array(b * per);
  const input = new Int32Array(b * T), labels = new Int32Array(b * T), padMask = new Int32Array(b * T);
  for (const [i, e] of examples.entries()) {
    const px = await pixelsOf(e);
    if (px.length !== per) throw new Error(`example ${e.id}: image has ${px.length} values, expected 3×${size}×${size}`);
    pixels.set(px, i * per);
    const enc = tok.encode(e.report, T);
    input.set(enc.input, i * T);
    labels.set(enc.labels, i * T);
    padMask.set(enc.padMask, i * T);
  }
  return { ids: examples.map((e) => e.id), pixels, input, labels, padMask, b, T, size };
}

export function toGpuBatch(h: HostBatch): Batch {
  return {
    image: fromData(h.pixels, [h.b, 3, h.size, h.size], 'f32', 'image'),
    inputIds: fromData(h.input, [h.b, h.T], 'i32', 'input_ids'),
    labelIds: fromData(h.labels, [h.b, h.T], 'i32', 'label_ids'),
    padMask: h.padMask,
  };
}

/** Deterministic Fisher–Yates permutation of 0..n−1 for (seed, epoch). */
export function epochOrder(n: number, seed: number, epoch: number): number[] {
  const rnd = mulberry32((Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(epoch + 1, 0x85ebca77)) >>> 0);
  const a = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}
