// Grounding score: synthetic attention with the expected shares worked out by hand (cell
// footprint overlaps; bilinear one-hot kernels as products of 1-D weight sums), sentence matching,
// pooling, and a tiny random model reading true phantom reports (vs a full teacher-forced forward
// recomputed here in float64).
import { beforeAll, describe, expect, it } from 'vitest';
import { fromData, init, read, realize } from '../src/graph/runtime.ts';
import { normaliseConfig } from '../src/model/config.ts';
import { Weights } from '../src/model/weights.ts';
import { forward } from '../src/model/micar.ts';
import { generate } from '../src/generate/decode.ts';
import { Tokenizer } from '../src/data/tokenizer.ts';
import { generatePhantom, generatePhantomSample, type PhantomSample } from '../src/data/phantom.ts';
import { formatReport, LOCATIONS, type Finding, type Location } from '../src/data/findings.ts';
import { preprocess } from '../src/data/preprocess.ts';
import {
  aggregateGrounding, type AttentionTrace, evaluateGrounding, groundingScore, readTrace, sentences, traceTokens,
} from '../src/viz/index.ts';
import { relL2, type Rng, rng } from './util.ts';

beforeAll(async () => {
  await init();
});

const R = rng('grounding');
const reports = generatePhantom({ count: 80, seed: 11, size: 16 }).map((s) => s.report);
const tok = Tokenizer.build(reports, 1, 'whitespace');
const vocab = tok.tokens;
const ids = (report: string) => [...tok.clean(report).map((w) => tok.id(w)), tok.id('<eos>')];

type Box = [number, number, number, number];

function randomBox(R: Rng, S: number): Box {
  const x0 = R.int(0, S - 2), y0 = R.int(0, S - 2);
  return [x0, y0, R.int(x0 + 1, S), R.int(y0 + 1, S)];
}

function randomFinding(R: Rng, location?: Location): Finding {
  return { location: location ?? LOCATIONS[R.int(0, 8)], size: R.next() < 0.5 ? 'small' : 'large', shape: R.next() < 0.5 ? 'round' : 'irregular', intensity: R.next() < 0.5 ? 'bright' : 'dark' };
}

function oneHot(cell: number): Float64Array {
  const m = new Float64Array(49);
  m[cell] = 1;
  return m;
}

function softmax(R: Rng, n: number): Float64Array {
  const e = R.randn(n, 2).map(Math.exp);
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

/** Hand: cell (r, c) covers [c·S/7, (c+1)·S/7) × [r·S/7, (r+1)·S/7); its mass spreads evenly there. */
function areaShare(cell: number, box: Box, S: number): number {
  const r = Math.floor(cell / 7), c = cell % 7, a = S / 7;
  const ov = (lo: number, hi: number, b0: number, b1: number) => Math.max(0, Math.min(hi, b1) - Math.max(lo, b0));
  return (ov(c * a, (c + 1) * a, box[0], box[2]) * ov(r * a, (r + 1) * a, box[1], box[3])) / (a * a);
}

/** Hand: a one-hot bilinear map is the product of two 1-D kernels, so its box share factorises. */
function bilinearShare(cell: number, box: Box, S: number): number {
  const r = Math.floor(cell / 7), c = cell % 7;
  // PyTorch align_corners=False: output o reads source max(0, (o+0.5)·7/S − 0.5) between floor and floor+1
  const kernel = (o: number, src: number) => {
    const s = Math.max(0, ((o + 0.5) * 7) / S - 0.5), i0 = Math.min(Math.floor(s), 6), i1 = Math.min(i0 + 1, 6), l = s - i0;
    return (i0 === src ? 1 - l : 0) + (i1 === src ? l : 0);
  };
  let inX = 0, allX = 0, inY = 0, allY = 0;
  for (let o = 0; o < S; o++) {
    const kx = kernel(o, c), ky = kernel(o, r);
    allX += kx;
    allY += ky;
    if (o >= box[0] && o < box[2]) inX += kx;
    if (o >= box[1] && o < box[3]) inY += ky;
  }
  return (inX / allX) * (inY / allY);
}

describe('grounding score on synthetic attention', () => {
  it('sentences split at "." and stop at <eos>', () => {
    const s = sentences(['ct', 'scan', '.', 'a', 'lesion', '.', 'no', '<eos>', 'x', '.']);
    expect(s.map((x) => x.words)).toEqual([[0, 1], [3, 4], [6]]);
    expect(s[1].text).toBe('a lesion');
  });

  it('all mass in one cell: share = the cell\'s overlap with the box (area) / its bilinear kernel\'s (bilinear)', () => {
    for (let trial = 0; trial < 12; trial++) {
      const S = R.int(32, 90);
      const f = randomFinding(R);
      // every third trial: a cell entirely inside the box
      const cell = R.int(0, 48);
      const box: Box = trial % 3 === 0
        ? [Math.floor(((cell % 7) * S) / 7), Math.floor((Math.floor(cell / 7) * S) / 7), Math.ceil((((cell % 7) + 1) * S) / 7), Math.ceil(((Math.floor(cell / 7) + 1) * S) / 7)]
        : randomBox(R, S);
      const tokens = ids(formatReport('ct', [f]));
      const words = tokens.map((i) => vocab[i]);
      const sent = sentences(words)[1];
      const maps = tokens.map((_, i) => (sent.words.includes(i) ? oneHot(cell) : softmax(R, 49)));
      const truth = [{ location: f.location, box }];
      const area = groundingScore(maps, tokens, vocab, truth, S, { mode: 'area' });
      const bil = groundingScore(maps, tokens, vocab, truth, S, { mode: 'bilinear' });
      const uniform = ((box[2] - box[0]) * (box[3] - box[1])) / (S * S);
      expect(area.n).toBe(1);
      expect(Math.abs(area.share - areaShare(cell, box, S))).toBeLessThan(1e-12);
      expect(Math.abs(bil.share - bilinearShare(cell, box, S))).toBeLessThan(1e-12);
      expect(area.uniform).toBe(uniform);
      expect(bil.uniform).toBe(uniform);
      if (trial % 3 === 0) expect(Math.abs(area.share - 1)).toBeLessThan(1e-12);
      expect(area.perFinding[0].words).toEqual(sent.words);
    }
  });

  it('averages over the sentence\'s words; unmatched and mislocated findings are not counted; pooling weighs findings', () => {
    const S = R.int(40, 80);
    // Three distinct locations (thirds of the 3×3 grid's list), so lc never names fa's or fb's.
    const [la, lb, lc] = [0, 3, 6].map((i) => LOCATIONS[i + R.int(0, 2)]);
    const fa = randomFinding(R, la), fb = randomFinding(R, lb);
    const tokens = ids(formatReport('mri', [fa, fb]));
    const words = tokens.map((i) => vocab[i]);
    const sents = sentences(words);
    const boxA = randomBox(R, S), boxB = randomBox(R, S);
    const cells = tokens.map(() => R.int(0, 48));
    const maps = cells.map(oneHot);
    const r = groundingScore(maps, tokens, vocab, [{ location: fb.location, box: boxB }, { location: fa.location, box: boxA }, { location: lc, box: randomBox(R, S) }], S, { mode: 'area' });
    // the report lists findings in reading order: fa's sentence is sentence 1, fb's sentence 2
    const mean = (ws: number[], box: Box) => ws.reduce((a, i) => a + areaShare(cells[i], box, S), 0) / ws.length;
    const shareA = mean(sents[1].words, boxA), shareB = mean(sents[2].words, boxB);
    expect(r.n).toBe(2); // lc is not mentioned
    expect(r.perFinding.map((p) => p.location)).toEqual([fb.location, fa.location]);
    expect(Math.abs(r.perFinding[0].share - shareB)).toBeLessThan(1e-12);
    expect(Math.abs(r.perFinding[1].share - shareA)).toBeLessThan(1e-12);
    expect(Math.abs(r.share - (shareA + shareB) / 2)).toBeLessThan(1e-12);
    const ua = ((boxA[2] - boxA[0]) * (boxA[3] - boxA[1])) / (S * S), ub = ((boxB[2] - boxB[0]) * (boxB[3] - boxB[1])) / (S * S);
    expect(Math.abs(r.uniform - (ua + ub) / 2)).toBeLessThan(1e-15);
    // a finding at the wrong location is not a match
    const wrong = groundingScore(maps, tokens, vocab, [{ location: lc, box: boxA }], S);
    expect(wrong.n).toBe(0);
    expect(wrong.share).toBeNaN();
    // pooled: each finding weighs the same
    const other = groundingScore(maps, tokens, vocab, [{ location: fa.location, box: boxA }], S, { mode: 'area' });
    const agg = aggregateGrounding([r, wrong, other]);
    expect(agg.n).toBe(3);
    expect(agg.reports).toBe(3);
    expect(Math.abs(agg.share - (shareA + shareB + shareA) / 3)).toBeLessThan(1e-12);
    expect(Math.abs(agg.ratio - agg.share / agg.uniform)).toBeLessThan(1e-12);
  });

  it('pixel densities and traces: uniform attention scores exactly the uniform share; traces average layers and heads', () => {
    const S = R.int(32, 64), f = randomFinding(R), box = randomBox(R, S);
    const tokens = ids(formatReport('xray', [f]));
    const flat = tokens.map(() => new Float64Array(S * S).fill(1 / (S * S)));
    const u = groundingScore(flat, tokens, vocab, [{ location: f.location, box }], S);
    expect(Math.abs(u.share - u.uniform)).toBeLessThan(1e-12);
    const inBox = tokens.map(() => {
      const d = new Float64Array(S * S);
      for (let y = box[1]; y < box[3]; y++) for (let x = box[0]; x < box[2]; x++) d[y * S + x] = 3; // unnormalised: the share divides by the total
      return d;
    });
    expect(groundingScore(inBox, tokens, vocab, [{ location: f.location, box }], S).share).toBeCloseTo(1, 12);
    // a trace whose (layer, head) rows are one-hot at different cells: share = mean of their shares
    const L = 2, H = 3, cells = Array.from({ length: L * H }, () => R.int(0, 48));
    const tr: AttentionTrace = {
      layers: L, heads: H, grid: 7, numExperts: 2, tokens,
      cross: tokens.map(() => Array.from({ length: L }, (_, l) => {
        const a = new Float32Array(H * 49);
        for (let h = 0; h < H; h++) a[h * 49 + cells[l * H + h]] = 1;
        return a;
      })),
      self: [], experts: [],
    };
    const g = groundingScore(tr, tokens, vocab, [{ location: f.location, box }], S, { mode: 'area' });
    expect(Math.abs(g.share - cells.reduce((a, c) => a + areaShare(c, box, S), 0) / (L * H))).toBeLessThan(1e-12);
    expect(() => groundingScore(tr, tokens, vocab, [{ location: f.location, box: [3, 3, 3, 9] }], S)).toThrow(/empty box/);
  });
});

describe('grounding of a tiny random model on phantom images', () => {
  let w: Weights;
  const S = 32;
  beforeAll(() => {
    const cfg = normaliseConfig({
      backbone: 'resnet10', image_size: S, resize_size: S, d_v: 16, d_model: 32, d_latent: 48, num_heads: 4, qk_nope_dim: 4, qk_rope_dim: 8,
      d_ff: 64, num_layers: 2, num_experts: 4, k: 2, act_fn: 'silu', moe_mode: 'weighted', text_seq_len: 40, vocab_size: tok.vocabSize,
      dropout: 0, attention_dropout: 0,
    }, 'grounding test config');
    w = Weights.init(cfg, R.int(1, 1 << 30));
  });

  function sampleWithFindings(seed: number): PhantomSample {
    for (let i = 0; ; i++) {
      const s = generatePhantomSample(seed, i, S);
      if (s.findings.length > 0) return s;
    }
  }

  it('reading the true report: share from the traced maps equals a float64 recomputation from a full forward', async () => {
    const s = sampleWithFindings(R.int(0, 1 << 30));
    const tokens = ids(s.report);
    const image = fromData(preprocess(s.image, { resize: S, crop: S }), [1, 3, S, S]);
    const tr = await readTrace(await traceTokens(w, image, tokens), tokens, w.cfg);
    const got = groundingScore(tr, tokens, vocab, s.findings, S);
    expect(got.n).toBe(s.findings.length); // the true report names every finding at its location

    // reference: full teacher-forced forward → mean over layers/heads → per-pixel bilinear → box share
    const T = tokens.length, L = w.cfg.num_layers, H = w.cfg.num_heads;
    const input = Int32Array.from([w.cfg.sos_id, ...tokens.slice(0, T - 1)]);
    const out = forward(w, { image, inputIds: fromData(input, [1, T], 'i32'), labelIds: fromData(new Int32Array(T), [1, T], 'i32'), padMask: new Int32Array(T).fill(1) }, { keepAttention: true });
    await realize(out.dec.layers.map((d) => d.cross!));
    const cross = await Promise.all(out.dec.layers.map(async (d) => (await read(d.cross!)) as Float32Array));
    const wordShare = (t: number, box: readonly number[]) => {
      const m = new Float64Array(49);
      for (let l = 0; l < L; l++) for (let h = 0; h < H; h++) for (let i = 0; i < 49; i++) m[i] += cross[l][(h * T + t) * 49 + i] / (L * H);
      let inside = 0, total = 0;
      for (let y = 0; y < S; y++)
        for (let x = 0; x < S; x++) {
          const co = (o: number) => {
            const v = Math.max(0, ((o + 0.5) * 7) / S - 0.5), i0 = Math.min(Math.floor(v), 6);
            return [i0, Math.min(i0 + 1, 6), v - i0];
          };
          const [y0, y1, ly] = co(y), [x0, x1, lx] = co(x);
          const v = (1 - ly) * ((1 - lx) * m[y0 * 7 + x0] + lx * m[y0 * 7 + x1]) + ly * ((1 - lx) * m[y1 * 7 + x0] + lx * m[y1 * 7 + x1]);
          total += v;
          if (x >= box[0] && x < box[2] && y >= box[1] && y < box[3]) inside += v;
        }
      return inside / total;
    };
    const sents = sentences(tokens.map((i) => vocab[i]));
    const want = s.findings.map((f) => {
      const sent = sents.find((x) => x.text.includes(f.location))!;
      return sent.words.reduce((a, t) => a + wordShare(t, f.box), 0) / sent.words.length;
    });
    console.log(`teacher-forced grounding (random model): share ${got.share.toFixed(4)} vs uniform ${got.uniform.toFixed(4)} over ${got.n} findings`);
    expect(relL2(got.perFinding.map((p) => p.share), want)).toBeLessThan(1e-5);
    for (const p of got.perFinding) {
      expect(p.share).toBeGreaterThanOrEqual(0);
      expect(p.share).toBeLessThanOrEqual(1);
    }
  });

  it('evaluateGrounding over a small set: batched generation gives the same reports and scores as one image at a time', async () => {
    const seed = R.int(0, 1 << 30);
    const samples = [0, 1, 2].map((i) => generatePhantomSample(seed, i, S));
    const { summary, results, tokens } = await evaluateGrounding(w, vocab, samples, { batch: 3, maxLen: 6 });
    expect(results.length).toBe(3);
    expect(summary.reports).toBe(3);
    expect(summary.n).toBe(results.reduce((a, r) => a + r.n, 0));
    // one image at a time through generate + readTrace + groundingScore: same report, same scores
    for (let i = 0; i < 3; i++) {
      const image = fromData(preprocess(samples[i].image, { resize: S, crop: S }), [1, 3, S, S]);
      const g = await generate(w, image, { trace: true, maxLen: 6 });
      expect(tokens[i]).toEqual(g.tokens[0]);
      const tr = await readTrace(g.traces, g.tokens[0], w.cfg);
      const r = groundingScore(tr, tr.tokens, vocab, samples[i].findings, S);
      expect(results[i].n).toBe(r.n);
      if (r.n) expect(relL2(results[i].perFinding.map((p) => p.share), r.perFinding.map((p) => p.share))).toBeLessThan(1e-5);
      else expect(results[i].share).toBeNaN();
    }
    console.log(`evaluateGrounding (random model, greedy ≤ 6 tokens): ${summary.n} findings matched over ${summary.reports} reports`);
  });
});
