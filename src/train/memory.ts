// Refusing a training step that cannot fit before training starts: the scheduler's plan of one
// step (planMemory: the same schedule and liveness as realize, sizes only) against the
// adapter's limits. WebGPU reports per-buffer limits, not the device's total memory, so the
// total is stated, not checked.
import { dispose, planMemory, type MemoryPlan } from '../graph/runtime.ts';
import { stepGradients } from './gradients.ts';
import type { Tokenizer } from '../data/tokenizer.ts';
import { forward } from '../model/micar.ts';
import type { Weights } from '../model/weights.ts';
import { hostBatch, toGpuBatch, type TrainExample } from './batches.ts';

export interface AdapterLimits {
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
}

export interface StepPlan extends MemoryPlan {
  /** Optimiser state still to be allocated on the first step (AdamW moments). */
  optimizerBytes: number;
  batch: number;
}

const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB (${b} bytes)`;

/** Plans one training step on the first `batch` examples (nothing runs; the batch's inputs are uploaded and freed). */
export async function planTrainStep(
  w: Weights, examples: TrainExample[], tok: Tokenizer, batch: number, optimizerStateAllocated: boolean, amsgrad: boolean, compute?: 'f16',
): Promise<StepPlan> {
  const cfg = w.cfg;
  const h = await hostBatch(examples.slice(0, batch), tok, cfg.text_seq_len, cfg.image_size);
  const b = toGpuBatch(h);
  try {
    // The same forward as the step (f16 compute under mixed precision: smaller activations).
    const out = forward(w, b, { training: true, seed: 0, compute });
    const { vision, other } = w.trainable();
    const params = [...vision, ...other];
    const grads = stepGradients(out.loss, out.f, params, compute === 'f16' ? 1 : null).grads.filter((g) => g !== null);
    const plan = planMemory([out.loss, ...grads], out.f.bnUpdates);
    const paramBytes = params.reduce((s, p) => s + p.bytes, 0);
    return { ...plan, optimizerBytes: optimizerStateAllocated ? 0 : paramBytes * (amsgrad ? 3 : 2), batch: h.b };
  } finally {
    dispose(b.image, b.inputIds, b.labelIds);
  }
}

/** One line describing the plan. */
export function describePlan(p: StepPlan): string {
  const total = p.peakBytes + p.residentBytes + p.optimizerBytes;
  return `one step (batch ${p.batch}) needs ${mib(p.peakBytes)} of step buffers at peak + ${mib(p.residentBytes)} resident (weights, batch) + ` +
    `${mib(p.optimizerBytes)} optimiser state = ${mib(total)} in total; largest buffer ${mib(p.largest.bytes)} for ${p.largest.what}`;
}

/** Null when the plan fits the limits, else the refusal (bytes needed against the adapter's limits). */
export function stepDoesNotFit(p: StepPlan, limits: AdapterLimits, adapter: string): string | null {
  const limit = Math.min(limits.maxBufferSize, limits.maxStorageBufferBindingSize);
  if (p.largest.bytes <= limit) return null;
  return `this configuration cannot train on ${adapter}: ${describePlan(p)}, over the adapter's limits ` +
    `(largest storage binding ${mib(limits.maxStorageBufferBindingSize)}, largest buffer ${mib(limits.maxBufferSize)}; ` +
    `WebGPU does not report the device's total memory). Reduce batch_size (now ${p.batch}), image_size or the model's widths.`;
}
