// Per-forward state: mode, dropout seeds, collected BatchNorm updates and captures.
import type { Tensor } from '../graph/tensor.ts';
import { dropout } from '../graph/ops/random.ts';
import type { Weights } from './weights.ts';

export interface ForwardOptions {
  /** Training mode: BatchNorm batch statistics (+ running-stat updates), dropout active. */
  training?: boolean;
  /** Seed for dropout masks (each dropout site derives its own stream). */
  seed?: number;
  /** Keep every attention map ([b, H, q, k]) and MoE routing for inspection. */
  keepAttention?: boolean;
}

export class Forward {
  readonly training: boolean;
  readonly keepAttention: boolean;
  private seed: number;
  private site = 0;
  /** BatchNorm running-stat updates to run as realize effects (training only). */
  readonly bnUpdates: Tensor[] = [];
  /** BatchNorm layers whose num_batches_tracked advances when the updates run. */
  readonly bnTouched: string[] = [];

  constructor(readonly w: Weights, opts: ForwardOptions = {}) {
    this.training = !!opts.training;
    this.keepAttention = !!opts.keepAttention;
    this.seed = (opts.seed ?? 0) >>> 0;
  }

  p(name: string): Tensor {
    return this.w.get(name);
  }

  /** Inverted dropout with a distinct, reproducible seed per call site. */
  dropout(x: Tensor, p: number): Tensor {
    const site = this.site++;
    if (!this.training || p <= 0) return x;
    return dropout(x, p, (Math.imul(this.seed ^ 0x9e3779b9, 0x85ebca6b) + Math.imul(site + 1, 0xc2b2ae35)) >>> 0);
  }
}
