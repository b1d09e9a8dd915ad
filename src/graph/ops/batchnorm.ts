// BatchNorm2d (PyTorch semantics) over x [N,C,H,W]. Training normalises with the batch mean
// and biased variance and returns an effect that folds them (unbiased variance) into the
// running statistics in place; eval normalises with the running statistics.
import { makeNode, type Tensor } from '../tensor.ts';
import { assertFloat, grid1d, isCpuAdapter } from './util.ts';
import { batchnormParams } from '../kernels/batchnorm.ts';
import { kernelOverride } from '../kernels/overrides.ts';


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
/**
 * Threads per channel reduction: one SIMD vector on CPU adapters (barriers are dear there),
 * else 256. Width 8 also selects the per-row (ROWS) normalisation and training input gradient.
 */

function rwg(): number {
  return kernelOverride('batchNormWidth') ?? (isCpuAdapter() ? 8 : 256);
}

function kernel(flag: Flag, training = false) {
  return {
    family: 'batchnorm',
    defs: { STATS: flag === 'STATS', APPLY: flag === 'APPLY', BWD_REDUCE: flag === 'BWD_REDUCE', BWD_DX: flag === 'BWD_DX', UPDATE: flag === 'UPDATE', TRAINING: training, RWG: rwg(), ROWS: rwg() === 8 },
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

  let mean: Tensor, vr: Tensor, update: Tensor | null = null;
  if (opts.training) {
    // No backward here: the statistics' gradient is folded into the normalisation's backward.
    [mean, vr] = makeNode('batchnorm_stats', [x], [{ shape: [C], dtype: 'f32' }, { shape: [C], dtype: 'f32' }], {
      encode(ctx) {
        ctx.dispatch({ kernel: kernel('STATS'), bindings: [x, mean, vr], params: params(), workgroups: [C] });
      },
    });
    const { runningMean, runningVar } = p;
    [update] = makeNode('batchnorm_update', [mean, vr, runningMean, runningVar], [{ shape: [1], dtype: 'f32' }], {
      effect: true,
      encode(ctx) {
        ctx.dispatch({ kernel: kernel('UPDATE'), bindings: [mean, vr, runningMean, runningVar], params: params(), workgroups: grid1d(C) });
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
      ctx.dispatch({ kernel: kernel('APPLY'), bindings: [x, weight, bias, mean, vr, y], params: params(), workgroups: grid1d(rwg() === 8 ? N * C : N * C * HW) });
    },
    backward([dy]) {
      const g = dy!;
      const [dweight, dbias] = makeNode('batchnorm_grad_reduce', [x, g, mean, vr], [{ shape: [C] }, { shape: [C] }], {
        encode(ctx) {
          ctx.dispatch({ kernel: kernel('BWD_REDUCE'), bindings: [x, g, mean, vr, dweight, dbias], params: params(), workgroups: [C] });
        },
      });
      let dx: Tensor | null = null;
      if (x.requiresGrad) {
        const ins = training ? [x, g, weight, mean, vr, dweight, dbias] : [g, weight, vr];
        [dx] = makeNode('batchnorm_grad_input', ins, [{ shape: x.shape }], {
          encode(ctx) {
            ctx.dispatch({ kernel: kernel('BWD_DX', training), bindings: [...ins, dx!], params: params(), workgroups: grid1d(training && rwg() === 8 ? N * C : N * C * HW) });
          },
        });
      }
      return [dx, weight.requiresGrad ? dweight : null, bias.requiresGrad ? dbias : null, null, null];
    },
  });
  return { y, update };
}
