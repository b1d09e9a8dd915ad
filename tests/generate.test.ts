// KV-cached generation against full-prefix recomputation (decodeText), and the decoding
// strategies built on it: greedy, beam search (exactness on enumerable models, n-best order,
// length normalisation), sampling, streaming. Small random models (Weights.init).
import { beforeAll, describe, expect, it } from 'vitest';
import { fromData, init, read } from '../src/graph/runtime.ts';
import type { Tensor } from '../src/graph/tensor.ts';
import { concat, slice } from '../src/graph/ops/shape.ts';
import { normaliseConfig, type MicarConfig, type MoeMode } from '../src/model/config.ts';
import { Weights } from '../src/model/weights.ts';
import { Forward } from '../src/model/context.ts';
import { decodeText, decoderMask, encodeImage } from '../src/model/micar.ts';
import { CachedDecoder } from '../src/generate/generator.ts';
import { beamSearch, generate, generateStream, type Hypothesis, logSoftmaxRow } from '../src/generate/decode.ts';
import { relL2, type Rng, rng } from './util.ts';

beforeAll(async () => {
  await init();
});

function tinyConfig(over: Record<string, unknown>): MicarConfig {
  // rope 8 (must be a multiple of 4) + nope 4 = d_latent / heads = 12.
  return normaliseConfig({
    backbone: 'resnet10', image_size: 32, d_v: 16, d_model: 32, d_latent: 48, num_heads: 4, qk_nope_dim: 4, qk_rope_dim: 8,
    d_ff: 64, num_layers: 2, num_experts: 4, k: 2, act_fn: 'silu', moe_mode: 'sum', text_seq_len: 12, vocab_size: 16,
    dropout: 0, attention_dropout: 0, ...over,
  }, 'test config');
}

function randomImage(R: Rng, b: number, S: number): Tensor {
  return fromData(Float32Array.from(R.randn(b * 3 * S * S)), [b, 3, S, S]);
}

/** Next-token logits of each row's whole prefix by full recomputation (last position). */
async function recomputeLogits(w: Weights, img: Tensor, rowImage: number[], prefixes: number[][]): Promise<Float32Array[]> {
  const cfg = w.cfg, B = prefixes.length, t = prefixes[0].length, V = cfg.vocab_size;
  const imgRows = concat(rowImage.map((i) => slice(img, 0, i, 1)), 0);
  const ids = fromData(Int32Array.from(prefixes.flat()), [B, t], 'i32');
  const dec = decodeText(new Forward(w), imgRows, ids, decoderMask(new Int32Array(B * t).fill(1), B, t));
  const logits = (await read(dec.logits)) as Float32Array;
  return prefixes.map((_, r) => logits.slice((r * t + t - 1) * V, (r * t + t) * V));
}

async function encoded(w: Weights, image: Tensor): Promise<Tensor> {
  const img = encodeImage(new Forward(w), image).out;
  await read(img);
  return img;
}

describe('KV-cached decoder', () => {
  for (const mode of ['sum', 'weighted'] as MoeMode[]) {
    it(`logits equal full-prefix recomputation at every step (${mode} MoE)`, async () => {
      const R = rng(`kv cache ${mode}`);
      const V = R.int(12, 20), T = R.int(8, 12);
      const w = Weights.init(tinyConfig({ moe_mode: mode, vocab_size: V, text_seq_len: T }), R.int(1, 1e9));
      const b = 2;
      const image = randomImage(R, b, 32);
      const dec = new CachedDecoder(w);
      await dec.encode(image);
      dec.start(b, 1);
      const img = await encoded(w, image);
      const hist = Array.from({ length: b }, () => [w.cfg.sos_id]);
      let worst = 0;
      for (let step = 0; step < T; step++) {
        const feed = hist.map((h) => h[h.length - 1]);
        const { logits } = await dec.step(feed);
        const ref = await recomputeLogits(w, img, [0, 1], hist);
        for (let r = 0; r < b; r++) {
          const e = relL2(logits.subarray(r * V, (r + 1) * V), ref[r]);
          worst = Math.max(worst, e);
          expect(e, `step ${step} row ${r}`).toBeLessThanOrEqual(1e-5);
        }
        for (const h of hist) h.push(R.int(0, V - 1));
      }
      console.log(`kv cache (${mode}) V ${V} T ${T}: worst rel L2 ${worst.toExponential(2)} over ${T} steps`);
      dec.dispose();
    });
  }

  it('stays exact through beam reorders that regroup and resize the rows', async () => {
    const R = rng('kv cache reorder');
    const V = R.int(12, 20), T = 10;
    const w = Weights.init(tinyConfig({ vocab_size: V, text_seq_len: T, moe_mode: R.next() < 0.5 ? 'sum' : 'weighted' }), R.int(1, 1e9));
    const b = 2;
    const image = randomImage(R, b, 32);
    const img = await encoded(w, image);
    const dec = new CachedDecoder(w);
    await dec.encode(image);
    dec.start(b, 1);
    let rowImage = [0, 1];
    let hist = rowImage.map(() => [w.cfg.sos_id]);
    let worst = 0;
    for (let step = 0; step < T; step++) {
      const { logits } = await dec.step(hist.map((h) => h[h.length - 1]));
      const ref = await recomputeLogits(w, img, rowImage, hist);
      for (let r = 0; r < hist.length; r++) {
        const e = relL2(logits.subarray(r * V, (r + 1) * V), ref[r]);
        worst = Math.max(worst, e);
        expect(e, `step ${step} row ${r} of ${hist.length}`).toBeLessThanOrEqual(1e-5);
      }
      // New rows: 1..3 per image, each continuing a random row of the same image.
      const parents: number[] = [];
      for (let i = 0; i < b; i++) {
        const mine = rowImage.map((im, r) => (im === i ? r : -1)).filter((r) => r >= 0);
        const n = R.int(1, 3);
        for (let j = 0; j < n; j++) parents.push(mine[R.int(0, mine.length - 1)]);
      }
      await dec.reorder(parents);
      hist = parents.map((p) => [...hist[p], R.int(0, V - 1)]);
      rowImage = parents.map((p) => rowImage[p]);
    }
    console.log(`kv cache with reorders: worst rel L2 ${worst.toExponential(2)}`);
    dec.dispose();
  });
});

/** Every complete sequence of a model with vocabulary V and maxLen 3, with its exact log-probability. */
interface Seq {
  tokens: number[];
  logp: number;
}

/** log p(next | prefix) for every prefix of non-<eos> tokens shorter than maxLen = 3. */
async function prefixTable(w: Weights, image: Tensor): Promise<Map<string, Float64Array>> {
  const cfg = w.cfg, V = cfg.vocab_size;
  const img = await encoded(w, image);
  const words = Array.from({ length: V }, (_, v) => v).filter((v) => v !== cfg.eos_id);
  const prefixes: number[][] = [[]];
  for (const a of words) prefixes.push([a]);
  for (const a of words) for (const c of words) prefixes.push([a, c]);
  const table = new Map<string, Float64Array>();
  for (const len of [0, 1, 2]) {
    const ps = prefixes.filter((p) => p.length === len);
    const ref = await recomputeLogits(w, img, ps.map(() => 0), ps.map((p) => [cfg.sos_id, ...p]));
    ps.forEach((p, j) => table.set(p.join(), logSoftmaxRow(ref[j])));
  }
  return table;
}

function allSequences(table: Map<string, Float64Array>, V: number, eos: number, maxLen: number): Seq[] {
  const out: Seq[] = [];
  const grow = (tokens: number[], logp: number) => {
    const lp = table.get(tokens.join())!;
    for (let v = 0; v < V; v++) {
      const t = [...tokens, v], l = logp + lp[v];
      if (v === eos || t.length === maxLen) out.push({ tokens: t, logp: l });
      else grow(t, l);
    }
  };
  grow([], 0);
  return out;
}

/** The documented beam search, written plainly over an exact log-probability table. */
function referenceBeam(table: Map<string, Float64Array>, V: number, eos: number, K: number, maxLen: number, alpha: number): Hypothesis[] {
  const norm = (l: number, n: number) => (alpha === 0 ? l : l / Math.pow(n, alpha));
  let alive: Seq[] = [{ tokens: [], logp: 0 }];
  const done: Hypothesis[] = [];
  for (let step = 0; step < maxLen; step++) {
    const cands: Seq[] = [];
    for (const h of alive) {
      const lp = table.get(h.tokens.join())!;
      for (let v = 0; v < V; v++) cands.push({ tokens: [...h.tokens, v], logp: h.logp + lp[v] });
    }
    cands.sort((a, c) => c.logp - a.logp);
    alive = [];
    for (const c of cands) {
      if (alive.length >= K) break;
      if (c.tokens[c.tokens.length - 1] === eos) done.push({ ...c, score: norm(c.logp, c.tokens.length), finished: true });
      else alive.push(c);
    }
  }
  const all = [...done, ...alive.map((h) => ({ ...h, score: norm(h.logp, h.tokens.length), finished: false }))];
  return all.sort((a, c) => c.score - a.score).slice(0, K);
}

/** Same ranking up to near-ties: scores agree position by position and each hypothesis's own logp is exact. */
function expectSameRanking(got: Hypothesis[], want: { tokens: number[]; score: number }[], exact: (t: number[]) => number, what: string) {
  expect(got.length, what).toBe(want.length);
  for (let j = 0; j < want.length; j++) {
    expect(Math.abs(got[j].score - want[j].score), `${what}: score #${j} ${got[j].tokens} vs ${want[j].tokens}`).toBeLessThanOrEqual(1e-5);
    expect(Math.abs(got[j].logp - exact(got[j].tokens)), `${what}: logp of ${got[j].tokens}`).toBeLessThanOrEqual(1e-5);
    if (j > 0) expect(got[j].score, `${what}: n-best order`).toBeLessThanOrEqual(got[j - 1].score);
  }
  // Token identity wherever the expected scores are not near-tied.
  for (let j = 0; j < want.length; j++) {
    const tied = want.some((o, m) => m !== j && Math.abs(o.score - want[j].score) < 1e-5);
    if (!tied) expect(got[j].tokens, `${what}: hypothesis #${j}`).toEqual(want[j].tokens);
  }
}

describe('beam search', () => {
  it('with beam 1 equals greedy (tokens and summed log-probabilities)', async () => {
    const R = rng('beam1 greedy');
    const V = R.int(12, 20);
    const w = Weights.init(tinyConfig({ vocab_size: V, text_seq_len: 12, moe_mode: R.next() < 0.5 ? 'sum' : 'weighted' }), R.int(1, 1e9));
    const image = randomImage(R, 2, 32);
    for (const stopAtEos of [true, false]) {
      const g = await generate(w, image, { maxLen: 10, stopAtEos });
      const bs = await beamSearch(w, image, { beamWidth: 1, maxLen: 10, lengthPenalty: 0, stopAtEos });
      for (let i = 0; i < 2; i++) {
        expect(bs[i][0].tokens, `image ${i} stopAtEos ${stopAtEos}`).toEqual(g.tokens[i]);
        expect(Math.abs(bs[i][0].logp - g.scores[i]), `image ${i} logp`).toBeLessThanOrEqual(1e-5);
      }
    }
  });

  it('a beam of V² finds the exact n-best of every sequence (maxLen 3), with and without length normalisation', async () => {
    const R = rng('beam exhaustive');
    const V = R.int(5, 6), maxLen = 3;
    const w = Weights.init(tinyConfig({ vocab_size: V, text_seq_len: 4, moe_mode: R.next() < 0.5 ? 'sum' : 'weighted' }), R.int(1, 1e9));
    const image = randomImage(R, 1, 32);
    const table = await prefixTable(w, image);
    const all = allSequences(table, V, w.cfg.eos_id, maxLen);
    expect(all.length).toBe(1 + (V - 1) + (V - 1) ** 2 + (V - 1) ** 2 * (V - 1));
    const exact = (t: number[]) => all.find((s) => s.tokens.join() === t.join())?.logp ?? NaN;
    // K ≥ (V−1)²: every alive prefix survives each step, so the final ranking is over all sequences.
    const K = V * V;
    const tops: string[] = [];
    for (const alpha of [0, 1]) {
      const want = all.map((s) => ({ tokens: s.tokens, score: alpha === 0 ? s.logp : s.logp / Math.pow(s.tokens.length, alpha) }))
        .sort((a, c) => c.score - a.score).slice(0, K);
      const got = (await beamSearch(w, image, { beamWidth: K, maxLen, lengthPenalty: alpha, nBest: K }))[0];
      expectSameRanking(got, want, exact, `alpha ${alpha}`);
      for (const h of got) expect(h.finished).toBe(h.tokens[h.tokens.length - 1] === w.cfg.eos_id);
      tops.push(want.map((s) => s.tokens.join()).join('|'));
    }
    // Normalising by length must reorder this model's hypotheses (short ones lose their edge).
    expect(tops[0]).not.toBe(tops[1]);
  });

  it('a narrow beam returns what the documented procedure returns on the exact table', async () => {
    const R = rng('beam narrow');
    const V = R.int(5, 6), maxLen = 3;
    const w = Weights.init(tinyConfig({ vocab_size: V, text_seq_len: 4, moe_mode: R.next() < 0.5 ? 'sum' : 'weighted' }), R.int(1, 1e9));
    const image = randomImage(R, 1, 32);
    const table = await prefixTable(w, image);
    const all = allSequences(table, V, w.cfg.eos_id, maxLen);
    const exact = (t: number[]) => all.find((s) => s.tokens.join() === t.join())?.logp ?? NaN;
    for (const [K, alpha] of [[2, 0], [2, 1], [3, 0.6]]) {
      const want = referenceBeam(table, V, w.cfg.eos_id, K, maxLen, alpha);
      const got = (await beamSearch(w, image, { beamWidth: K, maxLen, lengthPenalty: alpha }))[0];
      expectSameRanking(got, want, exact, `K ${K} alpha ${alpha}`);
      // The best of a narrow beam can only be as good as the true optimum.
      const best = Math.max(...all.map((s) => (alpha === 0 ? s.logp : s.logp / Math.pow(s.tokens.length, alpha))));
      // (The table comes from full-prefix recomputation: f32 rounding differs from the cached steps by ~1e-7.)
      expect(got[0].score).toBeLessThanOrEqual(best + 1e-5 * (1 + Math.abs(best)));
    }
  });
});

describe('sampling and streaming', () => {
  it('sampling with a fixed seed is reproducible; top-p → 0 is greedy', async () => {
    const R = rng('sampling');
    const V = R.int(12, 20);
    const w = Weights.init(tinyConfig({ vocab_size: V, moe_mode: R.next() < 0.5 ? 'sum' : 'weighted' }), R.int(1, 1e9));
    const image = randomImage(R, 2, 32);
    const seed = R.int(1, 1e9);
    const a = await generate(w, image, { maxLen: 10, stopAtEos: false, sample: { seed, temperature: 1.5 } });
    const b = await generate(w, image, { maxLen: 10, stopAtEos: false, sample: { seed, temperature: 1.5 } });
    expect(b.tokens).toEqual(a.tokens);
    expect(b.scores).toEqual(a.scores);
    const greedy = await generate(w, image, { maxLen: 10 });
    const nucleus = await generate(w, image, { maxLen: 10, sample: { seed: seed + 1, topP: 1e-9 } });
    expect(nucleus.tokens).toEqual(greedy.tokens);
    // Different seeds at a high temperature almost surely differ somewhere in 20 tokens.
    const c = await generate(w, image, { maxLen: 10, stopAtEos: false, sample: { seed: seed + 2, temperature: 1.5 } });
    expect(c.tokens).not.toEqual(a.tokens);
  });

  it('onToken and generateStream deliver each token right after its step, in order', async () => {
    const R = rng('streaming');
    const V = R.int(12, 20);
    const w = Weights.init(tinyConfig({ vocab_size: V, moe_mode: R.next() < 0.5 ? 'sum' : 'weighted' }), R.int(1, 1e9));
    const b = 2, maxLen = 8;
    const image = randomImage(R, b, 32);
    const seen: [number, number, number, number][] = [];
    let base = CachedDecoder.totalSteps;
    const g = await generate(w, image, { maxLen, stopAtEos: false, readEvery: 1, onToken: (i, t, s) => seen.push([i, t, s, CachedDecoder.totalSteps - base]) });
    expect(seen.length).toBe(b * maxLen);
    seen.forEach(([i, , s, ran], j) => {
      expect(s).toBe(Math.floor(j / b));
      expect(i).toBe(j % b);
      expect(ran, 'token delivered before the next step ran').toBe(s + 1);
    });
    for (let i = 0; i < b; i++) expect(seen.filter((x) => x[0] === i).map((x) => x[1])).toEqual(g.tokens[i]);
    base = CachedDecoder.totalSteps;
    const streamed: number[][] = [[], []];
    for await (const t of generateStream(w, image, { maxLen, stopAtEos: false, readEvery: 1 })) {
      expect(CachedDecoder.totalSteps - base).toBe(t.step + 1);
      streamed[t.image].push(t.token);
    }
    expect(streamed).toEqual(g.tokens);
    // Leaving the loop stops decoding: no further step runs.
    base = CachedDecoder.totalSteps;
    let n = 0;
    for await (const t of generateStream(w, image, { maxLen, stopAtEos: false, readEvery: 1 })) {
      if (++n === 2 * b) break;
      void t;
    }
    expect(CachedDecoder.totalSteps - base).toBe(2);
  });

  it('greedy with the GPU feeding its argmax (tokens read back in batches): the same tokens and scores as reading every step', async () => {
    // Both paths take the first maximum of the same f32 logits (the loop checks the GPU's
    // choice against the CPU's on every step), so tokens and scores are exactly equal; the
    // batches read back after steps 1, 3, 7, 11, … (sizes 1, 2, 4, 4 with readEvery 4).
    const R = rng('pipelined greedy');
    const V = R.int(12, 30);
    const w = Weights.init(tinyConfig({ vocab_size: V, moe_mode: R.next() < 0.5 ? 'sum' : 'weighted' }), R.int(1, 1e9));
    const b = R.int(1, 3), maxLen = Math.min(R.int(9, 16), w.cfg.text_seq_len);   // (the decoder's ceiling)
    const image = randomImage(R, b, 32);
    for (const stopAtEos of [false, true]) {
      const one = await generate(w, image, { maxLen, stopAtEos, readEvery: 1 });
      const seen: [number, number, number, number][] = [];
      const base = CachedDecoder.totalSteps;
      const batched = await generate(w, image, { maxLen, stopAtEos, readEvery: 4, onToken: (i, t, s) => seen.push([i, t, s, CachedDecoder.totalSteps - base]) });
      expect(batched.tokens).toEqual(one.tokens);
      expect(batched.scores).toEqual(one.scores);
      // Delivered in step order, each after its batch's steps ran (batch ends: 1, 3, 7, 11, …).
      const ends = [1, 3, 7, 11, 15, 19];
      seen.forEach(([, , s, ran], j) => {
        if (j) expect(s).toBeGreaterThanOrEqual(seen[j - 1][2]);
        expect(ran).toBe(Math.min(ends.find((e) => e > s)!, maxLen));
      });
      const steps = CachedDecoder.totalSteps - base, longest = Math.max(...one.tokens.map((t) => t.length));
      // At most the rest of the batch that saw the last row finish ran ahead.
      expect(steps).toBeGreaterThanOrEqual(longest);
      expect(steps).toBeLessThanOrEqual(Math.min(maxLen, ends.find((e) => e >= longest)!));
    }
    // Traced: the same maps step by step (same kernels, same caches: bit-identical), one trace
    // per step that chose a token, none for the steps run past the end.
    const t1 = await generate(w, image, { maxLen, readEvery: 1, trace: true });
    const t4 = await generate(w, image, { maxLen, readEvery: 4, trace: true });
    expect(t4.tokens).toEqual(t1.tokens);
    expect(t4.traces.length).toBe(t1.traces.length);
    for (let s = 0; s < t1.traces.length; s++) {
      const [a, c] = [t1.traces[s], t4.traces[s]];
      for (const [x, y] of [[a.cross[0], c.cross[0]], [a.self.at(-1)!, c.self.at(-1)!], [a.experts[0].weights, c.experts[0].weights]])
        expect(Array.from(await read(y)), `step ${s}`).toEqual(Array.from(await read(x)));
    }
    // Leaving a stream early frees everything it ran ahead (no error, nothing left pending).
    let n = 0;
    for await (const t of generateStream(w, image, { maxLen, stopAtEos: false, readEvery: 4 })) {
      void t;
      if (++n === b * 2) break;
    }
  });
});
