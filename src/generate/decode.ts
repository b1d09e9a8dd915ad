// Decoding strategies on the KV-cached decoder: greedy, real beam search (one initial
// hypothesis, finished hypotheses kept aside, length normalisation) and sampling
// (temperature, top-p). Tokens stream through `onToken` / `generateStream` as they are chosen.
import type { Tensor } from '../graph/tensor.ts';
import { dispose, fromData, readMany } from '../graph/runtime.ts';
import { mulberry32 } from '../graph/ops/random.ts';
import type { Weights } from '../model/weights.ts';
import { CachedDecoder, disposeStepTrace, type StepTrace } from './generator.ts';

export interface DecodeOptions {
  /** Tokens to generate at most (default and ceiling: text_seq_len). */
  maxLen?: number;
  /** Stop a row at <eos> (default true). */
  stopAtEos?: boolean;
  /** Called with (image index, token id, step) as soon as a token is chosen (greedy/sampling). */
  onToken?: (image: number, token: number, step: number) => void;
  /** Keep per-step attention maps and expert routing (for visualisation). */
  trace?: boolean;
  /**
   * Greedy decoding: read the chosen tokens back at most every this many steps
   * (default 8). The GPU feeds each step's argmax to the next, so steps run ahead of the
   * read-back: every read-back waits a fixed time beyond the GPU work (Deno ≥ 10 ms, Firefox
   * ~100 ms), paid once per batch instead of once per token. Tokens then arrive in batches (the
   * first after one step, then 2, 4, … up to this), and stopping (<eos> in every row, or
   * leaving a stream) may have run up to this many − 1 steps ahead. 1: each token is read right
   * after its step, and leaving a stream runs no further step.
   */
  readEvery?: number;
}

export interface SampleOptions {
  /** Divides the logits before the softmax (default 1). */
  temperature?: number;
  /** Nucleus: sample among the most likely tokens whose probabilities sum to ≥ topP (default 1). */
  topP?: number;
  /** Seed of the sampler (default 1): the same seed gives the same report. */
  seed?: number;
}

export type GenerateOptions = DecodeOptions & { sample?: SampleOptions };

export interface Decoded {
  /** Generated ids per image (no <sos>; <eos> included when emitted). */
  tokens: number[][];
  /** Summed log-probabilities per image (of the sampling distribution when sampling). */
  scores: number[];
  /** Per step traces (with `trace`). */
  traces: StepTrace[];
}

export interface StreamedToken {
  image: number;
  token: number;
  step: number;
}

export function logSoftmaxRow(row: ArrayLike<number>, temperature = 1): Float64Array {
  let m = -Infinity;
  for (let i = 0; i < row.length; i++) m = Math.max(m, row[i] / temperature);
  let s = 0;
  for (let i = 0; i < row.length; i++) s += Math.exp(row[i] / temperature - m);
  const lse = m + Math.log(s);
  return Float64Array.from(row as ArrayLike<number>, (v) => v / temperature - lse);
}

/** Index of the first maximum, NaN counting as the maximum (torch.argmax; the GPU's `argmax`). */
export function argmax(a: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < a.length && !Number.isNaN(a[best]); i++) if (Number.isNaN(a[i]) || a[i] > a[best]) best = i;
  return best;
}

/**
 * The greedy/sampling loop as an async generator: yields each token right after the read-back
 * of the step that chose it (every step with sampling or readEvery 1, then the next
 * step runs only when the consumer asks, so breaking out stops decoding; greedy otherwise reads
 * in batches, see `readEvery`). The result is filled into `out` as it goes.
 */
async function* decodeLoop(w: Weights, image: Tensor, opts: GenerateOptions, out: Decoded): AsyncGenerator<StreamedToken> {
  const cfg = w.cfg;
  const maxLen = Math.min(opts.maxLen ?? cfg.text_seq_len, cfg.text_seq_len);
  const stopAtEos = opts.stopAtEos ?? true;
  const temperature = opts.sample?.temperature ?? 1;
  if (!(temperature > 0)) throw new Error(`generate: temperature ${temperature} must be > 0`);
  const b = image.shape[0];
  const dec = new CachedDecoder(w, !!opts.trace);
  try {
    dispose(await dec.encode(image));
    dec.start(b, 1);
    out.tokens = Array.from({ length: b }, () => []);
    out.scores = new Array(b).fill(0);
    const done = new Array(b).fill(false);
    const rnd = mulberry32(opts.sample?.seed ?? 1);
    const V = cfg.vocab_size;
    // Finished rows keep being fed (the batch stays rectangular); their tokens are dropped.
    const prev = new Array(b).fill(cfg.sos_id);
    /** Takes one step's logits rows: chooses, records and returns the tokens to deliver; `fed` is what the GPU fed on. */
    const choose = (logits: Float32Array, step: number, fed?: Int32Array): StreamedToken[] => {
      const chosen: StreamedToken[] = [];
      for (let i = 0; i < b; i++) {
        const row = logits.subarray(i * V, (i + 1) * V);
        const lp = logSoftmaxRow(row, opts.sample ? temperature : 1);
        const tok = opts.sample ? sampleTopP(lp, opts.sample.topP ?? 1, rnd) : argmax(row);
        // The same rule over the same f32 values: a difference is a bug, not rounding.
        if (fed && fed[i] !== tok) throw new Error(`generate: step ${step}, row ${i}: the GPU's argmax fed token ${fed[i]}, the logits' first maximum is ${tok}`);
        prev[i] = tok;
        if (done[i]) continue;
        out.tokens[i].push(tok);
        out.scores[i] += lp[tok];
        if (tok === cfg.eos_id && stopAtEos) done[i] = true;
        chosen.push({ image: i, token: tok, step });
      }
      return chosen;
    };
    const readEvery = Math.max(1, Math.floor(opts.readEvery ?? 8));
    if (!opts.sample && readEvery > 1) {
      // Greedy on the GPU: each step's argmax feeds the next; logits are read in batches. The
      // traces of steps run past the end (every row finished) are freed, not returned.
      let feed = fromData(new Int32Array(b).fill(cfg.sos_id), [b, 1], 'i32');
      const ahead: { logits: Tensor; next: Tensor; trace: StepTrace | null; taken?: true }[] = [];
      try {
        for (let step = 0, batch = 1; step < maxLen; step++) {
          const s = await dec.stepOnDevice(feed);
          if (step === 0) dispose(feed);
          ahead.push(s);
          feed = s.next;
          if (ahead.length < batch && step < maxLen - 1) continue;
          const vals = await readMany(ahead.flatMap((x) => [x.logits, x.next]));
          const first = step + 1 - ahead.length;
          for (let j = 0; j < ahead.length && !done.every(Boolean); j++) {
            const x = ahead[j];
            x.taken = true;
            if (x.trace) out.traces.push(x.trace);
            for (const c of choose(vals[2 * j] as Float32Array, first + j, vals[2 * j + 1] as Int32Array)) yield c;
          }
          // (the last step's `next` is `feed`: kept for the next step)
          for (const x of ahead) if (!x.taken && x.trace) disposeStepTrace(x.trace);
          dispose(...ahead.map((x) => x.logits), ...ahead.slice(0, -1).map((x) => x.next));
          ahead.length = 0;
          if (done.every(Boolean)) break;
          batch = Math.min(2 * batch, readEvery);
        }
      } finally {
        for (const x of ahead) if (!x.taken && x.trace) disposeStepTrace(x.trace);
        dispose(...ahead.map((x) => x.logits), ...ahead.map((x) => x.next), feed);   // (dispose is idempotent)
      }
      return;
    }
    for (let step = 0; step < maxLen; step++) {
      const { logits, trace } = await dec.step(prev);
      if (trace) out.traces.push(trace);
      for (const c of choose(logits, step)) yield c;
      if (done.every(Boolean)) break;
    }
  } finally {
    dec.dispose();
  }
}

/** Greedy (or sampled, with `sample`) decoding for every image in `image` ([b,3,S,S]). */
export async function generate(w: Weights, image: Tensor, opts: GenerateOptions = {}): Promise<Decoded> {
  const out: Decoded = { tokens: [], scores: [], traces: [] };
  for await (const t of decodeLoop(w, image, opts, out)) opts.onToken?.(t.image, t.token, t.step);
  return out;
}

/**
 * The same decoding as an async iterable of tokens, in the order they are produced; each
 * arrives right after its step, and leaving the loop early stops decoding.
 */
export function generateStream(w: Weights, image: Tensor, opts: GenerateOptions = {}): AsyncIterable<StreamedToken> {
  return { [Symbol.asyncIterator]: () => decodeLoop(w, image, opts, { tokens: [], scores: [], traces: [] }) };
}

/** Nucleus sampling from log-probabilities: the smallest most-likely set with mass ≥ topP. */
function sampleTopP(lp: Float64Array, topP: number, rnd: () => number): number {
  const order = Array.from(lp.keys()).sort((a, b) => lp[b] - lp[a] || a - b);
  const probs = order.map((i) => Math.exp(lp[i]));
  let cum = 0, cut = order.length;
  for (let j = 0; j < order.length; j++) {
    cum += probs[j];
    if (cum >= topP) {
      cut = j + 1;
      break;
    }
  }
  let total = 0;
  for (let j = 0; j < cut; j++) total += probs[j];
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
  /** Final score = logp / length^lengthPenalty (0 = raw sum of log-probabilities; default 1). */
  lengthPenalty?: number;
  /** How many hypotheses to return per image (≤ beamWidth). */
  nBest?: number;
  /** Finish a hypothesis at <eos> (default true); false treats <eos> as an ordinary token. */
  stopAtEos?: boolean;
}

export interface Hypothesis {
  tokens: number[];
  logp: number;
  score: number;
  finished: boolean;
}

/**
 * Beam search per image, returning the n-best hypotheses, best first. Starts from one
 * hypothesis (<sos>); each step extends every alive hypothesis, ranks the candidates by
 * summed log-probability, moves those ending in <eos> (ranked before the K-th alive one) to
 * the finished set and keeps the best K others alive. Hypotheses still alive at maxLen are
 * returned unfinished. Final ranking by logp / length^lengthPenalty (length counts <eos>).
 * An image stops early once nBest finished hypotheses score at least the best score any
 * alive one could still reach (logp only falls, so logp / maxLen^α bounds it).
 */
export async function beamSearch(w: Weights, image: Tensor, opts: BeamOptions): Promise<Hypothesis[][]> {
  const cfg = w.cfg;
  const K = opts.beamWidth, maxLen = Math.min(opts.maxLen ?? cfg.text_seq_len, cfg.text_seq_len);
  if (!Number.isInteger(K) || K < 1) throw new Error(`beamSearch: beamWidth ${K} must be a positive integer`);
  const alpha = opts.lengthPenalty ?? 1, nBest = Math.min(opts.nBest ?? K, K);
  const stopAtEos = opts.stopAtEos ?? true;
  const norm = (logp: number, len: number) => (alpha === 0 ? logp : logp / Math.pow(Math.max(len, 1), alpha));
  const b = image.shape[0];
  const V = cfg.vocab_size;
  const dec = new CachedDecoder(w);
  type Alive = { tokens: number[]; logp: number };
  let alive: Alive[][] = Array.from({ length: b }, () => [{ tokens: [], logp: 0 }]);
  const finished: Hypothesis[][] = Array.from({ length: b }, () => []);
  try {
    dispose(await dec.encode(image));
    dec.start(b, 1);
    // Decoder rows are the alive hypotheses of every image, flattened in image order.
    let feed: number[] = new Array(b).fill(cfg.sos_id);
    for (let step = 0; step < maxLen; step++) {
      const { logits } = await dec.step(feed);
      const parents: number[] = [];
      const nextFeed: number[] = [];
      const nextAlive: Alive[][] = [];
      const owner: number[] = [];
      let row = 0;
      for (let i = 0; i < b; i++) {
        const cands: { parent: number; tok: number; logp: number; from: Alive }[] = [];
        for (const hyp of alive[i]) {
          const lp = logSoftmaxRow(logits.subarray(row * V, (row + 1) * V));
          // The K best non-<eos> candidates lie within each beam's best K+1 tokens.
          const top = Array.from(lp.keys()).sort((a, c) => lp[c] - lp[a] || a - c).slice(0, K + 1);
          for (const tok of top) cands.push({ parent: row, tok, logp: hyp.logp + lp[tok], from: hyp });
          row++;
        }
        cands.sort((a, c) => c.logp - a.logp);
        const keep: Alive[] = [];
        for (const c of cands) {
          if (keep.length >= K) break;
          const toks = [...c.from.tokens, c.tok];
          if (stopAtEos && c.tok === cfg.eos_id) {
            finished[i].push({ tokens: toks, logp: c.logp, score: norm(c.logp, toks.length), finished: true });
            continue;
          }
          keep.push({ tokens: toks, logp: c.logp });
          parents.push(c.parent);
          nextFeed.push(c.tok);
          owner.push(i);
        }
        nextAlive.push(keep);
      }
      alive = nextAlive;
      if (step === maxLen - 1) break;
      // Early stop per image (exact for the returned n-best, see above): its alive
      // hypotheses are returned unfinished (they cannot outrank the n-best) and its rows dropped.
      for (let i = 0; i < b; i++) {
        if (alive[i].length === 0) continue;
        const scores = finished[i].map((h) => h.score).sort((a, c) => c - a);
        const bound = Math.max(...alive[i].map((h) => norm(h.logp, alpha === 0 ? 1 : maxLen)));
        if (scores.length >= nBest && scores[nBest - 1] >= bound) {
          for (const h of alive[i]) finished[i].push({ tokens: h.tokens, logp: h.logp, score: norm(h.logp, h.tokens.length), finished: false });
          alive[i] = [];
        }
      }
      const rows = owner.map((_, j) => j).filter((j) => alive[owner[j]].length > 0);
      if (rows.length === 0) break;
      await dec.reorder(rows.map((j) => parents[j]));
      feed = rows.map((j) => nextFeed[j]);
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
