// RMSNorm over the last axis (shaders/norm.wgsl): y = x / sqrt(mean(x²) + eps) · weight.
import { makeNode, type Tensor } from '../tensor.ts';
import { assertFloat, grid1d } from './util.ts';
import { type NormConfig, normFamily, type NormGeometry, normParams, normTrialTolerance } from '../kernels/norm.ts';
import { chooseConfig, trialConfig } from '../kernels/catalogue.ts';
import { dispose, fromData } from '../runtime.ts';
import { registerTunable } from '../tuner.ts';
import { trialData } from './matmul.ts';


const KINDS = ['FWD', 'DX', 'DW'] as const;
type Kind = (typeof KINDS)[number];

function kernel(kind: Kind, cfg: NormConfig) {
  const defs: Record<string, boolean | number> = { WG: cfg.WG, SUBGROUPS: !!cfg.sg };
  for (const k of KINDS) defs[k] = k === kind;
  return { family: 'norm', defs, gen: { PARAMS: normParams.wgsl } };
}

/** Columns of dw per workgroup in the DW kernel (DW_COLS in norm.wgsl). */
const DW_COLS = 32;

/** RMSNorm of each row of the last axis; gradients for x and weight. */
export function rmsNorm(x: Tensor, weight: Tensor, eps = 1e-6): Tensor {
  assertFloat(x, 'rmsNorm', 'x');
  assertFloat(weight, 'rmsNorm', 'weight');
  if (x.rank < 1) throw new Error(`rmsNorm: x ${x} must have at least one axis`);
  const D = x.shape[x.rank - 1];
  if (weight.rank !== 1 || weight.shape[0] !== D) throw new Error(`rmsNorm: weight ${weight} must be [${D}] for x ${x}`);
  const rows = x.shape.slice(0, -1).reduce((a, b) => a * b, 1);
  const params = () => normParams.pack({ rows, D, eps });
  // FWD and DX reduce rows alike: one tuned width for both (captured now for a tuner trial).
  const trialCfg = trialConfig('norm');
  const geom: NormGeometry = { rows, D, dtype: x.dtype as 'f32' | 'f16' };
  const [y, rstd] = makeNode('rms_norm', [x, weight], [{ shape: x.shape }, { shape: [rows], dtype: 'f32' }], {
    encode(ctx) {
      ctx.dispatch({ kernel: kernel('FWD', chooseConfig(normFamily, geom, ctx.profile, trialCfg)), bindings: [x, weight, y, rstd], params: params(), workgroups: grid1d(rows, 1) });
    },
    backward([dy]) {
      let dx: Tensor | null = null, dw: Tensor | null = null;
      if (x.requiresGrad) {
        [dx] = makeNode('rms_norm_dx', [x, weight, rstd, dy!], [{ shape: x.shape }], {
          encode(ctx) {
            ctx.dispatch({ kernel: kernel('DX', chooseConfig(normFamily, geom, ctx.profile, trialCfg)), bindings: [x, weight, rstd, dy!, dx!], params: params(), workgroups: grid1d(rows, 1) });
          },
        });
      }
      if (weight.requiresGrad) {
        [dw] = makeNode('rms_norm_dw', [x, rstd, dy!], [{ shape: [D] }], {
          encode(ctx) {
            ctx.dispatch({ kernel: kernel('DW', { WG: 256 }), bindings: [x, rstd, dy!, dw!], params: params(), workgroups: grid1d(Math.ceil(D / DW_COLS), 1) });
          },
        });
      }
      return [dx, dw];
    },
  });
  return y;
}

registerTunable<NormGeometry>({
  family: normFamily,
  trial(g) {
    const x = fromData(trialData(g.rows * g.D, 1), [g.rows, g.D], g.dtype).keep();
    const w = fromData(trialData(g.D, 2), [g.D], g.dtype).keep();
    return { op: 'rms_norm', build: () => rmsNorm(x, w), tolerance: normTrialTolerance(g), flops: 4 * g.rows * g.D, dispose: () => dispose(x, w) };
  },
});
