// Evaluation: generate reports for a split, score them with the caption metrics and, on the
// built-in dataset, finding accuracy; plus the two baselines (most frequent training report,
// nearest-neighbour report by image pixels).
import { fromData, dispose } from '../graph/runtime.ts';
import type { Tokenizer } from '../data/tokenizer.ts';
import { computeMetrics, type CaptionMetrics } from '../metrics/index.ts';
import { parseFindings, scoreFindings, summarizeFindingScores } from '../data/findings.ts';
import type { Finding, Modality } from '../data/findings.ts';
import type { Weights } from '../model/weights.ts';
import { generate } from '../generate/decode.ts';
import { pixelsOf, type TrainExample } from './batches.ts';

export interface EvalExample extends TrainExample {
  truth?: { modality: Modality; findings: Finding[] };
}

export type EvalScores = Omit<CaptionMetrics, 'rougeL_mean'> & {
  /** Built-in dataset only: share of reports whose findings are all right (else null). */
  finding_accuracy: number | null;
};

export function scorePredictions(preds: string[], examples: EvalExample[]): EvalScores {
  const m: CaptionMetrics = computeMetrics(preds, examples.map((e) => e.report));
  let finding: number | null = null;
  if (examples.every((e) => e.truth)) {
    finding = summarizeFindingScores(preds.map((p, i) => scoreFindings(parseFindings(p), examples[i].truth!))).exact;
  }
  return { bleu1: m.bleu1, bleu2: m.bleu2, bleu3: m.bleu3, bleu4: m.bleu4, meteor: m.meteor, rougeL: m.rougeL, cider: m.cider, selection: m.selection, finding_accuracy: finding };
}

/** Greedy reports for every example (batched). */
export async function predictReports(w: Weights, tok: Tokenizer, examples: TrainExample[], batchSize = 16): Promise<string[]> {
  const S = w.cfg.image_size, per = 3 * S * S;
  const out: string[] = [];
  for (let i = 0; i < examples.length; i += batchSize) {
    const chunk = examples.slice(i, i + batchSize);
    const px = new Float32Array(chunk.length * per);
    for (const [j, e] of chunk.entries()) px.set(await pixelsOf(e), j * per);
    const image = fromData(px, [chunk.length, 3, S, S], 'f32', 'eval images');
    const res = await generate(w, image, { stopAtEos: true });
    dispose(image);
    for (const toks of res.tokens) out.push(tok.decode(toks, { stopAtEos: true }));
  }
  return out;
}

export function mostFrequentReport(train: TrainExample[]): string {
  const counts = new Map<string, number>();
  for (const e of train) counts.set(e.report, (counts.get(e.report) ?? 0) + 1);
  let best = '', n = -1;
  for (const [r, c] of counts) if (c > n || (c === n && r < best)) [best, n] = [r, c];
  return best;
}

/**
 * The training report of the image closest in pixel space (squared L2) — over the preprocessed
 * images when every example holds them, else over their 16×16 thumbnails (splits decoded per
 * batch; see `nearestNeighbourSpace`).
 */
export function nearestNeighbourReports(train: TrainExample[], queries: TrainExample[]): string[] {
  const full = nearestNeighbourSpace(train, queries) === 'pixels';
  const vec = (e: TrainExample): Float32Array => {
    const v = full ? e.pixels : e.thumb;
    if (!v) throw new Error(`nearest-neighbour baseline: example ${e.id} has no ${full ? 'pixels' : 'thumbnail'}`);
    return v;
  };
  const tv = train.map(vec);
  return queries.map((q) => {
    const qv = vec(q);
    let best = 0, bestD = Infinity;
    tv.forEach((t, i) => {
      let d = 0;
      for (let k = 0; k < qv.length && d < bestD; k++) {
        const x = qv[k] - t[k];
        d += x * x;
      }
      if (d < bestD) [best, bestD] = [i, d];
    });
    return train[best].report;
  });
}

/** Where the nearest-neighbour baseline compares images: full preprocessed pixels, or thumbnails. */
export function nearestNeighbourSpace(train: TrainExample[], queries: TrainExample[]): 'pixels' | 'thumbnails' {
  return [...train, ...queries].every((e) => e.pixels) ? 'pixels' : 'thumbnails';
}
