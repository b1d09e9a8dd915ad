// Decoding strategies on the KV-cached decoder: greedy, real beam search (one initial
// hypothesis, finished hypotheses kept aside, length normalisation) and sampling
// (temperature, top-p). Tokens stream through `onToken` as they are chosen.
import type { Tensor } from '../graph/tensor.ts';
import type { Weights } from '../model/weights.ts';
import { CachedDecoder, type StepTrace } from './generator.ts';

export interface DecodeOptions {
  /** Tokens to generate at most (default text_seq_len). */
  maxLen?: number;
  /** Stop a row at <eos> (default true). */
  stopAtEos?: boolean;
  /** Called with (image index, token id, step) as soon as a token is chosen (greedy/sampling). */
  onToken?: (image: number, token: number, step: number) => void;
  /** Keep per-step attention maps and expert routing (for visualisation). */
  trace?: boolean;
}

export interface Decoded {
  /** Generated ids per image (no <sos>; <eos> included when emitted). */
  tokens: number[][];
  /** Summed log-probabilities per image. */
  scores: number[];
  /** Per step traces (greedy/sampling with `trace`). */
  traces: StepTrace[];
}

function logSoftmaxRow(row: Float32Array, temperature = 1): Float64Array {
  let m = -Infinity;
  for (const v of row) m = Math.max(m, v / temperature);
  let s = 0;
  for (const v of row) s += Math.exp(v / temperature - m);
  const lse = m + Math.log(s);
  return Float64Array.from(row, (v) => v / temperature - lse);
}

function argmax(a: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
  return best;
}

/** Greedy or sampled decoding for every image in `image` ([b,3,S,S]). */
export async function generate(
  w: Weights,
  image: Tensor,
  opts: DecodeOptions & { sample?: { temperature?: number; topP?: number; seed?: number } } = {},
): Promise<Decoded> {
  const cfg = w.cfg;
  const maxLen = Math.min(opts.maxLen ?? cfg.text_seq_len, cfg.text_seq_len);
  const b = image.shape[0];
  const dec = new CachedDecoder(w, !!opts.trace);
  await dec.encode(image);
  dec.start(b, 1);
  const tokens: number[][] = Array.from({ length: b }, () => []);
  const scores = new Array(b).fill(0);
  const done = new Array(b).fill(false);
  const traces: StepTrace[] = [];
  const rnd = mulberry(opts.sample?.seed ?? 1);
  let prev = new Array(b).fill(cfg.sos_id);
  try {
    for (let step = 0; step < maxLen; step++) {
      const { logits, trace } = await dec.step(prev);
      if (trace) traces.push(trace);
      const V = cfg.vocab_size;
      prev = prev.slice();
      for (let i = 0; i < b; i++) {
        const row = logits.subarray(i * V, (i + 1) * V);
        const lp = logSoftmaxRow(row, opts.sample?.temperature ?? 1);
        const tok = opts.sample ? sampleTopP(lp, opts.sample.topP ?? 1, rnd) : argmax(row);
        prev[i] = tok;
        if (done[i]) continue;
        tokens[i].push(tok);
        scores[i] += opts.sample ? lp[tok] : logSoftmaxRow(row)[tok];
        opts.onToken?.(i, tok, step);
        if (tok === cfg.eos_id && (opts.stopAtEos ?? true)) done[i] = true;
      }
      if (done.every(Boolean)) break;
    }
  } finally {
    dec.dispose();
  }
  return { tokens, scores, traces };
}

function sampleTopP(lp: Float64Array, topP: number, rnd: () => number): number {
  const order = Array.from(lp.keys()).sort((a, b) => lp[b] - lp[a]);
  const probs = order.map((i) => Math.exp(lp[i]));
  let cum = 0, cut = order.length;
  for (let j = 0; j < order.length; j++) {
    cum += probs[j];
    if (cum >= topP) {
      cut = j + 1;
      break;
    }
  }
  const total = probs.slice(0, cut).reduce((a, c) => a + c, 0);
  let u = rnd() * total;
  for (let j = 0; j < cut; j++) {
    u -= probs[j];
    if (u <= 0) return order[j];
  }
  return order[cut - 1];
}

export interface BeamOptions {
  beamWidth: number;
  maxLen?: number;
  /** Final score = logp / length^lengthPenalty (0 = raw sum of log-probabilities). */
  lengthPenalty?: number;
  /** How many hypotheses to return per image (≤ beamWidth). */
  nBest?: number;
}

export interface Hypothesis {
  tokens: number[];
  logp: number;
  score: number;
  finished: boolean;
}

/** Beam search per image: returns the n-best hypotheses, best first. */
export async function beamSearch(w: Weights, image: Tensor, opts: BeamOptions): Promise<Hypothesis[][]> {
  const cfg = w.cfg;
  const K = opts.beamWidth, maxLen = Math.min(opts.maxLen ?? cfg.text_seq_len, cfg.text_seq_len);
  const alpha = opts.lengthPenalty ?? 1, nBest = Math.min(opts.nBest ?? K, K);
  const norm = (logp: number, len: number) => (alpha === 0 ? logp : logp / Math.pow(Math.max(len, 1), alpha));
  const b = image.shape[0];
  const dec = new CachedDecoder(w);
  await dec.encode(image);
  dec.start(b, K);
  // Alive beams per image; initially a single hypothesis (the other rows are placeholders).
  let alive: { tokens: number[]; logp: number; row: number }[][] = Array.from({ length: b }, (_, i) => [{ tokens: [], logp: 0, row: i * K }]);
  const finished: Hypothesis[][] = Array.from({ length: b }, () => []);
  const V = cfg.vocab_size;
  try {
    let feed = new Array(b * K).fill(cfg.sos_id);
    for (let step = 0; step < maxLen; step++) {
      const { logits } = await dec.step(feed);
      const parents: number[] = new Array(b * K).fill(0).map((_, r) => r);
      const nextFeed = new Array(b * K).fill(cfg.pad_id);
      const nextAlive: typeof alive = [];
      for (let i = 0; i < b; i++) {
        const cands: { parent: number; tok: number; logp: number; tokens: number[] }[] = [];
        for (const hyp of alive[i]) {
          const lp = logSoftmaxRow(logits.subarray(hyp.row * V, (hyp.row + 1) * V));
          // Only the best 2K tokens of each beam can survive.
          const top = Array.from(lp.keys()).sort((a, c) => lp[c] - lp[a]).slice(0, 2 * K);
          for (const tok of top) cands.push({ parent: hyp.row, tok, logp: hyp.logp + lp[tok], tokens: hyp.tokens });
        }
        cands.sort((a, c) => c.logp - a.logp);
        const keep: typeof alive[number] = [];
        for (const c of cands) {
          const toks = [...c.tokens, c.tok];
          if (c.tok === cfg.eos_id) {
            finished[i].push({ tokens: toks, logp: c.logp, score: norm(c.logp, toks.length), finished: true });
          } else if (keep.length < K) {
            const row = i * K + keep.length;
            parents[row] = c.parent;
            nextFeed[row] = c.tok;
            keep.push({ tokens: toks, logp: c.logp, row });
          }
          if (keep.length >= K) break;
        }
        nextAlive.push(keep);
      }
      alive = nextAlive;
      // Stop an image once its best finished hypothesis beats every alive one's best possible
      // score (log-probabilities only fall as a hypothesis grows, when lengthPenalty = 0).
      const allDone = alive.every((beams, i) => {
        if (beams.length === 0) return true;
        if (finished[i].length < K) return false;
        const bestFinished = Math.max(...finished[i].map((h) => h.score));
        return alpha === 0 && beams.every((h) => h.logp <= bestFinished);
      });
      if (allDone || step === maxLen - 1) break;
      await dec.reorder(parents);
      feed = nextFeed;
    }
  } finally {
    dec.dispose();
  }
  return alive.map((beams, i) => {
    const all = [...finished[i], ...beams.map((h) => ({ tokens: h.tokens, logp: h.logp, score: norm(h.logp, h.tokens.length), finished: false }))];
    all.sort((a, c) => c.score - a.score);
    return all.slice(0, nBest);
  });
}

function mulberry(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    let t = (s = (s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

