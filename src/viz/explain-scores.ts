// How well each explanation method points at the finding, on the built-in phantom data where
// every finding's box is known. For each true finding the generated report mentions at its
// location, the method's per-word maps (normalised to sum 1 at pixel resolution) are averaged over
// the words of that sentence, and scored:
//   mass_in_box    share of the map inside the box;
//   pointing       the map's maximum falls inside the box (ties shared; see pointingHit);
//   deletion_drop  the sentence's mean word probability (teacher-forced on the generated report)
//                  minus the same with the 10% most-attributed pixels set to the mean colour
//                  (0 after normalisation); random_drop: the same for a random 10% of the pixels.
// Controls scored the same way: `uniform` (constant map; its deletion masks the random 10%),
// `random` (i.i.d. uniform pixel values), `centre` (a Gaussian blob at the image centre,
// σ = S/16: "always point at the middle"). Sanity check (Adebayo et al. 2018): each method again
// on the model with every weight re-initialised (Weights.init, other seed), explaining the same
// words; a method that scores as well there shows the image, not the model.
// Sentence-specific maps (`specific`, default ['difference']): every method is also scored as
// `<method>/specific` (difference: what the sentence's map has beyond the mean map of the report's
// other finding sentences) and/or `<method>/specific-share` (share: each pixel weighted by the
// share the sentence holds there); see sentenceSpecific. Where an image has two lesions, a finding
// sentence's words ("a", "lesion", "in the") draw evidence from both; the plain map's maximum then
// often lies in the other lesion (measured on the main job's model, test split,
// SmoothGrad-Squared: 23 of its 26 pointing misses). A report with one finding sentence is scored
// the same either way.
// Optional breakdown by word kind (byWordKind; analysis only, the sentence average stays the
// score): the same mass_in_box and pointing of each method's mean map over the sentence's words of
// one kind — appearance (size, shape, intensity, "lesion"), location (row, column, "region"),
// function ("a", "in", "the"), other (anything else the model wrote) — and per single word.
import { dispose, fromData } from '../graph/runtime.ts';
import { Weights } from '../model/weights.ts';
import { mulberry32 } from '../graph/ops/random.ts';
import { generate } from '../generate/decode.ts';
import { preprocess } from '../data/preprocess.ts';
import type { PhantomSample } from '../data/phantom.ts';
import { COLS, INTENSITIES, parseFindings, ROWS, SHAPES, SIZES } from '../data/findings.ts';
import { attentionDensity, GRID, upsample } from './heatmap.ts';
import { type Box, massShare, matchFindings, pointingHit, sentences, topFraction, wordsOf } from './grounding.ts';
import { EXPLAIN_METHODS, type ExplainMap, type ExplainMethod, type ExplainOptions, explainSteps, teacherForcedValues } from './explain.ts';

export const EXPLAIN_CONTROLS = ['uniform', 'random', 'centre'] as const;
/** Methods scored unless asked otherwise: integrated gradients costs ~m+1 saliency passes and occlusion one forward row per window (~500 at 48 px), both ×2 with the sanity model: too slow for the main job's budget. */
export const SCORED_BY_DEFAULT: readonly ExplainMethod[] = EXPLAIN_METHODS.filter((m) => m !== 'integrated-gradients' && m !== 'occlusion');
export type ExplainControl = (typeof EXPLAIN_CONTROLS)[number];

export interface ExplainScoreRow {
  mass_in_box: number;
  pointing: number;
  deletion_drop: number;
  random_drop: number;
  /** Methods only: the same scores on the re-initialised model. */
  sanity_mass_in_box?: number;
  sanity_pointing?: number;
}

/** Word kinds of the phantom finding sentence "a <size> <shape> <intensity> lesion in the <row> <col> region". */
export const WORD_KINDS = ['appearance', 'location', 'function', 'other'] as const;
export type WordKind = (typeof WORD_KINDS)[number];
const KIND_OF_WORD = new Map<string, WordKind>([
  ...[...SIZES, ...SHAPES, ...INTENSITIES, 'lesion'].map((w) => [w, 'appearance'] as [string, WordKind]),
  ...[...ROWS, ...COLS, 'region'].map((w) => [w, 'location'] as [string, WordKind]),
  ...['a', 'in', 'the'].map((w) => [w, 'function'] as [string, WordKind]),
]);
export function wordKind(word: string): WordKind {
  return KIND_OF_WORD.get(word) ?? 'other';
}

export interface KindScore {
  /** Mean over the findings whose sentence has words of this kind (NaN when none has). */
  mass_in_box: number;
  pointing: number;
  /** Words of this kind scored, summed over findings. */
  words: number;
  /** Findings whose sentence has at least one word of this kind. */
  findings: number;
}

/**
 * One finding's breakdown: per kind, the mean of the densities of the sentence's words of that kind
 * (positions `sentence` into `words`, `density(position)` a map summing to 1), scored against `box`.
 * Kinds without words are absent.
 */
export function kindScores(words: readonly string[], sentence: readonly number[], density: (position: number) => Float64Array, box: Box, S: number): Partial<Record<WordKind, { mass_in_box: number; pointing: number; words: number }>> {
  const out: Partial<Record<WordKind, { mass_in_box: number; pointing: number; words: number }>> = {};
  for (const kind of WORD_KINDS) {
    const mine = sentence.filter((st) => wordKind(words[st]) === kind);
    if (!mine.length) continue;
    const d = meanOf(mine.map(density));
    out[kind] = { mass_in_box: massShare(d, S, S, box), pointing: pointingHit(d, S, S, box), words: mine.length };
  }
  return out;
}

export interface ExplainEvaluation {
  /** Method or control → mean scores over the matched findings. */
  scores: Record<string, ExplainScoreRow>;
  /** With byWordKind: method → kind → scores of the kind's mean map (controls do not depend on the word, so are left out). */
  byKind?: Record<string, Record<WordKind, KindScore>>;
  /** With byWordKind: method → word → scores of that word's own map (over the findings whose sentence has it; a word twice in a sentence is scored once, as their mean). */
  byWord?: Record<string, Record<string, KindScore>>;
  findings: number;
  images: number;
  seconds: number;
}

export interface ExplainEvalOptions {
  /** Default SCORED_BY_DEFAULT. */
  methods?: readonly ExplainMethod[];
  /** Images scored (the first ones; default all). */
  limit?: number;
  /** Run the re-initialised-model sanity check (default true). */
  sanity?: boolean;
  /** Seed of the random maps and masks and of the re-initialised weights. */
  seed?: number;
  /** Fraction of pixels deleted (default 0.1). */
  deleteFraction?: number;
  /** SmoothGrad for saliency (see ExplainOptions). */
  smoothGrad?: ExplainOptions['smoothGrad'];
  /** Everything else the methods take (target, integrated gradients, …; see ExplainOptions). */
  explain?: ExplainOptions;
  /** Stop starting new images after this time (Date.now() ms); at least `minImages` are scored. */
  deadline?: number;
  minImages?: number;
  /** Also score each method per word kind and per word (byKind, byWord); default false. */
  byWordKind?: boolean;
  /** Also score each method's sentence-specific maps: 'difference' as `<method>/specific`, 'share' as `<method>/specific-share` (default ['difference']; [] for none). */
  specific?: readonly SpecificKind[];
}

export type SpecificKind = 'difference' | 'share';
export const SPECIFIC_KINDS: readonly SpecificKind[] = ['difference', 'share'];
/** The score row of a method's sentence-specific map. */
export function specificName(method: string, kind: SpecificKind): string {
  return kind === 'difference' ? `${method}/specific` : `${method}/specific-share`;
}

/**
 * A finding sentence's map made specific to it, against o, the mean of the report's other finding
 * sentences' maps (`others`; all densities over the same pixels), normalised to sum 1:
 *   'difference'  max(0, d − o): the attribution this sentence has beyond the others' (a
 *                 class-contrastive map, "why this sentence rather than the others");
 *   'share'       d·d/(d + o): each pixel kept in proportion to the share this sentence holds
 *                 there (evidence the others draw on as strongly is halved; 0 where d + o = 0).
 * No other sentences, or nothing left (d ≤ o everywhere): d itself.
 */
export function sentenceSpecific(d: Float64Array, others: readonly Float64Array[], kind: SpecificKind = 'difference'): Float64Array {
  if (!others.length) return d;
  for (const o of others) if (o.length !== d.length) throw new Error(`sentenceSpecific: a map of ${o.length} values against ${d.length}`);
  const out = new Float64Array(d.length);
  let tot = 0;
  for (let i = 0; i < d.length; i++) {
    let o = 0;
    for (const m of others) o += m[i];
    o /= others.length;
    const v = kind === 'difference' ? Math.max(0, d[i] - o) : d[i] + o > 0 ? (d[i] * d[i]) / (d[i] + o) : 0;
    tot += (out[i] = v);
  }
  if (!(tot > 0)) return d;
  for (let i = 0; i < out.length; i++) out[i] /= tot;
  return out;
}

/** A map as a density over S×S pixels (sum 1; all zero when the map is). */
export function pixelDensity(m: Pick<ExplainMap, 'grid' | 'fine'>, S: number): Float64Array {
  let d: Float64Array;
  if (m.fine && m.fine.height === S && m.fine.width === S) d = Float64Array.from(m.fine.values);
  else if (m.fine) d = upsample(m.fine.values, m.fine.height, m.fine.width, S, S, 'bilinear');
  else d = attentionDensity(m.grid, S, S, 'bilinear', GRID);
  let tot = 0;
  for (let i = 0; i < d.length; i++) tot += (d[i] = Math.max(0, d[i]));
  if (tot > 0) for (let i = 0; i < d.length; i++) d[i] /= tot;
  return d;
}

/** Control maps over S×S pixels. */
export function controlMap(kind: ExplainControl, S: number, rnd: () => number): Float64Array {
  const d = new Float64Array(S * S);
  if (kind === 'uniform') d.fill(1 / (S * S));
  else if (kind === 'random') for (let i = 0; i < d.length; i++) d[i] = rnd();
  else {
    const c = (S - 1) / 2, sig = S / 16;
    for (let y = 0; y < S; y++) for (let x = 0; x < S; x++) d[y * S + x] = Math.exp(-((x - c) ** 2 + (y - c) ** 2) / (2 * sig * sig));
  }
  return d;
}

/** The report's finding sentences: those that state a location, as matchFindings reads them. */
export function findingSentences(words: readonly string[]): { words: number[]; text: string }[] {
  return sentences(words).filter((x) => parseFindings(x.text).findings[0]?.location !== undefined);
}

/**
 * What a reader of one explanation wants per finding: for each finding sentence of the report and
 * each method, the sentence's map (the mean of its words' pixel densities, S×S, sum 1) and that map
 * made specific to it against the report's other finding sentences (sentenceSpecific, `kind`;
 * the sentence's own map when it is the only one) — the maps the `<method>/specific` scores rank.
 * `maps`: per method, one map per step (a step without a map leaves its sentence out).
 */
export function findingSentenceMaps(words: readonly string[], maps: ReadonlyMap<string, readonly (ExplainMap | undefined)[]>, S: number, kind: SpecificKind = 'difference'): { sentence: number; text: string; words: number[]; method: string; mean: Float64Array; specific: Float64Array }[] {
  const found = findingSentences(words);
  const out: ReturnType<typeof findingSentenceMaps> = [];
  for (const [method, list] of maps) {
    const have = found.map((x) => x.words.every((t) => list[t] !== undefined));
    const means = found.map((x, k) => (have[k] ? meanOf(x.words.map((t) => pixelDensity(list[t]!, S))) : undefined));
    found.forEach((x, k) => {
      if (!means[k]) return;
      const others = means.filter((m, j): m is Float64Array => j !== k && m !== undefined);
      out.push({ sentence: k, text: x.text, words: x.words, method, mean: means[k]!, specific: sentenceSpecific(means[k]!, others, kind) });
    });
  }
  return out;
}

function meanOf(maps: Float64Array[]): Float64Array {
  const out = new Float64Array(maps[0].length);
  for (const m of maps) for (let i = 0; i < out.length; i++) out[i] += m[i] / maps.length;
  return out;
}

/**
 * Mean word probabilities of several pixel sets for one sequence: row r of `images` is an image
 * (3·S·S); returns probs[r][s] for every position s < T (probability of tokens[s]): the
 * teacher-forced log-probabilities explain.ts computes for occlusion, exponentiated.
 */
async function wordProbabilities(w: Weights, images: Float32Array[], tokens: readonly number[], T: number, chunk = 16): Promise<Float64Array[]> {
  return (await teacherForcedValues(w, tokens, T, images, 'logprob', chunk)).map((r) => r.map(Math.exp));
}

function disposeWeights(w: Weights): void {
  dispose(...w.tensors.values(), ...[...w.chunked.values()].flat());
}

/**
 * Scores every method and control on the phantom samples. `tokens[i]`: the report generated for
 * samples[i] (greedy, as evaluation does); generated here where absent.
 */
export async function evaluateExplanations(w: Weights, vocab: readonly string[], samples: readonly PhantomSample[], tokens?: readonly number[][], opts: ExplainEvalOptions = {}): Promise<ExplainEvaluation> {
  const t0 = performance.now();
  const cfg = w.cfg, S = cfg.image_size;
  const methods = opts.methods ?? SCORED_BY_DEFAULT;
  const frac = opts.deleteFraction ?? 0.1;
  const seed = opts.seed ?? 1234;
  const rnd = mulberry32(seed);
  const n = Math.min(samples.length, opts.limit ?? samples.length);
  const specific = opts.specific ?? ['difference'];
  for (const k of specific) if (!SPECIFIC_KINDS.includes(k)) throw new Error(`evaluateExplanations: specific "${k}" is not one of ${SPECIFIC_KINDS.join(', ')}`);
  const explained = new Set<string>([...methods, ...specific.flatMap((k) => methods.map((m) => specificName(m, k)))]);
  const names = [...explained, ...EXPLAIN_CONTROLS];
  const acc = new Map<string, { mass: number; point: number; del: number; rand: number; sMass: number; sPoint: number }>(
    names.map((m) => [m, { mass: 0, point: 0, del: 0, rand: 0, sMass: 0, sPoint: 0 }]),
  );
  type KindAcc = { mass: number; point: number; words: number; findings: number };
  const kindAcc = new Map<string, Map<string, KindAcc>>(methods.map((m) => [m, new Map()]));
  const wordAcc = new Map<string, Map<string, KindAcc>>(methods.map((m) => [m, new Map()]));
  const addTo = (to: Map<string, KindAcc>, key: string, r: { mass_in_box: number; pointing: number; words: number }) => {
    const a = to.get(key) ?? { mass: 0, point: 0, words: 0, findings: 0 };
    a.mass += r.mass_in_box;
    a.point += r.pointing;
    a.words += r.words;
    a.findings++;
    to.set(key, a);
  };
  const sanityW = opts.sanity === false ? null : Weights.init(cfg, (seed * 7919 + 17) >>> 0);
  let findings = 0, scored = n;
  try {
    for (let i = 0; i < n; i++) {
      if (opts.deadline !== undefined && Date.now() > opts.deadline && i >= (opts.minImages ?? 4)) {
        scored = i;
        break;
      }
      const s = samples[i];
      if (s.image.width !== S || s.image.height !== S) throw new Error(`evaluateExplanations: sample ${s.id} is ${s.image.width}×${s.image.height}; boxes are in model-input pixels, so it must be ${S}×${S}`);
      const pixels = preprocess(s.image, { resize: S, crop: S });
      let toks = tokens?.[i];
      if (!toks) {
        const image = fromData(pixels, [1, 3, S, S], 'f32', 'image');
        try {
          toks = (await generate(w, image)).tokens[0];
        } finally {
          dispose(image);
        }
      }
      const words = wordsOf(toks, vocab);
      const matched = matchFindings(words, s.findings).filter((m) => m.sentence.words.every((t) => t < cfg.text_seq_len));
      if (!matched.length) continue;
      // The report's finding sentences (a location stated, as matchFindings reads them): their
      // maps are what sentence-specific maps are weighed against.
      const found = specific.length ? findingSentences(words).filter((x) => x.words.every((t) => t < cfg.text_seq_len)) : [];
      const steps = [...new Set([...matched.flatMap((m) => m.sentence.words), ...found.flatMap((x) => x.words)])].sort((a, b) => a - b);
      const at = new Map(steps.map((st, j) => [st, j]));
      const xo: ExplainOptions = { ...opts.explain, smoothGrad: opts.smoothGrad ?? opts.explain?.smoothGrad };
      const maps = await explainSteps(w, pixels, toks, steps, methods, xo);
      const sanity = sanityW ? await explainSteps(sanityW, pixels, toks, steps, methods, xo) : null;
      const T = steps[steps.length - 1] + 1;
      // Deletion images: row 0 the original, then per finding: each name's top mask, the random mask.
      const images: Float32Array[] = [pixels];
      const masked = (idx: number[]) => {
        const img = Float32Array.from(pixels);
        for (const p of idx) for (let c = 0; c < 3; c++) img[c * S * S + p] = 0;
        return img;
      };
      // A sentence's mean map, once per image and list (each finding sentence is another's
      // "other"); the maps are read only from here on.
      const sentenceMaps = new Map<ExplainMap[], Map<string, Float64Array>>();
      const mapOf = (list: ExplainMap[], words: number[]) => {
        const memo = sentenceMaps.get(list) ?? sentenceMaps.set(list, new Map()).get(list)!;
        const k = words.join(',');
        let d = memo.get(k);
        if (!d) memo.set(k, d = meanOf(words.map((st) => pixelDensity(list[at.get(st)!], S))));
        return d;
      };
      const perFinding = matched.map((m) => {
        const box: Box = m.finding.box;
        const sentenceMap = (list: ExplainMap[]) => mapOf(list, m.sentence.words);
        const key = m.sentence.words.join(',');
        const otherSentences = found.filter((x) => x.words.join(',') !== key);
        const specificMaps = (list: ExplainMap[], d: Float64Array, into: Map<string, Float64Array>, meth: ExplainMethod) => {
          const others = otherSentences.map((x) => mapOf(list, x.words));
          for (const k of specific) into.set(specificName(meth, k), sentenceSpecific(d, others, k));
        };
        const dens = new Map<string, Float64Array>();
        for (const meth of methods) dens.set(meth, sentenceMap(maps.get(meth)!));
        for (const meth of methods) specificMaps(maps.get(meth)!, dens.get(meth)!, dens, meth);
        for (const c of EXPLAIN_CONTROLS) dens.set(c, controlMap(c, S, rnd));
        const randomIdx = topFraction(controlMap('random', S, rnd), frac);
        const rows = new Map<string, number>();
        for (const name of names) {
          rows.set(name, images.length);
          images.push(masked(name === 'uniform' ? randomIdx : topFraction(dens.get(name)!, frac)));
        }
        const randomRow = images.length;
        images.push(masked(randomIdx));
        const sanityDens = new Map<string, Float64Array>();
        if (sanity) {
          for (const meth of methods) sanityDens.set(meth, sentenceMap(sanity.get(meth)!));
          for (const meth of methods) specificMaps(sanity.get(meth)!, sanityDens.get(meth)!, sanityDens, meth);
        }
        if (opts.byWordKind) {
          for (const meth of methods) {
            const density = (st: number) => pixelDensity(maps.get(meth)![at.get(st)!], S);
            for (const [kind, r] of Object.entries(kindScores(words, m.sentence.words, density, box, S))) addTo(kindAcc.get(meth)!, kind, r);
            for (const word of new Set(m.sentence.words.map((st) => words[st]))) {
              const mine = m.sentence.words.filter((st) => words[st] === word), d = meanOf(mine.map(density));
              addTo(wordAcc.get(meth)!, word, { mass_in_box: massShare(d, S, S, box), pointing: pointingHit(d, S, S, box), words: mine.length });
            }
          }
        }
        return { m, box, dens, rows, randomRow, sanityDens };
      });
      const probs = await wordProbabilities(w, images, toks, T);
      const meanProb = (row: number, words: number[]) => words.reduce((a, st) => a + probs[row][st], 0) / words.length;
      for (const f of perFinding) {
        findings++;
        const p0 = meanProb(0, f.m.sentence.words), pr = meanProb(f.randomRow, f.m.sentence.words);
        for (const name of names) {
          const a = acc.get(name)!, d = f.dens.get(name)!;
          a.mass += massShare(d, S, S, f.box);
          a.point += pointingHit(d, S, S, f.box);
          a.del += p0 - meanProb(f.rows.get(name)!, f.m.sentence.words);
          a.rand += p0 - pr;
          const sd = f.sanityDens.get(name);
          if (sd) {
            a.sMass += massShare(sd, S, S, f.box);
            a.sPoint += pointingHit(sd, S, S, f.box);
          }
        }
      }
    }
  } finally {
    if (sanityW) disposeWeights(sanityW);
  }
  const scores: Record<string, ExplainScoreRow> = {};
  const k = findings || NaN;
  for (const name of names) {
    const a = acc.get(name)!;
    const row: ExplainScoreRow = { mass_in_box: a.mass / k, pointing: a.point / k, deletion_drop: a.del / k, random_drop: a.rand / k };
    if (sanityW && explained.has(name)) {
      row.sanity_mass_in_box = a.sMass / k;
      row.sanity_pointing = a.sPoint / k;
    }
    scores[name] = row;
  }
  const ev: ExplainEvaluation = { scores, findings, images: scored, seconds: (performance.now() - t0) / 1000 };
  if (opts.byWordKind) {
    const score = (a: KindAcc | undefined): KindScore =>
      a ? { mass_in_box: a.mass / a.findings, pointing: a.point / a.findings, words: a.words, findings: a.findings } : { mass_in_box: NaN, pointing: NaN, words: 0, findings: 0 };
    ev.byKind = Object.fromEntries(methods.map((m) => [m, Object.fromEntries(WORD_KINDS.map((k) => [k, score(kindAcc.get(m)!.get(k))])) as Record<WordKind, KindScore>]));
    ev.byWord = Object.fromEntries(methods.map((m) => [m, Object.fromEntries([...wordAcc.get(m)!].map(([word, a]) => [word, score(a)]))]));
  }
  return ev;
}

/** The table `micar eval` prints. */
export function explainTable(ev: ExplainEvaluation): string {
  const cols = ['mass_in_box', 'pointing', 'deletion_drop', 'random_drop', 'sanity_mass_in_box', 'sanity_pointing'] as const;
  const head = `${'explanation'.padEnd(26)}${cols.map((c) => c.padStart(19)).join('')}`;
  const fmt = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '—' : v.toFixed(4)).padStart(19);
  const lines = Object.entries(ev.scores).map(([name, r]) => `${name.padEnd(26)}${cols.map((c) => fmt(r[c])).join('')}`);
  return [head, ...lines, `(${ev.findings} findings in ${ev.images} test images; ${ev.seconds.toFixed(1)} s)`].join('\n');
}
