// The gradients one training step feeds the optimiser, shared by the step and its memory plan.
// Mixed precision (a loss scale): the backward runs in f16 on the loss times the scale and stops
// at each parameter's f16 cast, so the gradients stay f16 (scaled); AdamW and the norm guard read
// them as f32(g)·(1/scale). Neither an f32 copy nor an unscaled copy of them is ever stored.
import type { Tensor } from '../graph/tensor.ts';
import { grad } from '../graph/autograd.ts';
import { scale } from '../graph/ops/elementwise.ts';
import type { Forward } from '../model/context.ts';

export interface StepGradients {
  /** One per parameter (null where the loss does not depend on it): f32, or f16 scaled by the loss scale. */
  grads: (Tensor | null)[];
  /** What the optimiser multiplies each gradient by as it reads it (1, or 1/loss scale). */
  gradScale: number;
}

export function stepGradients(loss: Tensor, f: Forward, params: Tensor[], lossScale: number | null): StepGradients {
  if (lossScale === null) return { grads: grad(loss, params), gradScale: 1 };
  return { grads: grad(scale(loss, lossScale), params.map((p) => f.gradTarget(p))), gradScale: 1 / lossScale };
}
