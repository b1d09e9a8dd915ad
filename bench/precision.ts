// f16 against f32 in one run, on the local adapter: the runtime's peak GPU bytes (buffer pool,
// size classes included) for a paper-config report (weights, activations, KV cache; one image,
// beam 3, all text_seq_len positions) and for one tiny-config training step (f16 = mixed
// precision: f32 master weights and AdamW state, f16 forward/backward), report seconds, and
// how far the f16 model's logits are from the f32 model's on the same tokens.
//
// Weights: the golden paper case when MICAR_PAPER_WEIGHTS (or /tmp/paperw/paper/weights.safetensors)
// exists, else a fresh initialisation of the paper config (memory and speed do not depend on the
// values; agreement on random weights is a weaker check: logits are flat, ties more frequent).
// Usage: npm run bench -- precision
import { dispose, fromData, init, markPeak, peakSinceMark, read, runtime, sync } from '../src/graph/runtime.ts';
import type { Tensor } from '../src/graph/tensor.ts';
import { readSafetensors } from '../src/io/safetensors.ts';
import { normaliseConfig } from '../src/model/config.ts';
import { presetConfig } from '../src/model/presets.ts';
import { Weights } from '../src/model/weights.ts';
import { beamSearch } from '../src/generate/decode.ts';
import { Forward } from '../src/model/context.ts';
import { decoderMask, decodeText, encodeImage } from '../src/model/micar.ts';
import { AdamW } from '../src/graph/ops/optim.ts';
import { LossScaler, trainStep } from '../src/train/trainer.ts';
import { prepareExamples } from '../src/train/data.ts';
import { phantomSamples } from '../src/data/datasets.ts';
import { Tokenizer } from '../src/data/tokenizer.ts';
import { now, printHeader, printJson, setup } from './harness.ts';

declare const Deno: { readFileSync(p: string | URL): Uint8Array; readTextFileSync(p: string | URL): string; statSync(p: string): unknown; env: { get(k: string): string | undefined } };

const MiB = 2 ** 20;

/**
 * Frees what earlier phases dropped without disposing (their buffers return to the pool only
 * when the collector finalises the tensors): a full collection, the finalisers' turn, a sync.
 * Without it a phase's peak depended on when the previous phase's garbage was collected
 * (the f16 report's peak read 412.5 or 508.5 MiB in runs of code that allocates the same).
 */
async function settle(): Promise<void> {
  (globalThis as { gc?: () => void }).gc?.();
  await new Promise((r) => setTimeout(r, 0));
  await sync();
}

function paperWeightsPath(): string | null {
  const p = Deno.env.get('MICAR_PAPER_WEIGHTS') ?? '/tmp/paperw/paper/weights.safetensors';
  try {
    Deno.statSync(p);
    return p;
  } catch {
    return null;
  }
}

export async function main(): Promise<void> {
  await init();
  await setup();
  printHeader('precision');
  if (!runtime().gpu.hasF16) throw new Error(`bench precision: the adapter "${runtime().gpu.adapterName}" has no shader-f16`);
  const rawCfg = JSON.parse(Deno.readTextFileSync(new URL('../../shared/golden/paper/config.json', import.meta.url)));
  const cfg = normaliseConfig({ ...rawCfg, dropout: 0, attention_dropout: 0 }, 'golden paper config');
  const wPath = paperWeightsPath();
  const sd = wPath ? readSafetensors(Deno.readFileSync(wPath), wPath).tensors : null;
  console.log(`paper config (${cfg.backbone}, d_model ${cfg.d_model}, vocab ${cfg.vocab_size}), weights: ${wPath ?? 'fresh init (no paper weights file)'}`);
  let s = 99;
  const rnd = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32) * 4 - 2;
  const S = cfg.image_size, beam = cfg.beam_width ?? 3, T = cfg.text_seq_len;
  const pixels = Float32Array.from({ length: 3 * S * S }, rnd);

  // Inference: one report per precision (weights resident, beam search with the KV cache).
  const runs: Record<string, { peak: number; seconds: number; logits: Float32Array; tokens: number[] }> = {};
  let tokens: number[] | null = null;
  for (const dtype of ['f32', 'f16'] as const) {
    await settle();
    markPeak();
    const base = runtime().pool.liveBytes;
    const w = sd ? await Weights.fromStateDict(cfg, sd, wPath!, { dtype }).ready() : Weights.init(cfg, 7, dtype);
    const image: Tensor = fromData(pixels, [1, 3, S, S], 'f32', 'image');
    await beamSearch(w, image, { beamWidth: beam, maxLen: 2, stopAtEos: false }); // warm-up: pipelines
    const t0 = now();
    const hyps = await beamSearch(w, image, { beamWidth: beam, maxLen: T, stopAtEos: false });
    const seconds = (now() - t0) / 1000;
    const best = hyps[0][0].tokens;
    tokens ??= best; // the f32 report's tokens: both models are scored on them
    // Teacher-forced logits on those tokens (argmax agreement and rel L2 between precisions).
    const ids = fromData(Int32Array.from([cfg.sos_id, ...tokens.slice(0, T - 1)]), [1, T], 'i32');
    const f = new Forward(w);
    const logits = decodeText(f, encodeImage(f, image).out, ids, decoderMask(new Int32Array(T).fill(1), 1, T)).logits;
    const l = Float32Array.from(await read(logits));
    const peak = peakSinceMark() - base;
    runs[dtype] = { peak, seconds, logits: l, tokens: best };
    console.log(`${dtype}: report ${seconds.toFixed(2)} s (beam ${beam}, ${T} positions), peak GPU ${(peak / MiB).toFixed(1)} MiB`);
    dispose(image, ids, logits);
    w.dispose();
  }
  const V = cfg.vocab_size;
  let num = 0, den = 0, agree = 0;
  const a = runs.f32.logits, b = runs.f16.logits;
  for (let i = 0; i < a.length; i++) {
    num += (b[i] - a[i]) ** 2;
    den += a[i] ** 2;
  }
  for (let t = 0; t < T; t++) {
    const arg = (x: Float32Array) => {
      let k = 0;
      for (let v = 1; v < V; v++) if (x[t * V + v] > x[t * V + k]) k = v;
      return k;
    };
    if (arg(a) === arg(b)) agree++;
  }
  const sameReport = runs.f16.tokens.every((x, i) => x === runs.f32.tokens[i]);
  const bad = b.filter((v) => !Number.isFinite(v)).length;
  if (bad) console.log(`f16 logits: ${bad} of ${b.length} non-finite — an activation exceeded f16's range (65504); with fresh-init weights the untrained backbone's activations (eval-mode BatchNorm with running stats 0/1) grow past it, so compare on trained (golden paper) weights`);
  console.log(`logits rel L2 f16 vs f32 ${Math.sqrt(num / den).toExponential(3)}; teacher-forced argmax agreement ${agree}/${T}; beam-search reports ${sameReport ? 'identical' : 'differ'}`);

  // Training: one tiny-config step at the tiny image size, f32 vs mixed precision, at the CLI's
  // default batch (16; the headline ratio) and at 32 and 64. Both hold the same f32 master
  // weights and amsgrad AdamW state (the mixed precision keeps them f32): that fixed part
  // bounds the ratio from below at small batches, so the step's own buffers (activations,
  // gradients, casts, scratch: peak minus weights and optimiser state) are reported apart.
  const train: Record<number, Record<string, { peak: number; fixed: number }>> = {};
  for (const B of [16, 32, 64]) {
    const samples = phantomSamples({ count: B, seed: 3, size: 64 });
    const tok = Tokenizer.build(samples.map((x) => x.report), 1, 'whitespace');
    const tcfg = normaliseConfig({ ...presetConfig('tiny'), vocab_size: tok.vocabSize }, 'tiny');
    const examples = await prepareExamples(samples, tcfg);
    train[B] = {};
    for (const dtype of ['f32', 'f16'] as const) {
      await settle();
      const before = runtime().pool.liveBytes;
      markPeak();
      const w = Weights.init(tcfg, 3);
      const { vision, other } = w.trainable();
      const opt = new AdamW([{ params: vision, lr: 1e-4 }, { params: other, lr: 1e-4 }], { betas: [0.9, 0.999], eps: 1e-8, weightDecay: 5e-5, amsgrad: true });
      const t0 = now();
      await trainStep(w, opt, examples, tok, 1, undefined, dtype === 'f16' ? new LossScaler() : null);
      await sync();
      const peak = peakSinceMark() - before;
      const st = opt.stateDict().tensors;
      // Weights and optimiser state as the pool holds them (size classes included).
      const fixed = [...vision, ...other, ...Object.values(st)].reduce((s, t) => s + (t.storage?.buffer.size ?? 0), 0);
      train[B][dtype] = { peak, fixed };
      console.log(`tiny training step, batch ${B}, ${dtype === 'f16' ? 'mixed f16' : 'f32'}: ${((now() - t0) / 1000).toFixed(2)} s, peak GPU ${(peak / MiB).toFixed(1)} MiB, of which ${(fixed / MiB).toFixed(1)} MiB f32 weights and AdamW state`);
      dispose(...Object.values(st));
      w.dispose();
    }
    const r = train[B];
    console.log(`  batch ${B}: peak ratio ${(r.f16.peak / r.f32.peak).toFixed(3)}; step buffers ${((r.f16.peak - r.f16.fixed) / MiB).toFixed(1)} / ${((r.f32.peak - r.f32.fixed) / MiB).toFixed(1)} MiB = ${((r.f16.peak - r.f16.fixed) / (r.f32.peak - r.f32.fixed)).toFixed(3)}`);
  }
  const ratio = (B: number) => Math.round((train[B].f16.peak / train[B].f32.peak) * 1e4) / 1e4;
  const stepRatio = (B: number) => Math.round(((train[B].f16.peak - train[B].f16.fixed) / (train[B].f32.peak - train[B].f32.fixed)) * 1e4) / 1e4;
  printJson({
    bench: 'precision',
    peak_ratio_inference: runs.f16.peak / runs.f32.peak,
    peak_ratio_training: ratio(16),
    peak_ratio_training_by_batch: { 16: ratio(16), 32: ratio(32), 64: ratio(64) },
    step_buffers_ratio_training_by_batch: { 16: stepRatio(16), 32: stepRatio(32), 64: stepRatio(64) },
    report_s_f32: runs.f32.seconds,
    report_s_f16: runs.f16.seconds,
    logits_rel_l2: Math.sqrt(num / den),
    greedy_agreement: agree / T,
    peak_mib_inference_f32: runs.f32.peak / MiB, peak_mib_inference_f16: runs.f16.peak / MiB,
    peak_mib_training_f32: train[16].f32.peak / MiB, peak_mib_training_f16: train[16].f16.peak / MiB,
    fixed_mib_training: train[16].f32.fixed / MiB,
    adapter: runtime().gpu.adapterName, weights: wPath ? 'paper golden' : 'fresh init',
  });
}
