// Plain, independent re-statements of the caption-metric formulas (README of
// ../shared/golden/metrics) for randomised checks of src/metrics: brute-force n-gram lists
// instead of maps, a memoised recursive LCS, exact (sorted, compensated) sums.

function ngrams(t: readonly string[], k: number): string[] {
  const out: string[] = [];
  for (let i = 0; i + k <= t.length; i++) out.push(t.slice(i, i + k).join(' '));
  return out;
}

function countOf(list: string[], g: string): number {
  return list.filter((x) => x === g).length;
}

/** Corpus BLEU-n with nmt `compute_bleu` semantics, one reference each. */
export function bleuRef(refs: string[][], hyps: string[][], n: number): number {
  const p: number[] = [];
  for (let k = 1; k <= n; k++) {
    let m = 0, poss = 0;
    hyps.forEach((h, i) => {
      const hg = ngrams(h, k), rg = ngrams(refs[i], k);
      for (const g of new Set(hg)) m += Math.min(countOf(hg, g), countOf(rg, g));
      poss += Math.max(h.length - k + 1, 0);
    });
    p.push(poss > 0 ? m / poss : 0);
  }
  const geo = p.every((x) => x > 0) ? Math.exp(p.reduce((s, x) => s + Math.log(x) / n, 0)) : 0;
  const hl = hyps.reduce((s, h) => s + h.length, 0), rl = refs.reduce((s, r) => s + r.length, 0);
  const ratio = hl / rl;
  return geo * (ratio > 1 ? 1 : Math.exp(1 - 1 / ratio));
}

/** LCS length by memoised recursion. */
export function lcsRef(a: readonly string[], b: readonly string[]): number {
  const memo = new Map<number, number>();
  const f = (i: number, j: number): number => {
    if (i === a.length || j === b.length) return 0;
    const key = i * (b.length + 1) + j;
    let v = memo.get(key);
    if (v === undefined) {
      v = a[i] === b[j] ? 1 + f(i + 1, j + 1) : Math.max(f(i + 1, j), f(i, j + 1));
      memo.set(key, v);
    }
    return v;
  };
  return f(0, 0);
}

/** Per-pair CIDEr-D (n = 4, σ = 6) on whitespace tokens, df over all references. */
export function ciderRef(preds: string[], refs: string[]): number[] {
  const tok = (s: string) => s.split(/\s+/).filter(Boolean);
  const P = preds.map(tok), R = refs.map(tok);
  const N = R.length;
  const df = (g: string, k: number) => R.filter((r) => ngrams(r, k).includes(g)).length;
  const vec = (t: string[], k: number) => {
    const gs = [...new Set(ngrams(t, k))];
    return new Map(gs.map((g) => [g, countOf(ngrams(t, k), g) * (Math.log(N) - Math.log(Math.max(1, df(g, k))))]));
  };
  return P.map((h, i) => {
    const r = R[i];
    const delta = ngrams(h, 2).length - ngrams(r, 2).length;
    let total = 0;
    for (let k = 1; k <= 4; k++) {
      const vh = vec(h, k), vr = vec(r, k);
      let dot = 0, nh = 0, nr = 0;
      for (const [g, w] of vh) {
        dot += Math.min(w, vr.get(g) ?? 0) * (vr.get(g) ?? 0);
        nh += w * w;
      }
      for (const w of vr.values()) nr += w * w;
      let v = nh !== 0 && nr !== 0 ? dot / (Math.sqrt(nh) * Math.sqrt(nr)) : dot;
      v *= Math.exp(-(delta * delta) / (2 * 36));
      total += v;
    }
    return (total / 4) * 10;
  });
}

/** Sum with Neumaier compensation (reference for numpy's pairwise sum). */
export function sumRef(a: ArrayLike<number>): number {
  let s = 0, c = 0;
  for (let i = 0; i < a.length; i++) {
    const t = s + a[i];
    c += Math.abs(s) >= Math.abs(a[i]) ? s - t + a[i] : a[i] - t + s;
    s = t;
  }
  return s + c;
}
