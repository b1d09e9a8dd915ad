// Explanation scores: pointing, mass and deletion helpers on hand-built maps with known answers,
// the control maps, and the whole evaluation on a tiny random model reading true phantom
// reports (controls whose scores are known in closed form: uniform and centre).
import { beforeAll, describe, expect, it } from 'vitest';
import { init } from '../src/graph/runtime.ts';
import { normaliseConfig } from '../src/model/config.ts';
import { Weights } from '../src/model/weights.ts';
import { Tokenizer } from '../src/data/tokenizer.ts';
import { generatePhantom, generatePhantomSample } from '../src/data/phantom.ts';
import { findingSentence, INTENSITIES, LOCATIONS, SHAPES, SIZES } from '../src/data/findings.ts';
import { attentionDensity, type Box, controlMap, evaluateExplanations, type ExplainMap, explainSteps, findingSentenceMaps, kindScores, massShare, matchFindings, pixelDensity, pointingHit, sentenceSpecific, topFraction, WORD_KINDS, wordKind, wordsOf } from '../src/viz/index.ts';
import { preprocess } from '../src/data/preprocess.ts';
import { rng } from './util.ts';

beforeAll(async () => {
  await init();
});

const R = rng('explain-scores');

describe('score helpers on hand-built maps', () => {
  it('pointing game: the maximum inside or outside the box; ties shared', () => {
    const m = new Float64Array(64);
    m[2 * 8 + 3] = 1; // x 3, y 2
    expect(pointingHit(m, 8, 8, [2, 1, 5, 4])).toBe(1);
    expect(pointingHit(m, 8, 8, [4, 0, 8, 8])).toBe(0);
    expect(pointingHit(new Float64Array(16).fill(0.3), 4, 4, [0, 0, 2, 2])).toBe(0.25);
    m[7 * 8 + 7] = 1; // a tied maximum outside
    expect(pointingHit(m, 8, 8, [2, 1, 5, 4])).toBe(0.5);
  });

  it('mass share with whole and fractional box edges', () => {
    const ones = new Float64Array(100).fill(1);
    expect(massShare(ones, 10, 10, [0, 0, 5, 10])).toBeCloseTo(0.5, 15);
    expect(massShare(ones, 10, 10, [0, 0, 2.5, 10])).toBeCloseTo(0.25, 15);
    const spot = new Float64Array(100);
    spot[55] = 3;
    spot[0] = 1;
    expect(massShare(spot, 10, 10, [5, 5, 6, 6])).toBeCloseTo(0.75, 15);
    expect(massShare(new Float64Array(100), 10, 10, [0, 0, 5, 5])).toBe(0);
  });

  it('top fraction: the largest values, ties to the lower index', () => {
    expect(topFraction([5, 1, 3, 9, 0, 2, 7, 4, 6, 8], 0.2)).toEqual([3, 9]);
    expect(topFraction([1, 1, 1, 1, 1], 0.4)).toEqual([0, 1]);
    expect(topFraction(new Float64Array(11), 0.1)).toHaveLength(2); // ⌈1.1⌉
  });

  it('pixel densities: grid maps upsampled as the attention density, fine maps upsampled and normalised', () => {
    const S = 21, grid = new Float64Array(49);
    grid[R.int(0, 48)] = 0.7;
    grid[R.int(0, 48)] += 0.3;
    const d = pixelDensity({ grid }, S), ref = attentionDensity(grid, S, S, 'bilinear');
    for (let i = 0; i < d.length; i++) expect(d[i]).toBeCloseTo(ref[i], 12);
    const flat = pixelDensity({ grid, fine: { height: 3, width: 3, level: 'fpn', values: new Float64Array(9).fill(2) } }, S);
    for (const v of flat) expect(v).toBeCloseTo(1 / (S * S), 15);
    const px = new Float64Array(S * S);
    px[10] = 4;
    px[20] = 4;
    const pd = pixelDensity({ grid, fine: { height: S, width: S, level: 'pixels', values: px } }, S);
    expect([pd[10], pd[20], pd[11]]).toEqual([0.5, 0.5, 0]);
  });

  it('controls: uniform sums to 1, the centre map peaks at the centre, random maps differ per draw', () => {
    const S = 16, u = controlMap('uniform', S, Math.random);
    expect(u.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
    const c = controlMap('centre', S, Math.random);
    expect(pointingHit(c, S, S, [7, 7, 9, 9])).toBe(1);
    expect(pointingHit(c, S, S, [0, 0, 7, 16])).toBe(0);
    let i = 0;
    const rnd = () => (i++ * 0.618) % 1;
    expect(controlMap('random', S, rnd)).not.toEqual(controlMap('random', S, rnd));
  });
});

describe('per-word-kind breakdown on hand-built maps', () => {
  it('every word of every phantom finding sentence has a kind: 4 appearance, 3 location, 3 function', () => {
    for (const size of SIZES) for (const shape of SHAPES) for (const intensity of INTENSITIES) for (const location of LOCATIONS) {
      const kinds = findingSentence({ size, shape, intensity, location }).split(' ').map(wordKind);
      expect(WORD_KINDS.map((k) => kinds.filter((x) => x === k).length)).toEqual([4, 3, 3, 0]);
    }
    expect(wordKind('abnormality')).toBe('other');
  });

  it('mean map per kind scored against the box; exact answers', () => {
    // S = 4, box = pixels x, y ∈ {0, 1}; a map is a list of (x, y, value) on zeros, 'u' uniform.
    const S = 4, box: Box = [0, 0, 2, 2];
    const map = (...pts: [number, number, number][]) => {
      const d = new Float64Array(S * S);
      for (const [x, y, v] of pts) d[y * S + x] += v;
      return d;
    };
    const uniform = new Float64Array(S * S).fill(1 / (S * S));
    const words = ['ct', 'scan', '.', 'a', 'small', 'faint', 'round', 'bright', 'lesion', 'in', 'the', 'upper', 'left', 'region', '.'];
    const dens: Record<string, Float64Array> = {
      small: map([0, 0, 1]), round: map([0, 0, 0.5], [3, 3, 0.5]), bright: map([1, 1, 1]), lesion: map([3, 3, 1]), // appearance
      upper: map([3, 0, 1]), left: map([3, 0, 1]), region: uniform, // location
      a: map([1, 0, 1]), in: uniform, the: map([2, 2, 1]), // function
      faint: map([1, 1, 1]), // other
    };
    const sentence = [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13];
    const r = kindScores(words, sentence, (st) => dens[words[st]], box, S);
    // appearance mean: (0,0) 1.5/4, (1,1) 1/4, (3,3) 1.5/4 → mass 5/8; (0,0) in and (3,3) out tie → pointing 1/2
    expect(r.appearance!.mass_in_box).toBeCloseTo(5 / 8, 14);
    expect(r.appearance!.pointing).toBe(0.5);
    expect(r.appearance!.words).toBe(4);
    // location mean: (3,0) (2 + 1/16)/3 outside, every other pixel 1/48 → mass 4/48, pointing 0
    expect(r.location!.mass_in_box).toBeCloseTo(4 / 48, 14);
    expect(r.location!.pointing).toBe(0);
    expect(r.location!.words).toBe(3);
    // function mean: (1,0) and (2,2) (1 + 1/16)/3 each (in / out, tie), rest 1/48 → mass (17 + 3)/48, pointing 1/2
    expect(r.function!.mass_in_box).toBeCloseTo(20 / 48, 14);
    expect(r.function!.pointing).toBe(0.5);
    expect(r.function!.words).toBe(3);
    expect(r.other).toEqual({ mass_in_box: 1, pointing: 1, words: 1 });
    // a sentence without words of some kind leaves that kind out
    expect(Object.keys(kindScores(words, [4, 11], (st) => dens[words[st]], box, S)).sort()).toEqual(['appearance', 'location']);
  });
});

describe('sentence-specific maps on hand-built maps', () => {
  it('findingSentenceMaps: per finding sentence and method, the mean of its words\' densities and the specific map; other sentences and missing maps left out', () => {
    // "<modality> . finding 1 . finding 2 . no other abnormality . <eos>" on a 2×2 image.
    const f1 = findingSentence({ size: SIZES[0], shape: SHAPES[0], intensity: INTENSITIES[0], location: LOCATIONS[0] }).split(' ');
    const f2 = findingSentence({ size: SIZES[1], shape: SHAPES[1], intensity: INTENSITIES[1], location: LOCATIONS[LOCATIONS.length - 1] }).split(' ');
    const words = ['ct', 'scan', '.', ...f1, '.', ...f2, '.', 'no', 'other', 'abnormality', '.', '<eos>'];
    const s1 = f1.map((_, i) => 3 + i), s2 = f2.map((_, i) => 4 + f1.length + i);
    const at = (values: number[], step: number): ExplainMap => ({ method: 'saliency', step, token: 0, grid: new Float64Array(49), fine: { level: 'pixels', height: 2, width: 2, values: Float64Array.from(values) }, logit: 0 });
    // Sentence 1's words alternate between densities (.75, .25, 0, 0) and (.5, .5, 0, 0): mean
    // (.625, .375, 0, 0); sentence 2's words are all (0, 1, 0, 0); every other word (0, 0, 0, 1),
    // which must not count. Specific: max(0, d − o) normalised → (1, 0, 0, 0) and (0, 1, 0, 0).
    const full = words.map((_, t) => at(s1.includes(t) ? (s1.indexOf(t) % 2 ? [1, 1, 0, 0] : [3, 1, 0, 0]) : s2.includes(t) ? [0, 1, 0, 0] : [0, 0, 0, 1], t));
    // A second method without a map for one word of sentence 2: that sentence is left out, so
    // sentence 1 has no other and its specific map is its mean.
    const partial: (ExplainMap | undefined)[] = full.map((m, t) => (t === s2[1] ? undefined : m));
    const got = findingSentenceMaps(words, new Map([['a', full], ['b', partial]]), 2);
    expect(got.map((x) => [x.method, x.sentence, x.words])).toEqual([['a', 0, s1], ['a', 1, s2], ['b', 0, s1]]);
    const mean1 = s1.map((_, i) => (i % 2 ? [0.5, 0.5, 0, 0] : [0.75, 0.25, 0, 0])).reduce((a, b) => a.map((v, j) => v + b[j] / s1.length), [0, 0, 0, 0]);
    // Means of ten float64 values: within 10 units of roundoff of the exact sums.
    const near = (a: Float64Array, b: number[]) => expect(Math.max(...b.map((v, i) => Math.abs(a[i] - v)))).toBeLessThan(10 * 2 ** -53);
    near(got[0].mean, mean1);
    expect([...got[0].specific]).toEqual([1, 0, 0, 0]);
    near(got[1].mean, [0, 1, 0, 0]);
    expect([...got[1].specific]).toEqual([0, 1, 0, 0]);
    expect(got[2].specific).toBe(got[2].mean);
    expect(got[0].text).toBe(f1.join(' '));
  });

  it('difference max(0, d − o) and share d·d/(d + o), o the mean of the others, normalised; d itself without others', () => {
    const d = Float64Array.from([0.45, 0.55, 0, 0]);
    for (const k of ['difference', 'share'] as const) expect(sentenceSpecific(d, [], k)).toBe(d);
    // The other sentence draws only on pixel 1: the maximum moves from pixel 1 to pixel 0 (the
    // pointing game's answer flips). difference: (.45, 0); share: (.45, .55·.55/1.55).
    const o = Float64Array.from([0, 1, 0, 0]);
    expect([...sentenceSpecific(d, [o])]).toEqual([1, 0, 0, 0]);
    const raw = [0.45, (0.55 * 0.55) / 1.55], tot = raw[0] + raw[1];
    const share = sentenceSpecific(d, [o], 'share');
    expect([...share]).toEqual([raw[0] / tot, raw[1] / tot, 0, 0]);
    expect(pointingHit(d, 2, 2, [0, 0, 1, 1])).toBe(0);
    for (const m of [sentenceSpecific(d, [o]), share]) expect(pointingHit(m, 2, 2, [0, 0, 1, 1])).toBe(1);
    // Two others are averaged: o = (1, 0, .5, .5); a pixel with d = 0 stays 0.
    const two = [Float64Array.from([2, 0, 0, 1]), Float64Array.from([0, 0, 1, 0])];
    expect([...sentenceSpecific(d, two)]).toEqual([0, 1, 0, 0]);
    const raw2 = [(0.45 * 0.45) / 1.45, 0.55], tot2 = raw2[0] + raw2[1];
    expect([...sentenceSpecific(d, two, 'share')]).toEqual([raw2[0] / tot2, raw2[1] / tot2, 0, 0]);
    // A sentence whose map equals the others': nothing beyond them, so the map itself
    // (difference); share halves every pixel, which renormalises to the map.
    const e = Float64Array.from([0.125, 0.25, 0.5, 0.125]);
    expect(sentenceSpecific(e, [Float64Array.from(e)])).toBe(e);
    expect([...sentenceSpecific(e, [Float64Array.from(e)], 'share')]).toEqual([...e]);
    expect(() => sentenceSpecific(d, [new Float64Array(3)])).toThrow(/3 values against 4/);
  });
});

/** A tiny random model (32 px) and a tokenizer of phantom reports, for the evaluation tests. */
function tinyModel() {
  const S = 32;
  const reports = generatePhantom({ count: 60, seed: 5, size: 16 }).map((s) => s.report);
  const tok = Tokenizer.build(reports, 1, 'whitespace');
  const cfg = normaliseConfig({
    backbone: 'resnet10', image_size: S, d_v: 16, d_model: 32, d_latent: 48, num_heads: 4, qk_nope_dim: 4, qk_rope_dim: 8,
    d_ff: 32, num_layers: 2, num_experts: 4, k: 2, act_fn: 'silu', moe_mode: 'weighted', text_seq_len: 48, vocab_size: tok.vocabSize,
  });
  return { S, tok, w: Weights.init(cfg, R.int(1, 1 << 30)) };
}

describe('evaluateExplanations on a tiny random model', () => {
  it('scores every method and control; uniform and centre controls match their closed forms', async () => {
    const { S, tok, w } = tinyModel();
    const samples = [];
    for (let i = 0; samples.length < 3; i++) {
      const s = generatePhantomSample(R.int(1, 1 << 30), i, S);
      if (s.findings.length) samples.push(s);
    }
    const tokens = samples.map((s) => [...tok.clean(s.report).map((x) => tok.id(x)), tok.id('<eos>')]);
    const ev = await evaluateExplanations(w, tok.tokens, samples, tokens, { seed: R.int(1, 1 << 30), byWordKind: true });
    const boxes: Box[] = samples.flatMap((s) => s.findings.map((f) => f.box));
    expect(ev.findings).toBe(boxes.length); // true reports mention every finding at its location
    const methods = ['attention', 'grad-attention', 'gradcam', 'rollout', 'saliency'];
    expect(Object.keys(ev.scores).sort()).toEqual([...methods, ...methods.map((m) => `${m}/specific`), 'centre', 'random', 'uniform'].sort());
    const mean = (f: (b: Box) => number) => boxes.reduce((a, b) => a + f(b), 0) / boxes.length;
    const area = (b: Box) => ((b[2] - b[0]) * (b[3] - b[1])) / (S * S);
    // Uniform: mass = pointing = box area share; its deletion is the random mask's by definition.
    expect(ev.scores.uniform.mass_in_box).toBeCloseTo(mean(area), 10);
    expect(ev.scores.uniform.pointing).toBeCloseTo(mean(area), 10);
    expect(ev.scores.uniform.deletion_drop).toBe(ev.scores.uniform.random_drop);
    // Centre (S even): the four centre pixels tie for the maximum.
    const inCentre = (b: Box) => [15, 16].flatMap((y) => [15, 16].map((x) => +(x + 0.5 >= b[0] && x + 0.5 < b[2] && y + 0.5 >= b[1] && y + 0.5 < b[3]))).reduce((a, v) => a + v, 0) / 4;
    expect(ev.scores.centre.pointing).toBeCloseTo(mean(inCentre), 12);
    for (const [name, r] of Object.entries(ev.scores)) {
      for (const k of ['mass_in_box', 'pointing'] as const) expect(r[k], `${name} ${k}`).toBeGreaterThanOrEqual(0);
      for (const k of ['mass_in_box', 'pointing'] as const) expect(r[k], `${name} ${k}`).toBeLessThanOrEqual(1);
      expect(Math.abs(r.deletion_drop), `${name} deletion`).toBeLessThanOrEqual(1);
      expect(r.random_drop).toBe(ev.scores.attention.random_drop); // one random mask per finding, shared
      if (!['uniform', 'random', 'centre'].includes(name)) expect(Number.isFinite(r.sanity_mass_in_box!), `${name} sanity`).toBe(true);
    }
    // Word kinds: true reports have 4 appearance, 3 location, 3 function words per finding. Mass is
    // linear in the map and every word map sums to 1, so the sentence mass is the word-count-weighted
    // mean of the kinds' masses (4:3:3 in every finding, hence also of the means over findings);
    // float64 sums of S² terms, so agreement to ~1e-12. That holds where no word's map is empty:
    // attention and rollout (softmax probabilities, positive everywhere). Grad-CAM, grad-attention
    // and saliency keep only a positive part, which on a random tiny model can be zero for a word
    // (seed 785969202: a Grad-CAM map); that word then adds no mass and the mean map sums to less
    // than 1, so the sentence's share is not the 4:3:3 mean.
    const n = boxes.length;
    expect(Object.keys(ev.byKind!).sort()).toEqual(['attention', 'grad-attention', 'gradcam', 'rollout', 'saliency']);
    for (const [meth, k] of Object.entries(ev.byKind!)) {
      expect([k.appearance, k.location, k.function, k.other].map((x) => [x.words, x.findings])).toEqual([[4 * n, n], [3 * n, n], [3 * n, n], [0, 0]]);
      expect(Number.isNaN(k.other.mass_in_box)).toBe(true);
      const weighted = 0.4 * k.appearance.mass_in_box + 0.3 * k.location.mass_in_box + 0.3 * k.function.mass_in_box;
      if (meth === 'attention' || meth === 'rollout') expect(weighted, `${meth} mass by kind`).toBeCloseTo(ev.scores[meth].mass_in_box, 12);
      for (const x of [k.appearance, k.location, k.function]) {
        for (const v of [x.mass_in_box, x.pointing]) {
          expect(v).toBeGreaterThanOrEqual(0);
          expect(v).toBeLessThanOrEqual(1);
        }
      }
      expect(ev.byWord![meth].lesion.findings).toBe(n);
      expect(ev.byWord![meth].region.words).toBe(n);
    }
  });

  it('sentence-specific scores: each finding sentence against the report\'s other finding sentences', async () => {
    // One image with one finding (specific = plain) and one with two; the scores recomputed here
    // from the attention maps of the same words with sentenceSpecific must be those reported.
    const { S, tok, w } = tinyModel();
    const samples = [];
    for (const want of [1, 2]) {
      for (let i = 0; ; i++) {
        const s = generatePhantomSample(R.int(1, 1 << 30), i, S);
        if (s.findings.length === want) {
          samples.push(s);
          break;
        }
      }
    }
    const tokens = samples.map((s) => [...tok.clean(s.report).map((x) => tok.id(x)), tok.id('<eos>')]);
    const ev = await evaluateExplanations(w, tok.tokens, samples, tokens, { seed: R.int(1, 1 << 30), methods: ['attention'], sanity: false, specific: ['difference', 'share'] });
    expect(ev.findings).toBe(3);
    let mass = 0, point = 0, plainMass = 0, shareMass = 0, sharePoint = 0;
    for (const [i, s] of samples.entries()) {
      const words = wordsOf(tokens[i], tok.tokens);
      const matched = matchFindings(words, s.findings);
      expect(matched.length).toBe(s.findings.length);
      const steps = [...new Set(matched.flatMap((m) => m.sentence.words))].sort((a, b) => a - b);
      const maps = (await explainSteps(w, preprocess(s.image, { resize: S, crop: S }), tokens[i], steps, ['attention'])).get('attention')!;
      const sentenceMap = (ws: number[]) => {
        const out = new Float64Array(S * S);
        for (const st of ws) pixelDensity(maps[steps.indexOf(st)], S).forEach((v, p) => (out[p] += v / ws.length));
        return out;
      };
      for (const m of matched) {
        const d = sentenceMap(m.sentence.words);
        const others = matched.filter((o) => o !== m).map((o) => sentenceMap(o.sentence.words));
        const sp = sentenceSpecific(d, others), sh = sentenceSpecific(d, others, 'share');
        if (s.findings.length === 1) expect([sp, sh]).toEqual([d, d]);
        shareMass += massShare(sh, S, S, m.finding.box) / 3;
        sharePoint += pointingHit(sh, S, S, m.finding.box) / 3;
        mass += massShare(sp, S, S, m.finding.box) / 3;
        point += pointingHit(sp, S, S, m.finding.box) / 3;
        plainMass += massShare(d, S, S, m.finding.box) / 3;
      }
    }
    // float64 sums of S² terms in the same order: agreement to ~1e-12.
    expect(ev.scores['attention/specific'].mass_in_box).toBeCloseTo(mass, 12);
    expect(ev.scores['attention/specific'].pointing).toBeCloseTo(point, 12);
    expect(ev.scores['attention/specific-share'].mass_in_box).toBeCloseTo(shareMass, 12);
    expect(ev.scores['attention/specific-share'].pointing).toBeCloseTo(sharePoint, 12);
    expect(ev.scores.attention.mass_in_box).toBeCloseTo(plainMass, 12);
    expect(ev.scores['attention/specific'].sanity_mass_in_box).toBeUndefined();
  });
});
