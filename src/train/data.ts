// Loader samples → preprocessed training/evaluation examples. A split whose preprocessed
// images fit the memory budget is held as floats; a larger one (e.g. ROCO, or any dataset at
// 224² beyond ~1800 images per GiB) keeps only the encoded images and decodes each batch again
// (training prefetches the next batch while the GPU runs the current step). Every image is
// decoded once here either way, so a broken file is reported before training starts.
import { loadSampleImage, type Sample } from '../data/datasets.ts';
import type { DataFiles } from '../data/fs.ts';
import { preprocess } from '../data/preprocess.ts';
import { inputGeometry, type MicarConfig } from '../model/config.ts';
import type { EvalExample } from './evaluate.ts';

/** Default budget for preprocessed images held in memory, per call (bytes). */
export const DEFAULT_PIXEL_MEMORY = 1024 * 1024 * 1024;

/** Side of the thumbnails kept for splits decoded per batch. */
export const THUMB = 16;

export interface PrepareOptions {
  /** Bytes of preprocessed floats this split may keep in memory (default 1 GiB); above it, images are decoded per batch. */
  pixelMemory?: number;
}

/** Pixels [a, b) of thumbnail cell t: those with ⌊y·THUMB/S⌋ = t (the nearest one when S < THUMB leaves it empty). */
function cell(t: number, S: number): [number, number] {
  const a = Math.ceil((t * S) / THUMB), b = Math.ceil(((t + 1) * S) / THUMB);
  if (b > a) return [a, b];
  const n = Math.min(S - 1, Math.floor((t * S) / THUMB));
  return [n, n + 1];
}

/** Area average of a [3, S, S] image to [3, THUMB, THUMB]. */
export function thumbnail(px: Float32Array, S: number): Float32Array {
  const out = new Float32Array(3 * THUMB * THUMB);
  for (let c = 0; c < 3; c++)
    for (let ty = 0; ty < THUMB; ty++) {
      const [y0, y1] = cell(ty, S);
      for (let tx = 0; tx < THUMB; tx++) {
        const [x0, x1] = cell(tx, S);
        let sum = 0;
        for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) sum += px[c * S * S + y * S + x];
        out[(c * THUMB + ty) * THUMB + tx] = sum / ((y1 - y0) * (x1 - x0));
      }
    }
  return out;
}

/** Decodes and preprocesses every sample (errors name the sample and file). */
export async function prepareExamples(samples: Sample[], cfg: MicarConfig, files?: DataFiles, opts: PrepareOptions = {}): Promise<EvalExample[]> {
  const S = cfg.image_size;
  const budget = opts.pixelMemory ?? DEFAULT_PIXEL_MEMORY;
  const inMemory = samples.length * 3 * S * S * 4 <= budget;
  const pixelsFor = async (s: Sample) => preprocess(await loadSampleImage(s, files), inputGeometry(cfg));
  const out: EvalExample[] = [];
  for (const s of samples) {
    if (!s.report || !s.report.trim()) throw new Error(`sample ${s.id}${s.imagePath ? ` (${s.imagePath})` : ''}: empty report`);
    const pixels = await pixelsFor(s);
    const truth = s.meta ? { modality: s.meta.modality, findings: s.meta.findings } : undefined;
    if (inMemory) out.push({ id: s.id, pixels, report: s.report, truth });
    else out.push({ id: s.id, pixels: null, load: () => pixelsFor(s), thumb: thumbnail(pixels, S), report: s.report, truth });
  }
  return out;
}
