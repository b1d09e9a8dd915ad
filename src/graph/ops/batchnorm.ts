// BatchNorm2d (PyTorch semantics) over x [N,C,H,W]. Training normalises with the batch mean
// and biased variance and returns an effect that folds them (unbiased variance) into the
// running statistics in place; eval normalises with the running statistics.
import { makeNode, type Tensor } from '../tensor.ts';
import { assertFloat, grid1d } from './util.ts';
import { type BatchnormConfig, batchnormFamily, type BatchnormGeometry, batchnormParams, batchnormTrialTolerance } from '../kernels/batchnorm.ts';
import { chooseConfig, trialConfig } from '../kernels/catalogue.ts';
import { dispose, fromData } from '../runtime.ts';
import { registerTunable } from '../tuner.ts';
import { trialData } from './matmul.ts';


export interface BatchNormParams {
  weight: Tensor;
  bias: Tensor;
  runningMean: Tensor;
  runningVar: Tensor;
}

export interface BatchNormOptions {
  training: boolean;
  /** Running-statistics momentum (PyTorch default 0.1). */
  momentum?: number;
  eps?: number;
}

type Flag = 'STATS' | 'APPLY' | 'BWD_REDUCE' | 'BWD_DX' | 'UPDATE';
function kernel(flag: Flag, cfg: BatchnormConfig, training = false) {
  // (only the channel reductions fold sums: the other kinds keep one pipeline whatever sg says)
  return {
    family: 'batchnorm',
    defs: { STATS: flag === 'STATS', APPLY: flag === 'APPLY', BWD_REDUCE: flag === 'BWD_REDUCE', BWD_DX: flag === 'BWD_DX', UPDATE: flag === 'UPDATE', TRAINING: training, RWG: cfg.RWG, ROWS: cfg.rows, SUBGROUPS: !!cfg.sg && (flag === 'STATS' || flag === 'BWD_REDUCE') },
    gen: { PARAMS: batchnormParams.wgsl },
  };
}

/**
 * y = (x − μ)/√(σ² + eps)·weight + bias per channel. Returns `update` (training only): an
 * effect tensor; pass it in `realize(targets, { effects: [update] })` in the same realize as
 * `y` to write the new running mean/variance into `p.runningMean` / `p.runningVar`.
 */
export function batchNorm2d(x: Tensor, p: BatchNormParams, opts: BatchNormOptions): { y: Tensor; update: Tensor | null } {
  const momentum = opts.momentum ?? 0.1, eps = opts.eps ?? 1e-5;
  assertFloat(x, 'batchNorm2d', 'x');
  if (x.rank !== 4) throw new Error(`batchNorm2d: input ${x} must be [N,C,H,W]`);
  const [N, C, H, W] = x.shape, HW = H * W;
  for (const [k, t] of Object.entries(p) as [string, Tensor][]) {
    assertFloat(t, 'batchNorm2d', k);
    if (t.rank !== 1 || t.shape[0] !== C) throw new Error(`batchNorm2d: ${k} ${t} must be [${C}] for input ${x}`);
  }
  if (opts.training && N * HW < 2) throw new Error(`batchNorm2d: training needs more than 1 value per channel, input ${x}`);
  const params = () => batchnormParams.pack({ N, C, HW, total: N * C * HW, eps, momentum });
  // One layout for all the op's kernels (captured now for a tuner trial).
  const trialCfg = trialConfig('batchnorm');
  const geom: BatchnormGeometry = { N, C, HW, dtype: x.dtype as 'f32' | 'f16' };

  let mean: Tensor, vr: Tensor, update: Tensor | null = null;
  if (opts.training) {
    // No backward here: the statistics' gradient is folded into the normalisation's backward.
    [mean, vr] = makeNode('batchnorm_stats', [x], [{ shape: [C], dtype: 'f32' }, { shape: [C], dtype: 'f32' }], {
      encode(ctx) {
        ctx.dispatch({ kernel: kernel('STATS', chooseConfig(batchnormFamily, geom, ctx.profile, trialCfg)), bindings: [x, mean, vr], params: params(), workgroups: [C] });
      },
    });
    const { runningMean, runningVar } = p;
    [update] = makeNode('batchnorm_update', [mean, vr, runningMean, runningVar], [{ shape: [1], dtype: 'f32' }], {
      effect: true,
      encode(ctx) {
        ctx.dispatch({ kernel: kernel('UPDATE', chooseConfig(batchnormFamily, geom, ctx.profile, trialCfg)), bindings: [mean, vr, runningMean, runningVar], params: params(), workgroups: grid1d(C) });
      },
    });
  } else {
    mean = p.runningMean;
    vr = p.runningVar;
  }
  const training = opts.training;
  const { weight, bias } = p;
  const [y] = makeNode('batchnorm2d', [x, weight, bias, mean, vr], [{ shape: x.shape }], {
    encode(ctx) {
      const cfg = chooseConfig(batchnormFamily, geom, ctx.profile, trialCfg);
      ctx.dispatch({ kernel: kernel('APPLY', cfg), bindings: [x, weight, bias, mean, vr, y], params: params(), workgroups: grid1d(cfg.rows ? N * C : N * C * HW) });
    },
    backward([dy]) {
      const g = dy!;
      const [dweight, dbias] = makeNode('batchnorm_grad_reduce', [x, g, mean, vr], [{ shape: [C] }, { shape: [C] }], {
        encode(ctx) {
          ctx.dispatch({ kernel: kernel('BWD_REDUCE', chooseConfig(batchnormFamily, geom, ctx.profile, trialCfg)), bindings: [x, g, mean, vr, dweight, dbias], params: params(), workgroups: [C] });
        },
      });
      let dx: Tensor | null = null;
      if (x.requiresGrad) {
        const ins = training ? [x, g, weight, mean, vr, dweight, dbias] : [g, weight, vr];
        [dx] = makeNode('batchnorm_grad_input', ins, [{ shape: x.shape }], {
          encode(ctx) {
            const cfg = chooseConfig(batchnormFamily, geom, ctx.profile, trialCfg);
            ctx.dispatch({ kernel: kernel('BWD_DX', cfg, training), bindings: [...ins, dx!], params: params(), workgroups: grid1d(training && cfg.rows ? N * C : N * C * HW) });
          },
        });
      }
      return [dx, weight.requiresGrad ? dweight : null, bias.requiresGrad ? dbias : null, null, null];
    },
  });
  return { y, update };
}

registerTunable<BatchnormGeometry>({
  family: batchnormFamily,
  trial(g) {
    const X = trialData(g.N * g.C * g.HW, 1);
    const x = fromData(X, [g.N, g.C, 1, g.HW], g.dtype).keep();
    const [w, b] = [trialData(g.C, 2), trialData(g.C, 3)].map((v) => fromData(v, [g.C], g.dtype).keep());
    const [rm, rv] = [new Float32Array(g.C), new Float32Array(g.C).fill(1)].map((v) => fromData(v, [g.C], g.dtype).keep());
    return {
      op: ['batchnorm_stats', 'batchnorm2d'],
      build: () => batchNorm2d(x, { weight: w, bias: b, runningMean: rm, runningVar: rv }, { training: true }).y,
      tolerance: batchnormTrialTolerance(g, X),
      flops: 8 * g.N * g.C * g.HW,
      dispose: () => dispose(x, w, b, rm, rv),
    };
  },
});
