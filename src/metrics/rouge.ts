// ROUGE as jury 2.3.1 reports it: google-research rouge_score (0.0.4, no stemmer) per pair,
// aggregated by rouge_score's BootstrapAggregator (1000 bootstrap means of the per-pair
// F-measures drawn with numpy's legacy global RandomState, median reported). The numpy seed
// is evaluate's module seed, which for the authors' runs is their `--seed 115111211`
// (../shared/golden/metrics/README.md, gotcha 2). The plain mean is reported beside it.
import { LegacyRandomState, npMean, npPercentile } from './numpy.ts';

/** The seed the authors' runs give jury's ROUGE bootstrap. */
export const AUTHORS_ROUGE_SEED = 115111211;

/** rouge_score `tokenize(text, stemmer=None)`: lower-case, runs of [^a-z0-9] → space, split. */
export function rougeTokenize(text: string): string[] {
  return text.toLowerCase().replace(/[^a-z0-9]+/g, ' ').split(/\s+/).filter((t) => /^[a-z0-9]+$/.test(t));
}

export interface RougeScore {
  precision: number;
  recall: number;
  fmeasure: number;
}

function fmeasure(precision: number, recall: number): number {
  return precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0;
}

/** Length of the longest common subsequence. */
export function lcsLength(a: readonly string[], b: readonly string[]): number {
  let prev = new Int32Array(b.length + 1);
  let cur = new Int32Array(b.length + 1);
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) cur[j] = a[i - 1] === b[j - 1] ? prev[j - 1] + 1 : Math.max(prev[j], cur[j - 1]);
    [prev, cur] = [cur, prev];
  }
  return prev[b.length];
}

/** rouge_score `_score_lcs(target, prediction)` (0, not an integer 0, for an empty side). */
export function rougeLScore(targetTokens: readonly string[], predictionTokens: readonly string[]): RougeScore {
  if (targetTokens.length === 0 || predictionTokens.length === 0) return { precision: 0, recall: 0, fmeasure: 0 };
  const lcs = lcsLength(targetTokens, predictionTokens);
  const precision = lcs / predictionTokens.length;
  const recall = lcs / targetTokens.length;
  return { precision, recall, fmeasure: fmeasure(precision, recall) };
}

/** rouge_score `_score_ngrams` for ROUGE-n. */
export function rougeNScore(targetTokens: readonly string[], predictionTokens: readonly string[], n: number): RougeScore {
  const grams = (t: readonly string[]) => {
    const m = new Map<string, number>();
    for (let i = 0; i + n <= t.length; i++) {
      const g = JSON.stringify(t.slice(i, i + n));
      m.set(g, (m.get(g) ?? 0) + 1);
    }
    return m;
  };
  const tg = grams(targetTokens), pg = grams(predictionTokens);
  let inter = 0, tCount = 0, pCount = 0;
  for (const [g, c] of tg) {
    inter += Math.min(c, pg.get(g) ?? 0);
    tCount += c;
  }
  for (const c of pg.values()) pCount += c;
  const precision = inter / Math.max(pCount, 1);
  const recall = inter / Math.max(tCount, 1);
  return { precision, recall, fmeasure: fmeasure(precision, recall) };
}

export interface BootstrapInterval {
  low: number;
  mid: number;
  high: number;
}

/**
 * rouge_score `BootstrapAggregator` (n_samples 1000, 95 % interval) on the F-measures of
 * several rouge types, in the order given, drawing from one legacy RandomState seeded
 * once — as jury's compute does inside `temp_seed(seed)`. A `null` entry is a type whose draws
 * must be consumed (to keep the stream aligned) but whose values are not needed.
 */
export function bootstrapF(fByType: readonly (readonly number[] | null)[], n: number, seed: number, nSamples = 1000, confidence = 0.95): (BootstrapInterval | null)[] {
  const rng = new LegacyRandomState(seed);
  const delta = (1 - confidence) / 2;
  const qs = [100 * delta, 100 * 0.5, 100 * (1 - delta)];
  return fByType.map((f) => {
    if (f !== null && f.length !== n) throw new Error(`bootstrapF: ${f.length} scores, expected ${n}`);
    const means = new Float64Array(nSamples);
    for (let s = 0; s < nSamples; s++) {
      // np.mean(matrix[idx], axis=0) adds the drawn rows one after another.
      let sum = 0;
      for (let k = 0; k < n; k++) {
        const idx = rng.randintBelow(n);
        if (f) sum += f[idx];
      }
      means[s] = sum / n;
    }
    if (f === null) return null;
    const [low, mid, high] = qs.map((q) => npPercentile(means, q));
    return { low, mid, high };
  });
}

export interface JuryRougeResult {
  /** jury's `rouge.rouge1/rouge2/rougeL` with their bootstrap intervals (`mid` is what jury reports). */
  rouge1: BootstrapInterval;
  rouge2: BootstrapInterval;
  rougeL: BootstrapInterval;
  /** Plain (numpy) mean of the per-pair ROUGE-L F-measures. */
  rougeLMean: number;
  /** Per-pair ROUGE-L precision/recall/F. */
  pairs: RougeScore[];
}

/** jury's `rouge` (rouge1, rouge2, rougeL as reported) on raw strings; `seed` = numpy seed. */
export function juryRouge(predictions: readonly string[], references: readonly string[], seed = AUTHORS_ROUGE_SEED): JuryRougeResult {
  if (predictions.length !== references.length) throw new Error(`juryRouge: ${predictions.length} predictions vs ${references.length} references`);
  const n = predictions.length;
  if (n === 0) throw new Error('juryRouge: no pairs');
  const pred = predictions.map(rougeTokenize), ref = references.map(rougeTokenize);
  const r1 = ref.map((r, i) => rougeNScore(r, pred[i], 1).fmeasure);
  const r2 = ref.map((r, i) => rougeNScore(r, pred[i], 2).fmeasure);
  const pairs = ref.map((r, i) => rougeLScore(r, pred[i]));
  const fl = pairs.map((p) => p.fmeasure);
  // jury's rouge types in order: rouge1, rouge2, rougeL, rougeLsum (the last draws after rougeL).
  const [b1, b2, bl] = bootstrapF([r1, r2, fl], n, seed) as BootstrapInterval[];
  return { rouge1: b1, rouge2: b2, rougeL: bl, rougeLMean: npMean(fl), pairs };
}
