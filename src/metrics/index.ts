// Caption metrics as the MicarVLMoE authors report them (jury 2.3.1: BLEU-1..4, METEOR,
// ROUGE-L) plus pycocoevalcap's CIDEr-D, and their model-selection score. SPEC §10;
// rules, gotchas and reference values: ../shared/golden/metrics/README.md.
import { juryBleu, juryTokenize } from './bleu.ts';
import { ciderD } from './cider.ts';
import { meteorDetail, type MeteorOptions } from './meteor.ts';
import { npMean } from './numpy.ts';
import { AUTHORS_ROUGE_SEED, juryRouge } from './rouge.ts';

export { bleuCounts, computeBleu, juryBleu, juryTokenize, pySplit, type BleuCounts, type BleuResult } from './bleu.ts';
export { ciderD, type CiderResult } from './cider.ts';
export { meteorDetail, singleMeteorScore, type MeteorDetail, type MeteorOptions } from './meteor.ts';
export { LegacyRandomState, npMean, npPercentile, npSum } from './numpy.ts';
export { porterStem } from './porter.ts';
export {
  AUTHORS_ROUGE_SEED, bootstrapF, juryRouge, lcsLength, rougeLScore, rougeNScore, rougeTokenize,
  type BootstrapInterval, type JuryRougeResult, type RougeScore,
} from './rouge.ts';
export { NO_SYNONYMS, wordnet, WordnetIndex, type SynonymSource, type WordnetPos } from './wordnet.ts';

export interface CaptionMetrics {
  bleu1: number;
  bleu2: number;
  bleu3: number;
  bleu4: number;
  /** Mean of per-pair nltk METEOR (jury's `meteor.score`). */
  meteor: number;
  /** jury's `rouge.rougeL`: bootstrap median of per-pair ROUGE-L F (numpy seed `rougeSeed`). */
  rougeL: number;
  /** Plain mean of per-pair ROUGE-L F (seed-independent). */
  rougeL_mean: number;
  /** pycocoevalcap CIDEr-D on the whitespace-split strings. */
  cider: number;
  /** The authors' early-stopping score: (B1+B2+B3+B4)/8 + METEOR/4 + ROUGE-L/4 (jury's rougeL). */
  selection: number;
}

export interface ComputeMetricsOptions {
  /** numpy seed of jury's ROUGE bootstrap; the authors' runs give 115111211. */
  rougeSeed?: number;
  meteor?: MeteorOptions;
}

/** The authors' `get_monitored_metrics_scores` formula. */
export function selectionScore(m: { bleu1: number; bleu2: number; bleu3: number; bleu4: number; meteor: number; rougeL: number }): number {
  return (m.bleu1 + m.bleu2 + m.bleu3 + m.bleu4) / 8 + m.meteor / 4 + m.rougeL / 4;
}

/**
 * Every caption metric for one prediction and one reference report per item, as the authors'
 * code reports them. Unlike jury, an empty first prediction does not crash or truncate ROUGE.
 */
export function computeMetrics(predictions: string[], references: string[], opts: ComputeMetricsOptions = {}): CaptionMetrics {
  if (predictions.length !== references.length) throw new Error(`computeMetrics: ${predictions.length} predictions vs ${references.length} references`);
  if (predictions.length === 0) throw new Error('computeMetrics: no pairs');
  const [bleu1, bleu2, bleu3, bleu4] = [1, 2, 3, 4].map((n) => juryBleu(predictions, references, n).score);
  const meteor = npMean(predictions.map((p, i) => meteorDetail(juryTokenize(references[i]), juryTokenize(p), opts.meteor).score));
  const rouge = juryRouge(predictions, references, opts.rougeSeed ?? AUTHORS_ROUGE_SEED);
  const cider = ciderD(predictions, references).score;
  const rougeL = rouge.rougeL.mid;
  return {
    bleu1, bleu2, bleu3, bleu4, meteor, rougeL, rougeL_mean: rouge.rougeLMean, cider,
    selection: selectionScore({ bleu1, bleu2, bleu3, bleu4, meteor, rougeL }),
  };
}
