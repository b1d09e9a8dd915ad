// Corpus BLEU as jury 2.3.1 reports it: tensorflow/nmt `compute_bleu` (smooth=False) on
// jury's DefaultTokenizer tokens, which drop ASCII punctuation.

/** Python's `string.punctuation`. */
const ASCII_PUNCTUATION = /[!"#$%&'()*+,\-./:;<=>?@[\\\]^_`{|}~]/g;
/** What Python's `str.split()` treats as white space. */
const PY_WHITESPACE = /[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/;

/** Python `str.split()` (no argument): split on runs of white space, no empty strings. */
export function pySplit(s: string): string[] {
  return s.split(PY_WHITESPACE).filter((t) => t !== '');
}

/**
 * jury's DefaultTokenizer (`normalize_text` then split): every ASCII punctuation character
 * becomes a space, white space is collapsed, the text lower-cased, then split. Non-ASCII
 * characters are kept.
 */
export function juryTokenize(text: string): string[] {
  return pySplit(pySplit(text.replace(ASCII_PUNCTUATION, ' ')).join(' ').toLowerCase());
}

export interface BleuCounts {
  /** Clipped n-gram matches per order (index k−1). */
  matches: number[];
  /** max(len − k + 1, 0) per order. */
  possible: number[];
  hypLen: number;
  refLen: number;
}

/** n-gram counts per order (index k−1), each n-gram keyed by its tokens as a JSON array. */
function ngramCounts(tokens: readonly string[], maxOrder: number): Map<string, number>[] {
  const out: Map<string, number>[] = [];
  for (let k = 1; k <= maxOrder; k++) {
    const counts = new Map<string, number>();
    for (let i = 0; i + k <= tokens.length; i++) {
      const g = JSON.stringify(tokens.slice(i, i + k));
      counts.set(g, (counts.get(g) ?? 0) + 1);
    }
    out.push(counts);
  }
  return out;
}

/** One pair's contribution to corpus BLEU (one reference, as the authors score). */
export function bleuCounts(reference: readonly string[], hypothesis: readonly string[], maxOrder = 4): BleuCounts {
  const refCounts = ngramCounts(reference, maxOrder);
  const hypCounts = ngramCounts(hypothesis, maxOrder);
  const matches = new Array<number>(maxOrder).fill(0);
  const possible = new Array<number>(maxOrder).fill(0);
  for (let k = 0; k < maxOrder; k++) {
    for (const [g, c] of hypCounts[k]) matches[k] += Math.min(c, refCounts[k].get(g) ?? 0);
    possible[k] = Math.max(hypothesis.length - k, 0);
  }
  return { matches, possible, hypLen: hypothesis.length, refLen: reference.length };
}

export interface BleuResult {
  score: number;
  precisions: number[];
  brevityPenalty: number;
  lengthRatio: number;
  translationLength: number;
  referenceLength: number;
}

/**
 * tensorflow/nmt `compute_bleu(reference_corpus, translation_corpus, max_order, smooth=False)`
 * with one reference per hypothesis, on already tokenised text.
 */
export function computeBleu(references: readonly (readonly string[])[], hypotheses: readonly (readonly string[])[], maxOrder = 4): BleuResult {
  if (references.length !== hypotheses.length) throw new Error(`computeBleu: ${hypotheses.length} hypotheses vs ${references.length} references`);
  const matches = new Array<number>(maxOrder).fill(0);
  const possible = new Array<number>(maxOrder).fill(0);
  let translationLength = 0, referenceLength = 0;
  for (let p = 0; p < hypotheses.length; p++) {
    const c = bleuCounts(references[p], hypotheses[p], maxOrder);
    for (let k = 0; k < maxOrder; k++) {
      matches[k] += c.matches[k];
      possible[k] += c.possible[k];
    }
    translationLength += c.hypLen;
    referenceLength += c.refLen;
  }
  const precisions = matches.map((m, k) => (possible[k] > 0 ? m / possible[k] : 0));
  let geoMean = 0;
  if (Math.min(...precisions) > 0) {
    // Python's sum() adds the terms left to right from 0.
    let pLogSum = 0;
    for (const p of precisions) pLogSum += (1 / maxOrder) * Math.log(p);
    geoMean = Math.exp(pLogSum);
  }
  // nmt divides by zero here (Python raises); an empty reference side gives ratio ∞ → BP 1,
  // an empty hypothesis side BP 0.
  const ratio = referenceLength > 0 ? translationLength / referenceLength : translationLength > 0 ? Infinity : 0;
  const brevityPenalty = ratio > 1 ? 1 : ratio === 0 ? 0 : Math.exp(1 - 1 / ratio);
  return { score: geoMean * brevityPenalty, precisions, brevityPenalty, lengthRatio: ratio, translationLength, referenceLength };
}

/** jury's `bleu` with `max_order = maxOrder` on raw strings (jury tokenisation). */
export function juryBleu(predictions: readonly string[], references: readonly string[], maxOrder = 4): BleuResult {
  return computeBleu(references.map(juryTokenize), predictions.map(juryTokenize), maxOrder);
}
