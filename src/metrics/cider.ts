// CIDEr-D as pycocoevalcap's `Cider().compute_score` computes it (coco-caption CiderScorer:
// n = 4, σ = 6, clipped tf-idf cosine, Gaussian length penalty, ×10), on whitespace-split
// strings as given (no PTBTokenizer, see ../shared/golden/metrics/README.md). Document
// frequencies come from the references of the whole set, so score all pairs at once.
import { pySplit } from './bleu.ts';
import { npMean } from './numpy.ts';

/** n-gram counts of orders 1..n in Python dict insertion order (order 1 first, by position). */
function precook(s: string, n: number): Map<string, number>[] {
  const words = pySplit(s);
  const out: Map<string, number>[] = [];
  for (let k = 1; k <= n; k++) {
    const m = new Map<string, number>();
    for (let i = 0; i + k <= words.length; i++) {
      const g = JSON.stringify(words.slice(i, i + k));
      m.set(g, (m.get(g) ?? 0) + 1);
    }
    out.push(m);
  }
  return out;
}

export interface CiderResult {
  /** Mean over pairs (`compute_score`'s first value). */
  score: number;
  /** Per-pair CIDEr-D. */
  scores: number[];
}

/** pycocoevalcap CIDEr-D with one reference per prediction. */
export function ciderD(predictions: readonly string[], references: readonly string[], n = 4, sigma = 6): CiderResult {
  if (predictions.length !== references.length) throw new Error(`ciderD: ${predictions.length} predictions vs ${references.length} references`);
  const tests = predictions.map((p) => precook(p, n));
  const refs = references.map((r) => precook(r, n));
  const df = new Map<string, number>();
  for (const r of refs) for (const m of r) for (const g of m.keys()) df.set(g, (df.get(g) ?? 0) + 1);
  const refLen = Math.log(refs.length);

  // counts2vec: tf·(log N − log max(1, df)) per order, the norms, and the bigram count.
  const toVec = (cnts: Map<string, number>[]) => {
    const vec: Map<string, number>[] = [];
    const norm: number[] = [];
    let length = 0;
    for (let k = 0; k < n; k++) {
      const v = new Map<string, number>();
      let sq = 0;
      for (const [g, tf] of cnts[k]) {
        const w = tf * (refLen - Math.log(Math.max(1, df.get(g) ?? 0)));
        v.set(g, w);
        sq += w ** 2;
        if (k === 1) length += tf;
      }
      vec.push(v);
      norm.push(Math.sqrt(sq));
    }
    return { vec, norm, length };
  };

  const scores = tests.map((t, p) => {
    const h = toVec(t), r = toVec(refs[p]);
    const delta = h.length - r.length;
    const val = new Float64Array(n);
    for (let k = 0; k < n; k++) {
      for (const [g, hv] of h.vec[k]) {
        const rv = r.vec[k].get(g) ?? 0;
        val[k] += Math.min(hv, rv) * rv;
      }
      if (h.norm[k] !== 0 && r.norm[k] !== 0) val[k] /= h.norm[k] * r.norm[k];
      val[k] *= Math.E ** (-(delta ** 2) / (2 * sigma ** 2));
    }
    // np.mean of the 4 orders, divided by the number of references (1), ×10.
    return (npMean(val) / 1) * 10;
  });
  return { score: npMean(scores), scores };
}
