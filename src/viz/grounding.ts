// Grounding on the built-in phantom dataset: does the model look at a lesion while it writes
// the sentence that reports it? For each true finding that the generated report mentions at the
// right location, the share of cross-attention mass (averaged over layers and heads and over the
// words of that sentence) inside the finding's pixel box, against the uniform share (box area /
// image area). share > uniform means attention concentrates on the lesion.
import { parseFindings, type Location } from '../data/findings.ts';
import { type AttentionTrace, attentionDensity, crossRow, GRID, massInBox, type UpsampleMode } from './heatmap.ts';

export type Box = readonly [x0: number, y0: number, x1: number, y1: number];

export interface GroundingFinding {
  location: Location;
  /** Pixel box [x0, x1) × [y0, y1) in the model input image. */
  box: Box;
}

export interface GroundingResult {
  /** Mean over the matched findings of the attention share inside the box (NaN when n = 0). */
  share: number;
  /** Mean over the same findings of box area / image area. */
  uniform: number;
  /** Findings matched (true findings mentioned at their location). */
  n: number;
  perFinding: { location: Location; sentence: string; words: number[]; share: number; uniform: number }[];
}

export interface Sentence {
  /** Indices of its words in the generated tokens (the closing "." excluded). */
  words: number[];
  text: string;
}

/** Splits generated words into sentences at "." tokens; stops at <eos>; specials are skipped. */
export function sentences(words: readonly string[]): Sentence[] {
  const out: Sentence[] = [];
  let cur: number[] = [];
  const flush = () => {
    if (cur.length) out.push({ words: cur, text: cur.map((i) => words[i]).join(' ') });
    cur = [];
  };
  for (let i = 0; i < words.length; i++) {
    const w = words[i];
    if (w === '<eos>') break;
    if (w === '.') flush();
    else if (w !== '<pad>' && w !== '<sos>') cur.push(i);
  }
  flush();
  return out;
}

/**
 * Grounding score of one generated report.
 * `maps`: an AttentionTrace (its cross-attention averaged over layers and heads per step), or one
 * map per generated token: either grid² attention weights (upsampled here with `mode`) or an
 * imageSize² density already at pixel resolution.
 * `tokens`: generated ids (one per map); `vocab`: id → word (a Tokenizer's `tokens`).
 */
export function groundingScore(
  maps: AttentionTrace | readonly ArrayLike<number>[],
  tokens: readonly number[],
  vocab: readonly string[],
  truth: readonly GroundingFinding[],
  imageSize: number,
  opts: { mode?: UpsampleMode; grid?: number } = {},
): GroundingResult {
  const grid = opts.grid ?? (isTrace(maps) ? maps.grid : GRID);
  const nMaps = isTrace(maps) ? maps.cross.length : maps.length;
  if (nMaps < tokens.length) throw new Error(`groundingScore: ${nMaps} attention maps for ${tokens.length} generated tokens`);
  const words = wordsOf(tokens, vocab);
  const density = new Map<number, Float64Array>();
  const densityOf = (i: number): Float64Array => {
    let d = density.get(i);
    if (d) return d;
    const m = isTrace(maps) ? crossRow(maps, i) : maps[i];
    if (m.length === grid * grid) d = attentionDensity(m, imageSize, imageSize, opts.mode ?? 'bilinear', grid);
    else if (m.length === imageSize * imageSize) d = Float64Array.from(m);
    else throw new Error(`groundingScore: map ${i} has ${m.length} values; expected ${grid}² = ${grid * grid} or ${imageSize}² = ${imageSize * imageSize}`);
    density.set(i, d);
    return d;
  };
  const perFinding: GroundingResult['perFinding'] = [];
  for (const { finding: f, sentence: s } of matchFindings(words, truth)) {
    const [x0, y0, x1, y1] = f.box;
    let share = 0;
    for (const i of s.words) {
      const d = densityOf(i);
      let total = 0;
      for (let p = 0; p < d.length; p++) total += d[p];
      share += total > 0 ? massInBox(d, imageSize, imageSize, f.box) / total : 0;
    }
    share /= s.words.length;
    const area = (Math.min(x1, imageSize) - Math.max(x0, 0)) * (Math.min(y1, imageSize) - Math.max(y0, 0));
    perFinding.push({ location: f.location, sentence: s.text, words: s.words, share, uniform: area / (imageSize * imageSize) });
  }
  const n = perFinding.length;
  return {
    share: n ? perFinding.reduce((a, p) => a + p.share, 0) / n : NaN,
    uniform: n ? perFinding.reduce((a, p) => a + p.uniform, 0) / n : NaN,
    n,
    perFinding,
  };
}

/**
 * Pairs each true finding with the first unused generated sentence that reports a finding at its
 * location (findings the report misses are left out). `words`: the generated words.
 */
export function matchFindings<F extends GroundingFinding>(words: readonly string[], truth: readonly F[]): { finding: F; sentence: Sentence }[] {
  const sents = sentences(words).map((s) => ({ ...s, location: parseFindings(s.text).findings[0]?.location }));
  const used = new Set<number>();
  const out: { finding: F; sentence: Sentence }[] = [];
  for (const f of truth) {
    const [x0, y0, x1, y1] = f.box;
    if (!(x0 < x1 && y0 < y1)) throw new Error(`groundingScore: empty box [${f.box}] for the finding at ${f.location}`);
    const k = sents.findIndex((s, j) => !used.has(j) && s.location === f.location);
    if (k < 0) continue;
    used.add(k);
    out.push({ finding: f, sentence: { words: sents[k].words, text: sents[k].text } });
  }
  return out;
}

/**
 * Pointing game: 1 when the map's maximum lies inside the box [x0,x1)×[y0,y1) (pixels whose
 * centre is inside); with tied maxima, the share of them inside (the expected hit when a tie is
 * broken at random, so a uniform map scores the box's area share).
 */
export function pointingHit(map: ArrayLike<number>, width: number, height: number, box: Box): number {
  if (map.length !== width * height) throw new Error(`pointingHit: ${map.length} values for ${width}×${height}`);
  let best = -Infinity, n = 0, inside = 0;
  const [x0, y0, x1, y1] = box;
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const v = map[y * width + x];
      if (v < best) continue;
      if (v > best) {
        best = v;
        n = 0;
        inside = 0;
      }
      n++;
      if (x + 0.5 >= x0 && x + 0.5 < x1 && y + 0.5 >= y0 && y + 0.5 < y1) inside++;
    }
  return n ? inside / n : 0;
}

/** Share of a non-negative map's total inside the box (0 for an all-zero map). */
export function massShare(map: ArrayLike<number>, width: number, height: number, box: Box): number {
  let total = 0;
  for (let i = 0; i < map.length; i++) total += map[i];
  return total > 0 ? massInBox(map, width, height, box) / total : 0;
}

/** Indices of the ⌈frac·n⌉ largest values (ties: lower index first). */
export function topFraction(map: ArrayLike<number>, frac: number): number[] {
  const n = map.length, k = Math.ceil(frac * n);
  const idx = Array.from({ length: n }, (_, i) => i);
  idx.sort((a, b) => map[b] - map[a] || a - b);
  return idx.slice(0, k);
}

export interface GroundingSummary {
  /** Mean share over all matched findings of all reports. */
  share: number;
  uniform: number;
  /** share / uniform: how many times more attention the lesion gets than a uniform map gives it. */
  ratio: number;
  n: number;
  reports: number;
}

/** Pools per-report scores over a data set (each matched finding weighs the same). */
export function aggregateGrounding(results: readonly Pick<GroundingResult, 'share' | 'uniform' | 'n'>[]): GroundingSummary {
  let n = 0, share = 0, uniform = 0;
  for (const r of results) {
    if (!r.n) continue;
    n += r.n;
    share += r.share * r.n;
    uniform += r.uniform * r.n;
  }
  return { share: n ? share / n : NaN, uniform: n ? uniform / n : NaN, ratio: n ? share / uniform : NaN, n, reports: results.length };
}

/** Generated ids → words; an id outside the vocabulary is an error naming its position. */
export function wordsOf(tokens: readonly number[], vocab: readonly string[]): string[] {
  return tokens.map((id, i) => {
    const w = vocab[id];
    if (w === undefined) throw new Error(`token id ${id} at position ${i} is outside the vocabulary (${vocab.length})`);
    return w;
  });
}

function isTrace(m: unknown): m is AttentionTrace {
  return typeof m === 'object' && m !== null && 'cross' in m && 'tokens' in m;
}
