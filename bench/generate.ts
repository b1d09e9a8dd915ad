// Generation benchmark: beam search (beam 3) with the KV-cached decoder against full-prefix
// recomputation (decodeText over the whole prefix every step, as the authors decode), in the
// same process, on the tiny config and on a paper-width decoder (d_model 512, d_latent 768,
// 8 heads, 2 layers, 8 experts, k 2, T 80, vocab 1000; small backbone: only decoding is timed).
// Also the cost of a step at the last position against the first (same number of rows).
// Greedy decoding too: the GPU's argmax feeding the next step with the tokens read back in
// batches (readEvery 8, the default) against a read-back after every step (readEvery 1),
// alternating, best of each: each read-back waits a fixed time beyond the GPU work (Deno: its
// map poll sleeps 10 ms).
// Usage: npm run bench -- generate [--quick]   (--quick: T 24 for the paper-width decoder)
import { dispose, fromData, read, realize, sync } from '../src/graph/runtime.ts';
import type { Tensor } from '../src/graph/tensor.ts';
import { concat } from '../src/graph/ops/shape.ts';
import { normaliseConfig, type MicarConfig } from '../src/model/config.ts';
import { Weights } from '../src/model/weights.ts';
import { Forward } from '../src/model/context.ts';
import { decodeText, decoderMask, encodeImage } from '../src/model/micar.ts';
import { CachedDecoder } from '../src/generate/generator.ts';
import { beamSearch, generate } from '../src/generate/decode.ts';
import { now, printHeader, printJson, printTable, setup } from './harness.ts';

declare const Deno: { readTextFileSync(p: string | URL): string };

interface Result {
  name: string;
  T: number;
  tokensPerS: number;
  recomputeTokensPerS: number;
  speedup: number;
  lastOverFirst: number;
  recomputeLastOverFirst: number;
  stepMsFirst: number;
  stepMsLast: number;
}

function randomImage(b: number, S: number): Tensor {
  let s = 12345;
  const rnd = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32) * 2 - 1;
  return fromData(Float32Array.from({ length: b * 3 * S * S }, rnd), [b, 3, S, S]);
}

/** Best (minimum) over repetitions of each step's time, then the mean over a window at each end. */
function endsRatio(perRep: number[][], window: number): { first: number; last: number } {
  const n = perRep[0].length;
  const best = Array.from({ length: n }, (_, j) => Math.min(...perRep.map((r) => r[j])));
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  return { first: mean(best.slice(0, window)), last: mean(best.slice(n - window)) };
}

async function benchCase(name: string, cfg: MicarConfig, beam: number, reps: number, recomputeReps: number): Promise<Result> {
  const T = cfg.text_seq_len, V = cfg.vocab_size;
  const w = Weights.init(cfg, 7);
  const image = randomImage(1, cfg.image_size);

  // 1. KV-cached beam search, end to end (encode timed separately and subtracted).
  //    stopAtEos false: every run decodes all T positions (random weights would stop anywhere).
  const proto = CachedDecoder.prototype;
  const encode = proto.encode;
  let encMs = 0;
  proto.encode = async function (this: CachedDecoder, img: Tensor) {
    const t0 = now();
    const r = await encode.call(this, img);
    await sync(); // the encoder's GPU work belongs to encoding, not to the first step
    encMs += now() - t0;
    return r;
  };
  const decodeMs: number[] = [];
  try {
    for (let r = 0; r <= reps; r++) {
      encMs = 0;
      const t0 = now();
      const out = await beamSearch(w, image, { beamWidth: beam, maxLen: T, stopAtEos: false, lengthPenalty: 1 });
      const total = now() - t0;
      if (out[0][0].tokens.length !== T) throw new Error(`bench generate: beam search produced ${out[0][0].tokens.length} tokens, expected ${T}`);
      if (r > 0) decodeMs.push(total - encMs); // run 0 warms up pipelines and the pool
    }
  } finally {
    proto.encode = encode;
  }
  const cachedMs = Math.min(...decodeMs);

  // 2. Per-position cost with a fixed number of rows: beam rows reordered every step.
  const stepReps: number[][] = [];
  for (let r = 0; r < reps; r++) {
    const dec = new CachedDecoder(w);
    dispose(await dec.encode(image));
    await sync();
    dec.start(1, beam);
    const times: number[] = [];
    let feed = new Array(beam).fill(cfg.sos_id);
    for (let t = 0; t < T; t++) {
      const t0 = now();
      const { logits } = await dec.step(feed);
      times.push(now() - t0);
      feed = feed.map((_, j) => (j * 7 + t) % V);
      void logits;
      await dec.reorder(Array.from({ length: beam }, (_, j) => (j + t) % beam));
    }
    dec.dispose();
    stepReps.push(times);
  }
  const window = Math.min(3, Math.max(1, Math.floor(T / 10)));
  const ends = endsRatio(stepReps, window);

  // 3. Full-prefix recomputation for the same beam rows: decodeText over [beam, t] each step.
  const f = new Forward(w);
  const img1 = encodeImage(f, image).out;
  const img = concat(new Array(beam).fill(img1), 0).keep();
  await realize([img]);
  const recMs: number[] = [];
  const recSteps: number[][] = [];
  const seqs = Array.from({ length: beam }, () => [cfg.sos_id]);
  for (let t = 1; t <= T; t++) for (const s of seqs) if (s.length < t) s.push((s.length * 5 + 3) % V);
  for (let r = 0; r <= recomputeReps; r++) {
    const steps = r === 0 ? Math.min(T, 4) : T; // run 0 compiles the pipelines on a short prefix
    const times: number[] = [];
    const t0 = now();
    for (let t = 1; t <= steps; t++) {
      const s0 = now();
      const ids = fromData(Int32Array.from(seqs.flatMap((s) => s.slice(0, t))), [beam, t], 'i32');
      const mask = decoderMask(new Int32Array(beam * t).fill(1), beam, t);
      const dec = decodeText(new Forward(w), img, ids, mask);
      const logits = (await read(dec.logits)) as Float32Array;
      if (logits.length !== beam * t * V) throw new Error('bench generate: bad logits size');
      dispose(dec.logits, ids, mask);
      times.push(now() - s0);
    }
    if (r > 0) {
      recMs.push(now() - t0);
      recSteps.push(times);
    }
  }
  dispose(img);
  const recomputeMs = Math.min(...recMs);
  const recEnds = endsRatio(recSteps, window);
  return {
    name, T,
    tokensPerS: T / (cachedMs / 1000),
    recomputeTokensPerS: T / (recomputeMs / 1000),
    speedup: recomputeMs / cachedMs,
    lastOverFirst: ends.last / ends.first,
    recomputeLastOverFirst: recEnds.last / recEnds.first,
    stepMsFirst: ends.first,
    stepMsLast: ends.last,
  };
}

/** Greedy tokens per second (one image, all T positions) read back every step vs in batches of 8. */
async function greedyCase(cfg: MicarConfig, reps: number): Promise<{ everyStep: number; batched: number }> {
  const w = Weights.init(cfg, 7);
  const image = randomImage(1, cfg.image_size);
  const T = cfg.text_seq_len;
  const best = { 1: Infinity, 8: Infinity } as Record<1 | 8, number>;
  for (let r = 0; r <= reps; r++) {
    for (const readEvery of r % 2 ? [8, 1] as const : [1, 8] as const) {
      const t0 = now();
      const out = await generate(w, image, { maxLen: T, stopAtEos: false, readEvery });
      const ms = now() - t0;
      if (out.tokens[0].length !== T) throw new Error(`bench generate: greedy produced ${out.tokens[0].length} tokens, expected ${T}`);
      if (r > 0) best[readEvery] = Math.min(best[readEvery], ms);   // (round 0 compiles)
    }
  }
  dispose(image);
  return { everyStep: T / (best[1] / 1000), batched: T / (best[8] / 1000) };
}

export async function main(args: string[]): Promise<void> {
  const quick = args.includes('--quick');
  await setup();
  printHeader('generate');
  const tinyRaw = JSON.parse(Deno.readTextFileSync(new URL('../configs/tiny.json', import.meta.url)));
  const tiny = normaliseConfig({ ...tinyRaw, vocab_size: 60, dropout: 0, attention_dropout: 0 }, 'configs/tiny.json');
  const paperWidth = normaliseConfig({
    ...tinyRaw, name: 'paper-width decoder', backbone: 'resnet10', image_size: 64, resize_size: 64, d_v: 64,
    d_model: 512, d_latent: 768, num_heads: 8, qk_nope_dim: 48, qk_rope_dim: 48, d_ff: 2048, num_layers: 2,
    num_experts: 8, k: 2, moe_mode: 'sum', text_seq_len: quick ? 24 : 80, vocab_size: 1000, dropout: 0, attention_dropout: 0,
  }, 'paper-width decoder');
  const rows: Result[] = [];
  const progress = (r: Result) => console.log(`${r.name}: ${r.tokensPerS.toFixed(2)} tok/s cached, ${r.recomputeTokensPerS.toFixed(3)} recomputed, speedup ${r.speedup.toFixed(2)}`);
  rows.push(await benchCase('tiny (T 32, V 60)', tiny, 3, 3, 2));
  progress(rows[0]);
  rows.push(await benchCase(`paper-width (T ${paperWidth.text_seq_len}, V 1000)`, paperWidth, 3, 2, 1));
  printTable(rows.map((r) => ({
    case: r.name, 'tok/s cached': r.tokensPerS, 'tok/s recompute': r.recomputeTokensPerS, speedup: r.speedup,
    'step ms first': r.stepMsFirst, 'step ms last': r.stepMsLast, 'last/first': r.lastOverFirst, 'recompute last/first': r.recomputeLastOverFirst,
  })));
  console.log('beam 3, one image; tokens/s = output positions per second of decoding (image encoding excluded); ' +
    'last/first = mean of the best step times over the last vs the first few positions (3 rows every step)');
  // Greedy (image encoding included: one report end to end).
  const gTiny = await greedyCase(tiny, 3), gPaper = await greedyCase(paperWidth, 2);
  for (const [name, g] of [['tiny', gTiny], ['paper-width', gPaper]] as const)
    console.log(`greedy ${name}: ${g.batched.toFixed(2)} tok/s reading tokens back in batches of 8, ${g.everyStep.toFixed(2)} reading after every step (${(g.batched / g.everyStep).toFixed(2)}×)`);
  const p = rows[rows.length - 1];
  printJson({
    bench: 'generate', tokens_per_s: p.tokensPerS, recompute_tokens_per_s: p.recomputeTokensPerS, speedup: p.speedup,
    last_over_first: p.lastOverFirst, T: p.T, tiny_speedup: rows[0].speedup,
    greedy_tokens_per_s: +gPaper.batched.toFixed(2), greedy_tokens_per_s_read_every_step: +gPaper.everyStep.toFixed(2),
    greedy_batched_speedup: +(gPaper.batched / gPaper.everyStep).toFixed(3), tiny_greedy_batched_speedup: +(gTiny.batched / gTiny.everyStep).toFixed(3),
  });
}
