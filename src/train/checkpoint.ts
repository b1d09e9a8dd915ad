// Training checkpoints: one safetensors file holding the model weights (state_dict names, so
// any tool loads it as a model), the optimiser state (`optim.*`), and in the metadata the
// config, vocabulary, step/epoch, RNG seed, schedule and history. Written atomically.
import type { Tensor } from '../graph/tensor.ts';
import { readMany } from '../graph/runtime.ts';
import type { AdamW } from '../graph/ops/optim.ts';
import type { Tokenizer } from '../data/tokenizer.ts';
import { fromFloat32, type HostTensor, readSafetensors, toFloat32, writeSafetensors } from '../io/safetensors.ts';
import { readFileBytes, writeFileAtomic } from '../io/files.ts';
import type { MicarConfig } from '../model/config.ts';
import type { Weights } from '../model/weights.ts';
import { CHECKPOINT_FORMAT, type LoadedModel, metaJson, modelFromCheckpoint } from '../model/load.ts';
import type { EpochRecord } from './trainer.ts';

export { CHECKPOINT_FORMAT };

export interface TrainState {
  epoch: number;
  /** Steps already taken in `epoch` (resume point inside an epoch). */
  stepInEpoch: number;
  step: number;
  seed: number;
  best: number;
  badEpochs: number;
  history: EpochRecord[];
  done: boolean;
  /**
   * Mixed-precision training's dynamic loss scale (absent for f32 training), so --resume goes on
   * with the scale, the clean-step count toward its growth and the skipped-step count it had.
   */
  lossScale?: LossScaleState;
  /**
   * The kernel configuration each geometry class gets after this step (kernelChoices), with the
   * adapter and project version they were chosen for: --resume on the same adapter pins them, so
   * the resumed run sums in the same orders as the uninterrupted one.
   */
  kernels?: KernelChoicesState;
}

export interface KernelChoicesState {
  /** The device profile's key (adapter and driver). */
  adapter: string;
  project: string;
  choices: Record<string, string>;
}

export interface LossScaleState {
  scale: number;
  /** Clean steps since the last overflow or growth. */
  good: number;
  /** Steps skipped for overflow so far. */
  skipped: number;
}

/** Serialises weights, optimiser state and training state into checkpoint bytes. */
export async function checkpointBytes(w: Weights, opt: AdamW | null, tok: Tokenizer, state: TrainState | null): Promise<Uint8Array> {
  const tensors = await w.toStateDict();
  for (const [name, t] of tensors) {
    if (t.dtype === 'F32' && !toFloat32(t).every(Number.isFinite))
      throw new Error(`checkpoint: weight ${name} is not finite; refusing to write a checkpoint with NaN/Inf`);
  }
  let optMeta = '';
  if (opt) {
    const st = opt.stateDict();
    const entries = Object.entries(st.tensors) as [string, Tensor][];
    const data = await readMany(entries.map(([, t]) => t));
    entries.forEach(([k, t], i) => tensors.set(`optim.${k}`, fromFloat32(data[i] as Float32Array, t.shape, 'F32')));
    optMeta = JSON.stringify(st.meta);
  }
  const metadata: Record<string, string> = {
    format: CHECKPOINT_FORMAT,
    config: JSON.stringify(w.cfg),
    tokenizer: JSON.stringify(tok.toJSON()),
  };
  if (opt) metadata.optimizer = optMeta;
  if (state) metadata.state = JSON.stringify({ ...state, best: Number.isFinite(state.best) ? state.best : null });
  return writeSafetensors(tensors, metadata);
}

/** A checkpoint that could not be written; the file under `path` (if any) is the previous one. */
export class CheckpointWriteError extends Error {
  constructor(readonly path: string, readonly cause: unknown) {
    super(`could not write checkpoint ${path}: ${(cause as Error)?.message ?? cause}; the previous ${path} (if there was one) is intact`);
    this.name = 'CheckpointWriteError';
  }
}

export async function saveCheckpoint(path: string, w: Weights, opt: AdamW | null, tok: Tokenizer, state: TrainState | null): Promise<void> {
  const bytes = await checkpointBytes(w, opt, tok, state);
  try {
    // Atomic (temporary file, then rename): a failed write leaves the previous file as it was.
    await writeFileAtomic(path, bytes);
  } catch (e) {
    throw new CheckpointWriteError(path, e);
  }
}

export interface LoadedCheckpoint {
  cfg: MicarConfig;
  tokenizer: Tokenizer;
  weights: Weights;
  state: TrainState;
  /** Puts the saved optimiser state into `opt` (built over the same weights). */
  loadOptimizer(opt: AdamW, w: Weights): void;
}

/** Reads a checkpoint (or returns null when `optional` and the file does not exist). */
export async function loadCheckpoint(source: string | Uint8Array | Blob, opts: { optional?: boolean; name?: string } = {}): Promise<LoadedCheckpoint | null> {
  const file = opts.name ?? (typeof source === 'string' ? source : 'checkpoint');
  let bytes: Uint8Array;
  try {
    bytes = await readFileBytes(source as string);
  } catch (e) {
    if (opts.optional && typeof source === 'string' && /not ?found|No such file|ENOENT/i.test(String((e as Error).message ?? e))) return null;
    throw e;
  }
  return parseCheckpoint(bytes, file);
}

export function parseCheckpoint(bytes: Uint8Array, file: string): LoadedCheckpoint {
  const { tensors, metadata } = readSafetensors(bytes, file);
  if (metadata.format !== CHECKPOINT_FORMAT) throw new Error(`${file}: not a micar checkpoint (metadata format ${JSON.stringify(metadata.format)}); use a model weights loader for plain state dicts`);
  const m = modelFromCheckpoint(tensors, metadata, file);
  return { cfg: m.cfg, tokenizer: m.tokenizer, weights: m.weights, ...checkpointTraining(m) };
}

/** The training state and saved optimiser state of a model read from a checkpoint (defaults for other sources). */
export function checkpointTraining(m: LoadedModel): Pick<LoadedCheckpoint, 'state' | 'loadOptimizer'> {
  const ck = m.checkpoint;
  const file = ck?.file ?? m.source;
  const metadata = ck?.metadata ?? {};
  const raw = metadata.state ? metaJson<TrainState & { best: number | null }>(metadata, 'state', file) : null;
  const state: TrainState = raw
    ? { ...raw, best: raw.best ?? -Infinity }
    : { epoch: 0, stepInEpoch: 0, step: 0, seed: m.cfg.seed ?? 0, best: -Infinity, badEpochs: 0, history: [], done: false };
  return {
    state,
    loadOptimizer(opt: AdamW) {
      if (!metadata.optimizer) throw new Error(`${file}: checkpoint has no optimiser state (a "best" checkpoint keeps only weights, config and vocabulary; resume from "last")`);
      const data: Record<string, Float32Array> = {};
      for (const [k, t] of ck!.optim) data[k] = toFloat32(t);
      opt.loadStateDict({ tensors: data, meta: metaJson(metadata, 'optimizer', file) });
    },
  };
}
