// Optimiser updates as graph effects (shaders/optim.wgsl): AdamW with PyTorch 1.13's
// single-tensor formula (amsgrad optional), and clip_grad_norm_ computed on the GPU.
// Everything the CPU knows (learning rates, per-parameter step counts, bias corrections) is
// passed as kernel parameters, so a whole training step needs no read-back.
import { makeNode, Tensor } from '../tensor.ts';
import { fromData, writeData } from '../runtime.ts';
import { assertFloat, grid1d } from './util.ts';
import { optimParams } from '../kernels/optim.ts';

export interface AdamWGroup {
  params: Tensor[];
  lr: number;
}

export interface AdamWOptions {
  betas: [number, number];
  eps: number;
  weightDecay: number;
  amsgrad: boolean;
}

/** Per-parameter optimiser state (created at the parameter's first non-null gradient, as torch does). */
interface ParamState {
  key: string;
  /** Steps this parameter has taken (torch's state['step']; params with a null grad do not advance). */
  step: number;
  expAvg: Tensor;
  expAvgSq: Tensor;
  maxExpAvgSq: Tensor | null;
}

/** JSON-serialisable part of the state (checkpoint metadata). */
export interface AdamWMeta {
  stepCount: number;
  lrs: number[];
  betas: [number, number];
  eps: number;
  weightDecay: number;
  amsgrad: boolean;
  /** key → steps taken, for every parameter that has state. Key: `<group>.<index>`. */
  steps: Record<string, number>;
}

export interface AdamWStepOptions {
  /** A tensor (the loss) whose element 0 must be finite; otherwise the GPU skips every update. */
  guard?: Tensor;
  /**
   * Each gradient is read as f32(g)·gradScale (default 1): mixed-precision training passes its
   * f16 gradients of the loss times the loss scale with gradScale = 1/scale, so no unscaled f32
   * copy of the gradients exists (half the gradient memory).
   */
  gradScale?: number;
}

function assertGradScale(s: number, where: string): void {
  if (!(Number.isFinite(s) && s > 0)) throw new Error(`${where}: gradScale ${s} must be a finite number > 0`);
}

function kernel(kind: 'ADAMW' | 'SUMSQ' | 'NORM' | 'SCALE', amsgrad = false, guard = false) {
  return {
    family: 'optim',
    defs: { ADAMW: kind === 'ADAMW', SUMSQ: kind === 'SUMSQ', NORM: kind === 'NORM', SCALE: kind === 'SCALE', AMSGRAD: amsgrad, GUARD: guard },
    gen: { PARAMS: optimParams.wgsl },
  };
}

/**
 * AdamW over parameter groups (torch.optim.AdamW, torch 1.13, foreach=False):
 *   p ← p·(1 − lr·wd); m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²; v̂ ← max(v̂, v) (amsgrad);
 *   p ← p − lr/(1−β1^t) · m / (sqrt(v̂)/sqrt(1−β2^t) + eps), t = that parameter's step.
 * `step` returns effect tensors: pass them to `realize(targets, { effects })` in the same
 * realize as the gradients; they write param, m, v, v̂ in place after every other node.
 * Parameters whose gradient is null (or absent) are skipped entirely: no decay, no step.
 */
export class AdamW {
  readonly groups: AdamWGroup[];
  readonly opts: AdamWOptions;
  /** Number of `step` calls so far. */
  stepCount = 0;
  private state = new Map<Tensor, ParamState>();
  /** States whose step count the last `step` advanced (see `unstep`). */
  private lastStepped: ParamState[] = [];

  constructor(groups: AdamWGroup[], opts: AdamWOptions) {
    const [b1, b2] = opts.betas;
    if (!(b1 >= 0 && b1 < 1 && b2 >= 0 && b2 < 1)) throw new Error(`AdamW: betas [${opts.betas}] must be in [0, 1)`);
    if (!(opts.eps >= 0) || !(opts.weightDecay >= 0)) throw new Error(`AdamW: eps ${opts.eps} and weightDecay ${opts.weightDecay} must be ≥ 0`);
    const seen = new Set<Tensor>();
    groups.forEach((g, gi) => {
      if (!(g.lr >= 0)) throw new Error(`AdamW: group ${gi} lr ${g.lr} must be ≥ 0`);
      for (const p of g.params) {
        assertFloat(p, 'AdamW', `group ${gi} parameter`);
        if (p.node || p.base) throw new Error(`AdamW: group ${gi} parameter ${p} must be a leaf tensor with its own storage`);
        if (seen.has(p)) throw new Error(`AdamW: parameter ${p} appears in more than one place`);
        seen.add(p);
      }
    });
    this.groups = groups.map((g) => ({ params: [...g.params], lr: g.lr }));
    this.opts = { ...opts, betas: [b1, b2] };
  }

  setLr(groupIndex: number, lr: number): void {
    const g = this.groups[groupIndex];
    if (!g) throw new Error(`AdamW.setLr: no group ${groupIndex} (have ${this.groups.length})`);
    if (!(lr >= 0)) throw new Error(`AdamW.setLr: lr ${lr} must be ≥ 0`);
    g.lr = lr;
  }

  getLr(groupIndex: number): number {
    const g = this.groups[groupIndex];
    if (!g) throw new Error(`AdamW.getLr: no group ${groupIndex} (have ${this.groups.length})`);
    return g.lr;
  }

  private stateOf(p: Tensor, key: string): ParamState {
    let st = this.state.get(p);
    if (!st) {
      const zeros = () => fromData(new Float32Array(p.size), p.shape, 'f32', `adamw.${key}`, { resident: true });
      st = { key, step: 0, expAvg: zeros(), expAvgSq: zeros(), maxExpAvgSq: this.opts.amsgrad ? zeros() : null };
      this.state.set(p, st);
    }
    return st;
  }

  /** Records one update of every parameter with a gradient; returns the effect tensors. */
  step(grads: Map<Tensor, Tensor | null>, opts: AdamWStepOptions = {}): Tensor[] {
    const { betas: [beta1, beta2], eps, weightDecay, amsgrad } = this.opts;
    const guard = opts.guard;
    if (guard) assertFloat(guard, 'AdamW.step', 'guard');
    const gradScale = opts.gradScale ?? 1;
    assertGradScale(gradScale, 'AdamW.step');
    this.stepCount++;
    this.lastStepped = [];
    const effects: Tensor[] = [];
    this.groups.forEach((group, gi) => {
      group.params.forEach((param, pi) => {
        const g = grads.get(param) ?? null;
        if (!g) return;
        assertFloat(g, 'AdamW.step', `gradient of ${param}`);
        if (g.size !== param.size || g.shape.join() !== param.shape.join())
          throw new Error(`AdamW.step: gradient ${g} does not match parameter ${param} (group ${gi}, index ${pi})`);
        const st = this.stateOf(param, `${gi}.${pi}`);
        st.step++;
        this.lastStepped.push(st);
        const t = st.step, lr = group.lr;
        // Scalars in double, rounded to f32 by Params (torch casts Python scalars likewise).
        const bc1 = 1 - beta1 ** t, bc2 = 1 - beta2 ** t;
        const n = param.size;
        const params = optimParams.pack({
          n, decay: 1 - lr * weightDecay, beta1, omb1: 1 - beta1, beta2, omb2: 1 - beta2, stepSize: lr / bc1, bc2sqrt: Math.sqrt(bc2), eps, gradScale,
        }, true);
        const inputs = [param, g, st.expAvg, st.expAvgSq, ...(st.maxExpAvgSq ? [st.maxExpAvgSq] : []), ...(guard ? [guard] : [])];
        const [done] = makeNode('adamw_step', inputs, [{ shape: [1] }], {
          effect: true,
          encode(ctx) {
            ctx.dispatch({ kernel: kernel('ADAMW', amsgrad, !!guard), bindings: inputs, params, workgroups: grid1d(n) });
          },
        });
        effects.push(done);
      });
    });
    return effects;
  }

  /**
   * Takes back the step counts of the last `step` whose update the GPU skipped (its guard was
   * non-finite: a loss-scaling overflow), so bias correction counts only applied updates.
   */
  unstep(): void {
    for (const st of this.lastStepped) st.step--;
    if (this.lastStepped.length) this.stepCount--;
    this.lastStepped = [];
  }

  /** State tensors by name (`<group>.<index>.exp_avg|exp_avg_sq|max_exp_avg_sq`) and metadata. */
  stateDict(): { tensors: Record<string, Tensor>; meta: AdamWMeta } {
    const tensors: Record<string, Tensor> = {};
    const steps: Record<string, number> = {};
    for (const st of this.state.values()) {
      tensors[`${st.key}.exp_avg`] = st.expAvg;
      tensors[`${st.key}.exp_avg_sq`] = st.expAvgSq;
      if (st.maxExpAvgSq) tensors[`${st.key}.max_exp_avg_sq`] = st.maxExpAvgSq;
      steps[st.key] = st.step;
    }
    const { betas, eps, weightDecay, amsgrad } = this.opts;
    return { tensors, meta: { stepCount: this.stepCount, lrs: this.groups.map((g) => g.lr), betas: [betas[0], betas[1]], eps, weightDecay, amsgrad, steps } };
  }

  /**
   * Restores a state saved by `stateDict` into an optimiser over the same parameter groups
   * (same order and shapes). Learning rates and step counts come from the metadata.
   */
  loadStateDict(sd: { tensors: Record<string, ArrayLike<number>>; meta: AdamWMeta }): void {
    const { meta, tensors } = sd;
    if (meta.lrs.length !== this.groups.length) throw new Error(`AdamW.loadStateDict: saved state has ${meta.lrs.length} groups, optimiser has ${this.groups.length}`);
    if (meta.amsgrad !== this.opts.amsgrad) throw new Error(`AdamW.loadStateDict: saved amsgrad=${meta.amsgrad}, optimiser amsgrad=${this.opts.amsgrad}`);
    const byKey = new Map<string, Tensor>();
    this.groups.forEach((g, gi) => g.params.forEach((p, pi) => byKey.set(`${gi}.${pi}`, p)));
    for (const key of Object.keys(meta.steps)) if (!byKey.has(key)) throw new Error(`AdamW.loadStateDict: saved state for parameter ${key}, which this optimiser does not have`);
    this.state.clear();
    for (const [key, steps] of Object.entries(meta.steps)) {
      const p = byKey.get(key)!;
      const st = this.stateOf(p, key);
      st.step = steps;
      const put = (dst: Tensor, name: string) => {
        const src = tensors[`${key}.${name}`];
        if (src === undefined) throw new Error(`AdamW.loadStateDict: missing ${key}.${name}`);
        const n = src instanceof Tensor ? src.size : src.length;
        if (n !== p.size) throw new Error(`AdamW.loadStateDict: ${key}.${name} has ${n} values, parameter ${p} has ${p.size}`);
        if (src instanceof Tensor) throw new Error(`AdamW.loadStateDict: ${key}.${name}: pass host data (Float32Array), not a Tensor`);
        writeData(dst, src as ArrayLike<number>);
      };
      put(st.expAvg, 'exp_avg');
      put(st.expAvgSq, 'exp_avg_sq');
      if (st.maxExpAvgSq) put(st.maxExpAvgSq, 'max_exp_avg_sq');
    }
    this.stepCount = meta.stepCount;
    meta.lrs.forEach((lr, i) => this.setLr(i, lr));
  }
}

/**
 * torch.nn.utils.clip_grad_norm_(grads, maxNorm) on the GPU: totalNorm = ‖(‖g_i‖₂)_i‖₂ and
 * grads scaled by min(1, maxNorm / (totalNorm + 1e-6)). Returns new (lazy) gradient tensors
 * and the norm ([1]); nothing is read back. With `gradScale` the gradients are read as
 * f32(g)·gradScale (f16 gradients of a scaled loss: norm and clipped gradients are the
 * unscaled f32 ones).
 */
export function clipGradNorm(grads: Tensor[], maxNorm: number, opts: { gradScale?: number } = {}): { grads: Tensor[]; totalNorm: Tensor } {
  if (!(maxNorm > 0)) throw new Error(`clipGradNorm: maxNorm ${maxNorm} must be > 0`);
  const gradScale = opts.gradScale ?? 1;
  assertGradScale(gradScale, 'clipGradNorm');
  if (grads.length === 0) throw new Error('clipGradNorm: no gradients given');
  grads.forEach((g, i) => assertFloat(g, 'clipGradNorm', `gradient ${i}`));
  const count = grads.length;
  const [totalNorm] = makeNode('grad_norm', grads, [{ shape: [1], dtype: 'f32' }], {
    encode(ctx) {
      const sums = ctx.scratch(4 * count);
      grads.forEach((g, i) => {
        ctx.dispatch({ kernel: kernel('SUMSQ'), bindings: [g, sums], params: optimParams.pack({ n: g.size, slot: i, count, gradScale }, true), workgroups: [1] });
      });
      ctx.dispatch({ kernel: kernel('NORM'), bindings: [sums, totalNorm], params: optimParams.pack({ count }, true), workgroups: [1] });
    },
  });
  const scaled = grads.map((g) => {
    const [out] = makeNode('clip_scale', [g, totalNorm], [{ shape: g.shape, dtype: 'f32' }], {
      encode(ctx) {
        const n = g.size;
        ctx.dispatch({ kernel: kernel('SCALE'), bindings: [g, totalNorm, out], params: optimParams.pack({ n, maxNorm, gradScale }, true), workgroups: grid1d(n) });
      },
    });
    return out;
  });
  return { grads: scaled, totalNorm };
}
