// Loader samples → preprocessed training/evaluation examples.
import { loadSampleImage, type Sample } from '../data/datasets.ts';
import type { DataFiles } from '../data/fs.ts';
import { preprocess } from '../data/preprocess.ts';
import type { MicarConfig } from '../model/config.ts';
import type { EvalExample } from './evaluate.ts';

/** Decodes and preprocesses every sample (errors name the sample and file). */
export async function prepareExamples(samples: Sample[], cfg: MicarConfig, files?: DataFiles): Promise<EvalExample[]> {
  const out: EvalExample[] = [];
  for (const s of samples) {
    if (!s.report || !s.report.trim()) throw new Error(`sample ${s.id}${s.imagePath ? ` (${s.imagePath})` : ''}: empty report`);
    const img = await loadSampleImage(s, files);
    const pixels = preprocess(img, { resize: cfg.resize_size ?? cfg.image_size, crop: cfg.image_size });
    out.push({ id: s.id, pixels, report: s.report, truth: s.meta ? { modality: s.meta.modality, findings: s.meta.findings } : undefined });
  }
  return out;
}
