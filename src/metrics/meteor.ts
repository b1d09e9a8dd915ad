// METEOR exactly as nltk 3.7 `single_meteor_score(reference, hypothesis)` computes it (the
// version jury 2.3.1 runs): exact → Porter-stem → WordNet-synonym stages with nltk's greedy
// matching, chunk penalty, α=0.9, β=3, γ=0.5. The corpus value (jury) is numpy's mean of the
// per-pair scores.
import { porterStem } from './porter.ts';
import { type SynonymSource, wordnet } from './wordnet.ts';

export interface MeteorOptions {
  alpha?: number;
  beta?: number;
  gamma?: number;
  /** Synonym stage data; default the bundled WordNet 3.0, `NO_SYNONYMS` switches the stage off. */
  synonyms?: SynonymSource;
}

export interface MeteorDetail {
  score: number;
  /** Matches found by each stage. */
  exact: number;
  stem: number;
  wordnet: number;
  /** `[hypothesis word, reference word]` of each synonym match (both already stemmed). */
  wordnetPairs: [string, string][];
  chunks: number;
  /** `[hypothesis index, reference index]`, sorted by hypothesis index. */
  matches: [number, number][];
}

type Enum = [index: number, word: string][];

/**
 * nltk `_match_enums`: hypothesis positions from last to first, each taking the last
 * still-unmatched reference position that `same` accepts. Removes matched entries in place.
 */
function greedyMatch(hyp: Enum, ref: Enum, same: (h: string, r: string) => boolean): [number, number][] {
  const out: [number, number][] = [];
  for (let i = hyp.length - 1; i >= 0; i--) {
    for (let j = ref.length - 1; j >= 0; j--) {
      if (same(hyp[i][1], ref[j][1])) {
        out.push([hyp[i][0], ref[j][0]]);
        hyp.splice(i, 1);
        ref.splice(j, 1);
        break;
      }
    }
  }
  return out;
}

/** nltk `_count_chunks`: runs of matches adjacent on both sides. */
function countChunks(matches: [number, number][]): number {
  let chunks = 1;
  for (let i = 0; i + 1 < matches.length; i++) {
    if (!(matches[i + 1][0] === matches[i][0] + 1 && matches[i + 1][1] === matches[i][1] + 1)) chunks++;
  }
  return chunks;
}

/** Python `str.lower` per token, as nltk's default `preprocess`. */
const lower = (t: string) => t.toLowerCase();

/** nltk 3.7 `single_meteor_score(reference, hypothesis)` on pre-tokenised input, with its stage counts. */
export function meteorDetail(reference: readonly string[], hypothesis: readonly string[], opts: MeteorOptions = {}): MeteorDetail {
  const { alpha = 0.9, beta = 3, gamma = 0.5 } = opts;
  let hyp: Enum = hypothesis.map((w, i) => [i, lower(w)]);
  let ref: Enum = reference.map((w, i) => [i, lower(w)]);
  const translationLength = hyp.length;
  const referenceLength = ref.length;

  const exact = greedyMatch(hyp, ref, (h, r) => h === r);
  // The stem stage replaces the remaining words by their stems; the synonym stage sees stems.
  hyp = hyp.map(([i, w]) => [i, porterStem(w)]);
  ref = ref.map(([i, w]) => [i, porterStem(w)]);
  const stem = greedyMatch(hyp, ref, (h, r) => h === r);
  const wordnetPairs: [string, string][] = [];
  let synonymMatches: [number, number][] = [];
  if (hyp.length && ref.length) {
    const source = opts.synonyms ?? wordnet();
    let lastHyp: string | undefined;
    let syns: ReadonlySet<string> = new Set();
    synonymMatches = greedyMatch(hyp, ref, (h, r) => {
      if (h !== lastHyp) {
        syns = source.synonyms(h); // the synonym set of one hypothesis word, reused across j
        lastHyp = h;
      }
      const ok = r === h || syns.has(r);
      if (ok) wordnetPairs.push([h, r]);
      return ok;
    });
  }
  const matches = [...exact, ...stem, ...synonymMatches].sort((a, b) => a[0] - b[0]);
  const m = matches.length;
  // nltk counts 1 chunk for no matches (the score is 0 then anyway); report 0.
  const chunks = m === 0 ? 0 : countChunks(matches);
  const base = { exact: exact.length, stem: stem.length, wordnet: synonymMatches.length, wordnetPairs, chunks, matches };
  // nltk returns 0 on any ZeroDivisionError: no match, or an empty side.
  if (m === 0 || translationLength === 0 || referenceLength === 0) return { score: 0, ...base };
  const precision = m / translationLength;
  const recall = m / referenceLength;
  const denom = alpha * precision + (1 - alpha) * recall;
  if (denom === 0) return { score: 0, ...base };
  const fmean = (precision * recall) / denom;
  const fragFrac = chunks / m;
  const penalty = gamma * fragFrac ** beta;
  return { score: (1 - penalty) * fmean, ...base };
}

/** nltk 3.7 `single_meteor_score(reference, hypothesis)` (tokens; lower-cased here). */
export function singleMeteorScore(reference: readonly string[], hypothesis: readonly string[], opts: MeteorOptions = {}): number {
  return meteorDetail(reference, hypothesis, opts).score;
}
