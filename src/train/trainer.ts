// The training loop: seeded shuffling, one-submission training steps (forward, backward,
// AdamW, BatchNorm updates), StepLR per epoch, validation with early stopping on the authors'
// selection score, atomic checkpoints (last and best) that resume bit-exactly.
import type { Tensor } from '../graph/tensor.ts';
import { dispose, read, readMany, realize } from '../graph/runtime.ts';
import { grad } from '../graph/autograd.ts';
import { stepGradients } from './gradients.ts';
import { AdamW, clipGradNorm } from '../graph/ops/optim.ts';
import { add, scale } from '../graph/ops/elementwise.ts';
import type { Tokenizer } from '../data/tokenizer.ts';
import type { MicarConfig } from '../model/config.ts';
import { forward } from '../model/micar.ts';
import { Weights } from '../model/weights.ts';
import { epochOrder, type HostBatch, hostBatch, toGpuBatch, type TrainExample } from './batches.ts';
import { type EvalExample, predictReports, scorePredictions, type EvalScores } from './evaluate.ts';
import { CheckpointWriteError, loadCheckpoint, type LossScaleState, saveCheckpoint, type TrainState } from './checkpoint.ts';
import { lockOutDir } from './lock.ts';
import { describePlan, planTrainStep, stepDoesNotFit } from './memory.ts';
import { runtime } from '../graph/runtime.ts';
import { kernelChoices, pinKernelChoices, unpinKernelChoices } from '../graph/kernels/catalogue.ts';
import { PROJECT_VERSION } from '../graph/tuner.ts';
import { Progress } from './progress.ts';

export interface TrainOptions {
  cfg: MicarConfig;
  tokenizer: Tokenizer;
  train: TrainExample[];
  val: EvalExample[];
  /** Folder for last.safetensors, best.safetensors and history files. */
  outDir: string;
  seed: number;
  /** Resume from outDir/last.safetensors when it exists. */
  resume?: boolean;
  /** Save last.safetensors every this many steps (and at each epoch end). */
  checkpointEvery?: number;
  /** Stop after this many optimiser steps in total (tests, time-boxed runs). */
  maxSteps?: number;
  /** Stop starting new epochs after this many seconds. */
  timeBudgetS?: number;
  /** Validation examples scored per epoch (default all). */
  valLimit?: number;
  log?: (line: string) => void;
  quiet?: boolean;
  /** Start from these weights instead of a fresh init (fine-tuning). */
  initial?: Weights;
  /**
   * 'f16': mixed precision — f32 master weights and AdamW state, forward and backward in f16,
   * dynamic loss scaling (LossScaler); BatchNorm statistics stay f32. Default 'f32'.
   */
  precision?: 'f32' | 'f16';
  /** Called after each optimiser step (and its checkpoint, if one was due). */
  onStep?: (step: number) => void | Promise<void>;
  /** Mixed precision: the loss scale to start from and the clean steps before it doubles (defaults 2^15, 1000). */
  lossScale?: { initial?: number; growthInterval?: number };
}

/**
 * Dynamic loss scaling for f16 training: the loss is multiplied by `scale` before the backward
 * so small gradients survive f16; the gradients are divided by it again before AdamW. A step
 * whose gradients overflow (the GPU-side guard sees a non-finite value) is skipped and the scale
 * halved; after `growthInterval` clean steps in a row the scale doubles.
 */
export class LossScaler {
  /** Clean steps since the last overflow or growth. */
  good = 0;
  /** Steps skipped for overflow so far. */
  skipped = 0;
  constructor(public scale = 2 ** 15, readonly growthInterval = 1000, readonly minScale = 1) {}
  /** Records a step's outcome (true: its gradients overflowed and it was skipped). */
  update(overflow: boolean): void {
    if (overflow) {
      this.scale = Math.max(this.minScale, this.scale / 2);
      this.good = 0;
      this.skipped++;
    } else if (++this.good >= this.growthInterval) {
      this.scale *= 2;
      this.good = 0;
    }
  }

  /** What a checkpoint keeps (TrainState.lossScale). */
  state(): LossScaleState {
    return { scale: this.scale, good: this.good, skipped: this.skipped };
  }

  /** Continues from a checkpoint's state. */
  restore(s: LossScaleState): void {
    if (!(Number.isFinite(s.scale) && s.scale > 0) || !(Number.isInteger(s.good) && s.good >= 0) || !(Number.isInteger(s.skipped) && s.skipped >= 0))
      throw new Error(`loss scale state ${JSON.stringify(s)}: scale must be a finite number > 0, good and skipped whole numbers ≥ 0`);
    this.scale = s.scale;
    this.good = s.good;
    this.skipped = s.skipped;
  }
}

/** One training step of this configuration cannot fit the adapter's limits (refused before training). */
export class StepTooLargeError extends Error {}

/** The GPU device was lost during training; says where, and what is saved. */
export class DeviceLostError extends Error {
  constructor(message: string, readonly step: number, readonly lastCheckpoint: { path: string; step: number } | null) {
    super(message);
    this.name = 'DeviceLostError';
  }
}

/** The device's lost info once it is lost (waits briefly: loss is reported asynchronously). */
async function deviceLost(): Promise<GPUDeviceLostInfo | null> {
  let gpu;
  try {
    gpu = runtime().gpu;
  } catch {
    return null;
  }
  if (gpu.lost) return gpu.lost;
  const timeout = new Promise<null>((r) => setTimeout(() => r(null), 1000));
  return (await Promise.race([gpu.device.lost, timeout])) ?? gpu.lost;
}

export interface EpochRecord {
  epoch: number;
  step: number;
  loss: number;
  lr: number;
  val: EvalScores | null;
  seconds: number;
}

export class NonFiniteError extends Error {}

/**
 * One optimiser step in one submission; returns the loss (read back after the step). `during`
 * runs after the submission, while the GPU works (the trainer prepares the next batch there).
 */
export async function trainStep(
  w: Weights, opt: AdamW, examples: TrainExample[] | HostBatch, tok: Tokenizer, seed: number, during?: () => Promise<unknown>,
  scaler: LossScaler | null = null,
): Promise<number> {
  const cfg = w.cfg;
  if (w.dtype !== 'f32') throw new Error('trainStep: training keeps f32 master weights; this model was loaded in f16 (for inference). Load it with precision f32 and train with precision f16 for mixed precision');
  const h = Array.isArray(examples) ? await hostBatch(examples, tok, cfg.text_seq_len, cfg.image_size) : examples;
  const batch = toGpuBatch(h);
  // With a scaler: f16 forward and backward over the f32 master weights (Forward casts them).
  const out = forward(w, batch, { training: true, seed, compute: scaler ? 'f16' : undefined });
  const { vision, other } = w.trainable();
  const params = [...vision, ...other];
  const { grads, gradScale } = stepGradients(out.loss, out.f, params, scaler ? scaler.scale : null);
  let guard = out.loss;
  if (scaler) {
    // The guard turns non-finite when the loss or any (unscaled) gradient is (0·inf = NaN), so
    // the GPU skips the whole update on an overflow.
    const present = grads.filter((g): g is Tensor => !!g);
    if (present.length) guard = add(out.loss, scale(clipGradNorm(present, 1, { gradScale }).totalNorm, 0));
  }
  const gradMap = new Map<Tensor, Tensor | null>(params.map((p, i) => [p, grads[i]]));
  const effects = opt.step(gradMap, { guard, gradScale });
  await realize(guard === out.loss ? [out.loss] : [out.loss, guard], { effects: [...effects, ...out.f.bnUpdates], label: 'train step' });
  for (const p of out.f.bnTouched) w.bnCount.set(p, (w.bnCount.get(p) ?? 0) + 1);
  if (during) await during();
  // One read-back for both (each waits a fixed time beyond the GPU work: Deno ≥ 10 ms).
  const [lossV, guardV] = guard === out.loss ? [await read(out.loss)] : await readMany([out.loss, guard]);
  const loss = lossV[0];
  const overflow = scaler !== null && Number.isFinite(loss) && !Number.isFinite(guardV![0]);
  dispose(out.loss, guard, batch.image, batch.inputIds, batch.labelIds);
  if (scaler) {
    scaler.update(overflow);
    if (overflow) {
      // The GPU skipped the update: take back the step counts it recorded.
      opt.unstep();
      return loss;
    }
  }
  if (!Number.isFinite(loss)) {
    // The optimiser skipped the update (guard). Find the first non-finite gradient for the report.
    const diag = forward(w, toGpuBatch(h), { training: true, seed });
    const g = grad(diag.loss, params);
    await realize(g.filter((x): x is Tensor => !!x));
    for (let i = 0; i < params.length; i++) {
      if (!g[i]) continue;
      const v = await read(g[i]!);
      if (!v.every(Number.isFinite)) throw new NonFiniteError(`non-finite loss (${loss}); first non-finite gradient: ${w.nameOf(params[i])}; the step was skipped, no checkpoint written`);
    }
    throw new NonFiniteError(`non-finite loss (${loss}) with finite gradients; the step was skipped, no checkpoint written`);
  }
  return loss;
}

export function stepLr(base: number, epoch: number, stepSize: number, gamma: number): number {
  return base * Math.pow(gamma, Math.floor(epoch / Math.max(1, stepSize)));
}

/** Trains per the options; returns the history and the best validation score. */
export async function train(o: TrainOptions): Promise<{ weights: Weights; history: EpochRecord[]; best: number; state: TrainState }> {
  const cfg = o.cfg;
  const log = o.log ?? ((s: string) => console.log(s));
  const B = cfg.batch_size ?? 16;
  const epochs = cfg.epochs ?? 1, patience = cfg.patience ?? epochs;
  const baseLr = cfg.lr ?? 1e-4, baseVLr = cfg.v_lr ?? 5e-5;
  const stepSize = cfg.step_size ?? Math.max(1, Math.floor(epochs / 2)), gamma = cfg.gamma ?? 0.1;
  const lastPath = `${o.outDir}/last.safetensors`, bestPath = `${o.outDir}/best.safetensors`;
  const stepsPerEpoch = Math.ceil(o.train.length / B);
  if (o.train.length === 0) throw new Error('train: the training split is empty');

  let w: Weights, state: TrainState;
  const makeOpt = (weights: Weights) => {
    const { vision, other } = weights.trainable();
    return new AdamW([{ params: vision, lr: baseVLr }, { params: other, lr: baseLr }], {
      betas: cfg.betas ?? [0.9, 0.999], eps: cfg.eps ?? 1e-8, weightDecay: cfg.weight_decay ?? 5e-5, amsgrad: cfg.amsgrad ?? true,
    });
  };
  let opt: AdamW;
  /** Whether this run pinned its checkpoint's kernel choices (unpinned when it ends). */
  let pinnedHere = false;
  const release = await lockOutDir(o.outDir, log);
  try {
    return await trainLocked();
  } finally {
    if (pinnedHere) unpinKernelChoices();
    release();
  }

  async function trainLocked() {
  const resumed = o.resume ? await loadCheckpoint(lastPath, { optional: true }) : null;
  if (resumed) {
    w = resumed.weights;
    opt = makeOpt(w);
    resumed.loadOptimizer(opt, w);
    state = resumed.state;
    log(`resumed from ${lastPath}: epoch ${state.epoch}, step ${state.step}`);
    const k = state.kernels, here = runtime().profile.key;
    if (k !== undefined && !(k && typeof k === 'object' && k.choices && typeof k.choices === 'object' && !Array.isArray(k.choices))) {
      log(`kernels: ${lastPath} holds no readable kernel choices (state.kernels): kernels are chosen here, so sums may round differently from the run that wrote it`);
    } else if (k && k.adapter === here && k.project === PROJECT_VERSION) {
      pinKernelChoices(k.choices);
      pinnedHere = true;
      log(`kernels: ${Object.keys(k.choices).length} geometry classes keep the configurations of ${lastPath}`);
    } else if (k) {
      log(`kernels: ${lastPath} was written ${k.adapter !== here ? `on another adapter (${k.adapter})` : `by version ${k.project}`}: kernels are chosen here, so sums may round differently from the run that wrote it`);
    }
  } else {
    w = o.initial ?? Weights.init(cfg, o.seed);
    opt = makeOpt(w);
    state = { epoch: 0, stepInEpoch: 0, step: 0, seed: o.seed, best: -Infinity, badEpochs: 0, history: [], done: false };
  }
  const scaler = o.precision === 'f16' ? new LossScaler(o.lossScale?.initial, o.lossScale?.growthInterval) : null;
  if (scaler && resumed && state.lossScale) {
    scaler.restore(state.lossScale);
    log(`loss scale ${scaler.scale} (${scaler.good} clean steps toward doubling, ${scaler.skipped} skipped so far), from ${lastPath}`);
  } else if (scaler && resumed && state.step > 0) {
    log(`${lastPath} was written by f32 training: mixed precision starts with loss scale ${scaler.scale}`);
  }

  // Refuse before training what one step cannot fit (the scheduler's plan against the limits).
  {
    const plan = await planTrainStep(w, o.train, o.tokenizer, B, state.step > 0, cfg.amsgrad ?? true, o.precision === 'f16' ? 'f16' : undefined);
    const r = runtime();
    const refusal = stepDoesNotFit(plan, r.device.limits, r.gpu.adapterName);
    if (refusal) throw new StepTooLargeError(refusal);
    log(`memory plan: ${describePlan(plan)}`);
  }
  // The last checkpoint known intact on disk, and what the trainer is doing (for fault reports).
  let lastSaved: { path: string; step: number } | null = resumed ? { path: lastPath, step: state.step } : null;
  let doing = 'starting';
  const save = async (path: string, withTrainingState = true) => {
    doing = `writing ${path} after step ${state.step}`;
    if (scaler) state.lossScale = scaler.state();
    else delete state.lossScale;
    state.kernels = { adapter: runtime().profile.key, project: PROJECT_VERSION, choices: kernelChoices() };
    await saveCheckpoint(path, w, withTrainingState ? opt : null, o.tokenizer, withTrainingState ? state : null);
    if (path === lastPath) lastSaved = { path, step: state.step };
  };
  const progress = new Progress(o.quiet ? null : log);
  const t0 = Date.now();
  try {
    await loop();
  } catch (e) {
    const lost = e instanceof NonFiniteError ? null : await deviceLost();
    const saved = lastSaved
      ? `the last checkpoint is ${lastSaved.path} (step ${lastSaved.step}), intact: run again with --resume to continue from it`
      : 'no checkpoint was written yet: run again to start over';
    if (lost) {
      throw new DeviceLostError(`GPU device lost (${lost.reason || 'unknown'}${lost.message ? `: ${lost.message}` : ''}) while ${doing}; ${saved}`, state.step, lastSaved);
    }
    if (e instanceof CheckpointWriteError) {
      (e as Error).message = `${e.message} (while ${doing}); ${saved}`;
    }
    throw e;
  }
  return { weights: w, history: state.history, best: state.best, state };

  async function loop() {
  while (!state.done && state.epoch < epochs) {
    const epoch = state.epoch;
    const lrs = [stepLr(baseVLr, epoch, stepSize, gamma), stepLr(baseLr, epoch, stepSize, gamma)];
    opt.setLr(0, lrs[0]);
    opt.setLr(1, lrs[1]);
    const order = epochOrder(o.train.length, o.seed, epoch);
    const batchAt = (s: number) => hostBatch(order.slice(s * B, (s + 1) * B).map((i) => o.train[i]), o.tokenizer, cfg.text_seq_len, cfg.image_size);
    let next: HostBatch | null = null;
    let lossSum = 0, lossN = 0;
    const epochStart = Date.now();
    progress.start(`epoch ${epoch + 1}/${epochs}`, stepsPerEpoch, state.stepInEpoch);
    for (let s = state.stepInEpoch; s < stepsPerEpoch; s++) {
      if (o.maxSteps !== undefined && state.step >= o.maxSteps) break;
      if (o.timeBudgetS !== undefined && (Date.now() - t0) / 1000 > o.timeBudgetS) {
        // Out of time: close this epoch early (validate, checkpoint) and stop.
        state.done = true;
        state.stepInEpoch = stepsPerEpoch;
        break;
      }
      const stepSeed = (Math.imul(o.seed, 0x27d4eb2d) + state.step * 0x165667b1) >>> 0;
      const h = next ?? (await batchAt(s));
      next = null;
      // The next batch (decoded per batch for large splits) is prepared while the GPU runs this step.
      const prefetch = s + 1 < stepsPerEpoch && (o.maxSteps === undefined || state.step + 1 < o.maxSteps)
        ? async () => { next = await batchAt(s + 1); }
        : undefined;
      doing = `step ${state.step + 1} (epoch ${epoch + 1}, batch ${s + 1} of ${stepsPerEpoch})`;
      const loss = await trainStep(w, opt, h, o.tokenizer, stepSeed, prefetch, scaler);
      lossSum += loss;
      lossN++;
      state.step++;
      state.stepInEpoch = s + 1;
      progress.tick(loss, h.b * cfg.text_seq_len);
      if (o.checkpointEvery && state.step % o.checkpointEvery === 0 && state.stepInEpoch < stepsPerEpoch)
        await save(lastPath);
      await o.onStep?.(state.step);
    }
    progress.end();
    const interrupted = state.stepInEpoch < stepsPerEpoch;
    if (interrupted) {
      // maxSteps reached mid-epoch: leave a resumable checkpoint at this step.
      await save(lastPath);
      break;
    }
    let val: EvalScores | null = null;
    if (o.val.length) {
      doing = `validating after step ${state.step} (epoch ${epoch + 1})`;
      const vs = o.val.slice(0, o.valLimit ?? o.val.length);
      val = scorePredictions(await predictReports(w, o.tokenizer, vs), vs as EvalExample[]);
    }
    const rec: EpochRecord = { epoch, step: state.step, loss: lossSum / Math.max(1, lossN), lr: lrs[1], val, seconds: (Date.now() - epochStart) / 1000 };
    state.history.push(rec);
    log(`epoch ${epoch + 1}: loss ${rec.loss.toFixed(4)}` + (val ? `, val selection ${val.selection.toFixed(4)}, BLEU-4 ${val.bleu4.toFixed(4)}` + (val.finding_accuracy !== null ? `, finding acc ${val.finding_accuracy.toFixed(3)}` : '') : '') +
      (scaler ? `, loss scale ${scaler.scale} (${scaler.skipped} step${scaler.skipped === 1 ? '' : 's'} skipped for overflow so far)` : ''));
    state.epoch++;
    state.stepInEpoch = 0;
    const score = val?.selection ?? -rec.loss;
    if (score >= state.best) {
      state.best = score;
      state.badEpochs = 0;
      // best: weights, config and vocabulary only (the model to use); the optimiser state, about
      // 4× the weights with amsgrad, lives in last for --resume.
      await save(bestPath, false);
    } else if (++state.badEpochs >= patience) {
      log(`early stop: no improvement for ${patience} epochs`);
      state.done = true;
    }
    if (o.timeBudgetS !== undefined && (Date.now() - t0) / 1000 > o.timeBudgetS) state.done = true;
    await save(lastPath);
  }
  }
  }
}
