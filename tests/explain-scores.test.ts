// Explanation scores: pointing, mass and deletion helpers on hand-built maps with known answers,
// the control maps, and the whole evaluation on a tiny random model reading true phantom
// reports (controls whose scores are known in closed form: uniform and centre).
import { beforeAll, describe, expect, it } from 'vitest';
import { init } from '../src/graph/runtime.ts';
import { normaliseConfig } from '../src/model/config.ts';
import { Weights } from '../src/model/weights.ts';
import { Tokenizer } from '../src/data/tokenizer.ts';
import { generatePhantom, generatePhantomSample } from '../src/data/phantom.ts';
import { attentionDensity, type Box, controlMap, evaluateExplanations, massShare, pixelDensity, pointingHit, topFraction } from '../src/viz/index.ts';
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

describe('evaluateExplanations on a tiny random model', () => {
  it('scores every method and control; uniform and centre controls match their closed forms', async () => {
    const S = 32;
    const reports = generatePhantom({ count: 60, seed: 5, size: 16 }).map((s) => s.report);
    const tok = Tokenizer.build(reports, 1, 'whitespace');
    const cfg = normaliseConfig({
      backbone: 'resnet10', image_size: S, d_v: 16, d_model: 32, d_latent: 48, num_heads: 4, qk_nope_dim: 4, qk_rope_dim: 8,
      d_ff: 32, num_layers: 2, num_experts: 4, k: 2, act_fn: 'silu', moe_mode: 'weighted', text_seq_len: 48, vocab_size: tok.vocabSize,
    });
    const w = Weights.init(cfg, R.int(1, 1 << 30));
    const samples = [];
    for (let i = 0; samples.length < 3; i++) {
      const s = generatePhantomSample(R.int(1, 1 << 30), i, S);
      if (s.findings.length) samples.push(s);
    }
    const tokens = samples.map((s) => [...tok.clean(s.report).map((x) => tok.id(x)), tok.id('<eos>')]);
    const ev = await evaluateExplanations(w, tok.tokens, samples, tokens, { seed: R.int(1, 1 << 30) });
    const boxes: Box[] = samples.flatMap((s) => s.findings.map((f) => f.box));
    expect(ev.findings).toBe(boxes.length); // true reports mention every finding at its location
    expect(Object.keys(ev.scores).sort()).toEqual(['attention', 'centre', 'grad-attention', 'gradcam', 'random', 'rollout', 'saliency', 'uniform']);
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
  });
});
