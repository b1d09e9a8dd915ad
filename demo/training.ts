// Fine-tuning in the tab with the trainer's own step (src/train/trainer.ts trainStep: forward,
// backward, AdamW and BatchNorm updates in one submission), the trainer's shuffling, step seeds and
// StepLR schedule, a validation loss on held-out examples, pause / resume, and checkpoints in the
// CLI's format. Each step is awaited and followed by a yield to the event loop, so the page stays
// responsive; the GPU lock keeps report generation from interleaving with a step.
import { dispose, read, realize } from '../src/graph/runtime.ts';
import { AdamW } from '../src/graph/ops/optim.ts';
import { stepLr, trainStep } from '../src/train/trainer.ts';
import { epochOrder, hostBatch, toGpuBatch, type TrainExample } from '../src/train/batches.ts';
import { checkpointBytes, type TrainState } from '../src/train/checkpoint.ts';
import { prepareExamples } from '../src/train/data.ts';
import { type DatasetFormat, loadDataset, phantomSamples, type Sample } from '../src/data/datasets.ts';
import { joinPath, memoryFiles } from '../src/data/fs.ts';
import { forward } from '../src/model/micar.ts';
import type { Weights } from '../src/model/weights.ts';
import type { Tokenizer } from '../src/data/tokenizer.ts';
import type { MicarConfig } from '../src/model/config.ts';
import { gpuLock, yieldToEventLoop } from './generation.ts';
import type { DemoModel } from './model-loader.ts';

export interface TrainData {
  train: TrainExample[];
  val: TrainExample[];
  /** What the data is, in words. */
  description: string;
}

/** Preprocesses samples a few at a time, yielding between chunks so a big folder does not freeze the page. */
async function prepareInChunks(samples: Sample[], cfg: MicarConfig, files: ReturnType<typeof memoryFiles> | undefined, onProgress: (done: number, total: number) => void): Promise<TrainExample[]> {
  const out: TrainExample[] = [];
  for (let i = 0; i < samples.length; i += 8) {
    out.push(...(await prepareExamples(samples.slice(i, i + 8), cfg, files)));
    onProgress(Math.min(samples.length, i + 8), samples.length);
    await yieldToEventLoop();
  }
  return out;
}

/** The built-in dataset generated in the page at the model's image size: `count` images, the last tenth (at least 2) held out. */
export async function builtInData(cfg: MicarConfig, count: number, seed: number, onProgress: (done: number, total: number) => void = () => {}): Promise<TrainData> {
  if (!Number.isInteger(count) || count < 4) throw new Error(`built-in dataset: need at least 4 images, got ${count}`);
  const samples = phantomSamples({ count, seed, size: cfg.image_size });
  const nVal = Math.max(2, Math.floor(count / 10));
  const examples = await prepareInChunks(samples, cfg, undefined, onProgress);
  return {
    train: examples.slice(0, count - nVal),
    val: examples.slice(count - nVal),
    description: `built-in dataset: ${count - nVal} training and ${nVal} validation images (${cfg.image_size}×${cfg.image_size}, seed ${seed})`,
  };
}

/** Index file that marks a dataset folder of each format. */
const MARKERS: Record<Exclude<DatasetFormat, 'roco'>, RegExp> = {
  covctr: /(^|\/)reports\.csv$/,
  phantom: /(^|\/)reports\.csv$/,
  pgross: /(^|\/)captions\.json$/,
  mmretinal: /(^|\/)(CFP|FFA|OCT)_translated_v1\.csv$/,
};

/** A picked file with its path inside the picked folder (File.webkitRelativePath). */
export interface FolderFile {
  path: string;
  bytes: Uint8Array;
}

/**
 * A dataset folder picked with `<input webkitdirectory>`, read through the CLI's loaders
 * (src/data/datasets.ts) over in-memory files: the authors' train / val splits; at most `limit`
 * training and limit/4 validation examples are used.
 */
export async function folderData(files: FolderFile[], format: DatasetFormat, cfg: MicarConfig, limit: number, onProgress: (done: number, total: number) => void = () => {}): Promise<TrainData> {
  if (!files.length) throw new Error('the picked folder is empty');
  const map = new Map(files.map((f) => [f.path, f.bytes]));
  let dir: string;
  if (format === 'roco') dir = files[0].path.split('/')[0];
  else {
    const marks = files.map((f) => f.path).filter((p) => MARKERS[format].test(p)).sort((a, b) => a.split('/').length - b.split('/').length);
    if (!marks.length) throw new Error(`no ${format === 'pgross' ? 'captions.json' : format === 'mmretinal' ? '{CFP,FFA,OCT}_translated_v1.csv' : 'reports.csv'} in the picked folder (${files.length} files, e.g. ${files.slice(0, 3).map((f) => f.path).join(', ')})`);
    dir = marks[0].split('/').slice(0, -1).join('/');
  }
  const fs = memoryFiles(map);
  const splits = await loadDataset(format, dir, { files: fs, missingImages: 'error' });
  const train = await prepareInChunks(splits.train.slice(0, limit), cfg, fs, (d, t) => onProgress(d, t + Math.min(splits.val.length, Math.ceil(limit / 4))));
  const nVal = Math.min(splits.val.length, Math.max(1, Math.ceil(limit / 4)));
  const val = await prepareInChunks(splits.val.slice(0, nVal), cfg, fs, (d) => onProgress(train.length + d, train.length + nVal));
  return { train, val, description: `${format} folder ${joinPath(dir) || '.'}: ${train.length} of ${splits.train.length} training and ${val.length} of ${splits.val.length} validation images` };
}

/** Mean teacher-forced loss (eval mode, no update) over `examples` in batches. */
export async function validationLoss(w: Weights, tok: Tokenizer, examples: TrainExample[], batchSize: number): Promise<number> {
  const cfg = w.cfg;
  let sum = 0, n = 0;
  for (let i = 0; i < examples.length; i += batchSize) {
    const chunk = examples.slice(i, i + batchSize);
    const batch = toGpuBatch(await hostBatch(chunk, tok, cfg.text_seq_len, cfg.image_size));
    const out = forward(w, batch, { training: false });
    await realize([out.loss], { label: 'validation loss' });
    sum += (await read(out.loss))[0] * chunk.length;
    n += chunk.length;
    dispose(out.loss, batch.image, batch.inputIds, batch.labelIds);
  }
  return sum / Math.max(1, n);
}

export interface TrainSettings {
  steps: number;
  batchSize: number;
  /** Learning rate of the decoder side (the vision encoder gets v_lr/lr of it, as configured). */
  lr: number;
  /** Validation loss every this many steps (and after the last). */
  valEvery: number;
  seed: number;
}

export interface TrainProgress {
  step: number;
  /** Steps this run (0-based count done) and total. */
  done: number;
  total: number;
  loss: number;
  lr: number;
  elapsedS: number;
  etaS: number;
  paused: boolean;
}

export type SessionState = 'idle' | 'running' | 'paused' | 'stopping' | 'done' | 'failed';

/** One fine-tuning run over prepared data, controllable from the page. */
export class TrainingSession {
  readonly losses: { step: number; loss: number; ms: number }[] = [];
  readonly valLosses: { step: number; loss: number }[] = [];
  /** Example ids of each step's batch (tests replay the first one). */
  readonly batchIds: string[][] = [];
  state: SessionState = 'idle';
  /** True while the loop is parked at a pause (the step in flight, if any, has finished). */
  parked = false;
  error: Error | null = null;
  readonly opt: AdamW;
  private resumeWaiters: (() => void)[] = [];
  private trainState: TrainState;
  private runningMs = 0;

  constructor(readonly model: DemoModel, readonly data: TrainData, readonly settings: TrainSettings, private readonly onUpdate: (p: TrainProgress) => void) {
    if (data.train.length === 0) throw new Error('training: no training examples');
    if (!(settings.steps >= 1)) throw new Error(`training: steps must be ≥ 1, got ${settings.steps}`);
    this.opt = model.opt ?? newOptimizer(model, settings.lr);
    if (!model.opt && model.loadOptimizer) {
      try {
        model.loadOptimizer(this.opt, model.weights);
      } catch {
        // A checkpoint without optimiser state: start AdamW afresh.
      }
    }
    // Later runs continue with this optimiser (its moments), not the checkpoint's original state.
    model.opt = this.opt;
    model.loadOptimizer = undefined;
    const prior = model.state;
    this.trainState = { epoch: 0, stepInEpoch: 0, step: prior?.step ?? 0, seed: settings.seed, best: -Infinity, badEpochs: 0, history: prior?.history ?? [], done: false };
  }

  get stepsPerEpoch(): number {
    return Math.ceil(this.data.train.length / this.settings.batchSize);
  }

  pause(): void {
    if (this.state === 'running') this.state = 'paused';
  }

  resume(): void {
    if (this.state !== 'paused') return;
    this.state = 'running';
    for (const r of this.resumeWaiters.splice(0)) r();
  }

  stop(): void {
    if (this.state === 'running' || this.state === 'paused') {
      const wasPaused = this.state === 'paused';
      this.state = 'stopping';
      if (wasPaused) for (const r of this.resumeWaiters.splice(0)) r();
    }
  }

  /** Runs the steps; resolves when done or stopped (rejects with the step's error). */
  async run(): Promise<void> {
    const { steps, batchSize: B, valEvery } = this.settings;
    const cfg = this.model.cfg, w = this.model.weights, tok = this.model.tokenizer;
    const N = this.data.train.length, spe = this.stepsPerEpoch;
    const baseLr = this.settings.lr, vRatio = (cfg.v_lr ?? 5e-5) / (cfg.lr ?? 1e-4);
    const stepSize = cfg.step_size ?? 1, gamma = cfg.gamma ?? 0.1;
    this.state = 'running';
    let order: number[] = [];
    let orderEpoch = -1;
    let lr = baseLr;
    try {
      for (let s = 0; s < steps; s++) {
        if ((this.state as SessionState) === 'paused') {
          this.parked = true;
          this.report(s, steps, lr);
          await new Promise<void>((r) => this.resumeWaiters.push(r));
          this.parked = false;
        }
        if ((this.state as SessionState) === 'stopping') break;
        const epoch = Math.floor(s / spe), inEpoch = s % spe;
        if (epoch !== orderEpoch) {
          order = epochOrder(N, this.settings.seed, epoch);
          orderEpoch = epoch;
        }
        lr = stepLr(baseLr, epoch, stepSize, gamma);
        this.opt.setLr(0, lr * vRatio);
        this.opt.setLr(1, lr);
        const ex = order.slice(inEpoch * B, (inEpoch + 1) * B).map((i) => this.data.train[i]);
        this.batchIds.push(ex.map((e) => e.id));
        const st = this.trainState;
        const stepSeed = (Math.imul(this.settings.seed, 0x27d4eb2d) + st.step * 0x165667b1) >>> 0;
        const t0 = performance.now();
        const loss = await gpuLock.run(() => trainStep(w, this.opt, ex, tok, stepSeed));
        const ms = performance.now() - t0;
        this.runningMs += ms;
        st.step++;
        st.epoch = epoch;
        st.stepInEpoch = inEpoch + 1;
        this.model.state = { ...st, history: [...st.history] };
        this.losses.push({ step: st.step, loss, ms });
        if ((s + 1) % valEvery === 0 || s === steps - 1) {
          if (this.data.val.length) {
            const t1 = performance.now();
            const v = await gpuLock.run(() => validationLoss(w, tok, this.data.val, B));
            this.runningMs += performance.now() - t1;
            this.valLosses.push({ step: st.step, loss: v });
          }
        }
        this.report(s + 1, steps, lr);
        await yieldToEventLoop();
      }
      this.state = 'done';
      this.report(this.losses.length, steps, lr);
    } catch (e) {
      this.state = 'failed';
      this.error = e as Error;
      throw e;
    }
  }

  private report(done: number, total: number, lr: number): void {
    const per = done ? this.runningMs / 1000 / done : NaN;
    this.onUpdate({
      step: this.trainState.step,
      done,
      total,
      loss: this.losses.at(-1)?.loss ?? NaN,
      lr,
      elapsedS: this.runningMs / 1000,
      etaS: per * (total - done),
      paused: this.parked,
    });
  }

  /** Optimiser steps the model has taken in all (a checkpoint's count plus this run's). */
  get modelStep(): number {
    return this.trainState.step;
  }
}

function newOptimizer(model: DemoModel, lr: number): AdamW {
  const cfg = model.cfg;
  const { vision, other } = model.weights.trainable();
  const vRatio = (cfg.v_lr ?? 5e-5) / (cfg.lr ?? 1e-4);
  return new AdamW([{ params: vision, lr: lr * vRatio }, { params: other, lr }], {
    betas: cfg.betas ?? [0.9, 0.999], eps: cfg.eps ?? 1e-8, weightDecay: cfg.weight_decay ?? 5e-5, amsgrad: cfg.amsgrad ?? true,
  });
}

/** The model (with its optimiser and training state once trained here) as a checkpoint in the CLI's format. */
export function modelCheckpoint(model: DemoModel): Promise<Uint8Array> {
  return gpuLock.run(() => checkpointBytes(model.weights, model.opt ?? null, model.tokenizer, model.state));
}

/** Seconds as "1m05s" / "42s". */
export function formatDuration(s: number): string {
  if (!Number.isFinite(s)) return '—';
  const m = Math.floor(s / 60), r = Math.round(s % 60);
  return m ? `${m}m${String(r).padStart(2, '0')}s` : `${r}s`;
}
