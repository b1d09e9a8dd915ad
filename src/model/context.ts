// Per-forward state: mode, dropout seeds, collected BatchNorm updates and captures.
import type { Tensor } from '../graph/tensor.ts';
import { dropout } from '../graph/ops/random.ts';
import { cast } from '../graph/ops/cast.ts';
import type { Weights } from './weights.ts';

export interface ForwardOptions {
  /** Training mode: BatchNorm batch statistics (+ running-stat updates), dropout active. */
  training?: boolean;
  /** Seed for dropout masks (each dropout site derives its own stream). */
  seed?: number;
  /** Keep every attention map ([b, H, q, k]) and MoE routing for inspection. */
  keepAttention?: boolean;
  /**
   * Attention as separate softmax and matmul ops, so gradients reach the probabilities
   * (the fused kernel's probs output is a read-only copy); implies keepAttention.
   */
  differentiableAttention?: boolean;
  /** Record named intermediate tensors (e.g. the vision encoder's maps) in `captures`. */
  capture?: boolean;
  /**
   * Element type of the activations: the weights' storage type by default. 'f16' with f32
   * weights is mixed-precision training: each parameter is cast to f16 once per forward (its
   * gradient is cast back, so the optimiser sees f32 gradients of the f32 master weights).
   */
  compute?: 'f32' | 'f16';
  /**
   * Diagnostic: the gated fusion's cross-attention ('cross') or global vector ('global') reads
   * the image tokens of the next image in the batch (rolled by one), breaking that path's link
   * to its own image while keeping its input distribution.
   */
  swapImagePath?: 'cross' | 'global';
  /** Diagnostic: a [b, T, 49] keep-mask (1 keep) on every decoder layer's cross-attention. */
  crossMask?: Tensor;
  /** Diagnostic: a [b, 49, 49] keep-mask on every encoder layer's self-attention. */
  encoderMask?: Tensor;
}

export class Forward {
  readonly training: boolean;
  readonly keepAttention: boolean;
  readonly differentiableAttention: boolean;
  readonly swapImagePath?: 'cross' | 'global';
  readonly crossMask?: Tensor;
  readonly encoderMask?: Tensor;
  /** Named intermediates (with `capture`): 'vis_enc.c2'…'vis_enc.c5' (backbone maps), 'vis_enc.fused' [b,d_v,h,w], 'vis_enc.pooled' [b,d_v,7,7]. */
  readonly captures = new Map<string, Tensor>();
  private readonly capturing: boolean;
  private seed: number;
  private site = 0;
  /** BatchNorm running-stat updates to run as realize effects (training only). */
  readonly bnUpdates: Tensor[] = [];
  /** BatchNorm layers whose num_batches_tracked advances when the updates run. */
  readonly bnTouched: string[] = [];

  /** Element type of the activations (see ForwardOptions.compute; `within` changes it for a part). */
  dtype: 'f32' | 'f16';
  private casts = new Map<string, Map<Tensor, Tensor>>();
  /** Parameters read without their compute-type cast somewhere (see gradTarget). */
  private readDirectly = new Set<Tensor>();

  constructor(readonly w: Weights, opts: ForwardOptions = {}) {
    this.dtype = opts.compute ?? w.dtype;
    this.training = !!opts.training;
    this.differentiableAttention = !!opts.differentiableAttention;
    this.keepAttention = !!opts.keepAttention || this.differentiableAttention;
    this.capturing = !!opts.capture;
    this.swapImagePath = opts.swapImagePath;
    this.crossMask = opts.crossMask;
    this.encoderMask = opts.encoderMask;
    this.seed = (opts.seed ?? 0) >>> 0;
  }

  /** Records `t` under `name` when capturing; returns `t`. */
  capture(name: string, t: Tensor): Tensor {
    if (this.capturing) this.captures.set(name, t);
    return t;
  }

  /** A weight in the compute type (BatchNorm statistics and rotary frequencies stay f32). */
  p(name: string): Tensor {
    return this.inCompute(this.w.get(name), name);
  }

  /** A weight's pieces along axis 0 (see Weights.chunks), in the compute type. */
  chunks(name: string): Tensor[] {
    // Each piece is a leaf of its own (Weights.trainable lists the pieces), cast on its own.
    return this.w.chunks(name).map((t) => this.inCompute(t, name));
  }

  /**
   * The tensor to differentiate for parameter `param`'s gradient: its f16 cast when every read
   * of it went through that one cast (mixed-precision training then keeps the gradient in f16,
   * and the optimiser widens and unscales it as it reads it), else the parameter itself (its
   * gradient then sums every path, casts' backward included).
   */
  gradTarget(param: Tensor): Tensor {
    if (this.readDirectly.has(param)) return param;
    return this.casts.get('f16')?.get(param) ?? param;
  }

  /** `x` in the compute type (inputs such as images; identity when it already is). */
  input(x: Tensor): Tensor {
    return x.dtype === 'f32' || x.dtype === 'f16' ? cast(x, this.dtype) : x;
  }

  private inCompute(t: Tensor, name: string): Tensor {
    if (t.dtype === this.dtype) {
      this.readDirectly.add(t);
      return t;
    }
    const kind = this.w.entry(name).kind;
    if (kind !== 'param' && kind !== 'pe') return t;
    let m = this.casts.get(this.dtype);
    if (!m) this.casts.set(this.dtype, (m = new Map()));
    let c = m.get(t);
    if (!c) {
      m.set(t, (c = cast(t, this.dtype)));
      // One elementwise pass over a kept weight: cheaper to run again for the backward's reads
      // than to hold every layer's cast through the step (mixed precision's peak bytes).
      c.node!.rematerialize = true;
    }
    return c;
  }

  /** Builds `fn`'s part of the graph with activations (and weights read) in `dtype`. */
  within<T>(dtype: 'f32' | 'f16', fn: () => T): T {
    const prev = this.dtype;
    this.dtype = dtype;
    try {
      return fn();
    } finally {
      this.dtype = prev;
    }
  }

  /** Inverted dropout with a distinct, reproducible seed per call site. */
  dropout(x: Tensor, p: number): Tensor {
    const site = this.site++;
    if (!this.training || p <= 0) return x;
    return dropout(x, p, (Math.imul(this.seed ^ 0x9e3779b9, 0x85ebca6b) + Math.imul(site + 1, 0xc2b2ae35)) >>> 0);
  }
}
