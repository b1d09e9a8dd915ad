// Fused multi-head attention: softmax(q·kᵀ·scale, masked) · v in one kernel per block of
// query rows (online softmax over key tiles, any Sq/Sk). The backward re-materialises P from
// the saved per-row max and sum (or uses the kept probabilities) and runs dV = Pᵀ·dO,
// dP = dO·Vᵀ, dS = softmax-backward(P, dP), dQ = dS·K, dK = dSᵀ·Q. Which forward kernel runs
// (register rows, tiles, one query row) is the tunable `attention` family's choice.
import { makeNode, type Tensor } from '../tensor.ts';
import { dispose, fromData } from '../runtime.ts';
import { grid1d } from './util.ts';
import {
  type AttentionConfig, attentionConfigFits, attentionFamily, type AttentionGeometry, attentionHandConfig, attentionParams,
  attentionRegisterBody, attentionTiles, attentionTrialTolerance,
} from '../kernels/attention.ts';
import { chooseConfig, trialConfig } from '../kernels/catalogue.ts';
import type { DeviceProfile } from '../../gpu/profile.ts';
import { registerTunable } from '../tuner.ts';

import { matmul, trialData } from './matmul.ts';
import { reshape } from './shape.ts';
import { add } from './elementwise.ts';

export interface AttentionOptions {
  /** Multiplies q·kᵀ (usually 1/sqrt(d)). */
  scale: number;
  /** [b|1, Sq|1, Sk], f32 or i32: 1 keep, 0 masked (score replaced by −1e9). */
  mask?: Tensor;
  /** Also return the probabilities [b,H,Sq,Sk] (attention maps); costs one extra kernel. */
  keepProbs?: boolean;
}

interface Geometry {
  b: number; H: number; Sq: number; Sk: number; d: number; dv: number;
  scale: number; mask?: Tensor;
}

function params(g: Geometry) {
  const m = g.mask;
  // Mask strides over (batch, query, key); size-1 axes broadcast.
  const mb = m && m.shape[0] !== 1 ? m.shape[1] * m.shape[2] : 0;
  const mq = m && m.shape[1] !== 1 ? m.shape[2] : 0;
  return attentionParams.pack({ BH: g.b * g.H, H: g.H, Sq: g.Sq, Sk: g.Sk, scale: g.scale, mb, mq, mk: 1 });
}

function geometryOf(g: Geometry, dtype: string): AttentionGeometry {
  return { BH: g.b * g.H, Sq: g.Sq, Sk: g.Sk, d: g.d, dv: g.dv, mask: g.mask ? (g.mask.dtype as 'f32' | 'i32') : 'none', dtype: dtype as 'f32' | 'f16' };
}

/**
 * The configuration of the forward (and of the probabilities that go with it): a trial's, a
 * test's override, the tuned choice or the hand pick — the hand pick where a cached choice
 * cannot run this geometry.
 */
function configFor(g: Geometry, dtype: string, profile: DeviceProfile, trialCfg: unknown): AttentionConfig {
  const geom = geometryOf(g, dtype);
  const c = chooseConfig(attentionFamily, geom, profile, trialCfg);
  return attentionConfigFits(c, geom, profile) ? c : attentionHandConfig(geom, profile);
}

function defs(g: Geometry, kind: 'FWD' | 'PROBS' | 'SM_BWD' | 'ONE_Q', cfg: AttentionConfig | null, maskBinding: number, writeP = false) {
  const reg = cfg?.kind === 'register' && (kind === 'FWD' || kind === 'PROBS');
  const t = cfg?.kind === 'tiled' ? cfg : attentionTiles(g.d, g.dv);
  return {
    family: 'attention',
    defs: {
      ONE_Q: kind === 'ONE_Q', WRITE_P: writeP, P_BINDING: g.mask ? 7 : 6, SKP: kind === 'ONE_Q' ? g.Sk : 1,
      OWG: cfg?.kind === 'one' ? cfg.OWG : 8, RWG: cfg?.kind === 'register' ? cfg.RWG : 8,
      FWD: kind === 'FWD' && !reg, PROBS: kind === 'PROBS' && !reg, SM_BWD: kind === 'SM_BWD',
      FWD_REG: kind === 'FWD' && reg, PROBS_REG: kind === 'PROBS' && reg,
      REG_BODY: reg ? attentionRegisterBody(g.d, g.dv, kind === 'PROBS', !!g.mask) : '',
      D: g.d, DV: g.dv, KVD: Math.max(g.d, g.dv), QB: t.QB, KB: t.KB,
      HAS_MASK: !!g.mask, MASK_F32: g.mask?.dtype === 'f32', MASK_BINDING: maskBinding,
    },
    gen: { PARAMS: attentionParams.wgsl },
  };
}

/** Workgroups of the PROBS kernel (register: RWG query rows of one head per workgroup; else one thread per probability). */
function probsGrid(g: Geometry, cfg: AttentionConfig): [number, number] {
  return cfg.kind === 'register' ? [Math.ceil(g.Sq / cfg.RWG), g.b * g.H] : grid1d(g.b * g.H * g.Sq * g.Sk);
}

/** Attention probabilities from the forward's row statistics: [b,H,Sq,Sk]. */
function probsFromStats(q: Tensor, k: Tensor, stats: Tensor, g: Geometry): Tensor {
  const inputs = g.mask ? [q, k, stats, g.mask] : [q, k, stats];
  const [probs] = makeNode('attention_probs', inputs, [{ shape: [g.b, g.H, g.Sq, g.Sk] }], {
    encode(ctx) {
      const cfg = configFor(g, q.dtype, ctx.profile, undefined);
      ctx.dispatch({
        kernel: defs(g, 'PROBS', cfg, 5),
        bindings: g.mask ? [q, k, stats, probs, g.mask] : [q, k, stats, probs],
        params: params(g),
        workgroups: probsGrid(g, cfg),
      });
    },
  });
  return probs;
}

/** dS = scale · P ⊙ (dP − rowsum(P ⊙ dP)), 0 where masked; all [b·H, Sq, Sk]. */
function softmaxBackward(probs: Tensor, dP: Tensor, g: Geometry): Tensor {
  const inputs = g.mask ? [probs, dP, g.mask] : [probs, dP];
  const [dS] = makeNode('attention_softmax_grad', inputs, [{ shape: dP.shape }], {
    encode(ctx) {
      ctx.dispatch({
        kernel: defs(g, 'SM_BWD', null, 4),
        bindings: g.mask ? [probs, dP, dS, g.mask] : [probs, dP, dS],
        params: params(g),
        workgroups: grid1d(g.b * g.H * g.Sq),
      });
    },
  });
  return dS;
}

/**
 * out = softmax(q·kᵀ·scale with mask==0 → −1e9) · v for q [b,H,Sq,d], k [b,H,Sk,d],
 * v [b,H,Sk,dv]; out [b,H,Sq,dv]; probs [b,H,Sq,Sk] when keepProbs, else null.
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions): { out: Tensor; probs: Tensor | null } {
  const { scale, mask, keepProbs = false } = opts;
  for (const [t, n] of [[q, 'q'], [k, 'k'], [v, 'v']] as const) {
    if (t.rank !== 4) throw new Error(`attention: ${n} ${t} must be [b,H,S,d]`);
    if (t.dtype !== q.dtype || (t.dtype !== 'f32' && t.dtype !== 'f16')) throw new Error(`attention: ${n} ${t} must be f32 or f16, like q ${q}`);
  }
  const [b, H, Sq, d] = q.shape;
  const [Sk, dv] = [k.shape[2], v.shape[3]];
  if (k.shape[0] !== b || k.shape[1] !== H || k.shape[3] !== d)
    throw new Error(`attention: k ${k} does not match q ${q} (expected [${b},${H},Sk,${d}])`);
  if (v.shape[0] !== b || v.shape[1] !== H || v.shape[2] !== Sk)
    throw new Error(`attention: v ${v} does not match k ${k} (expected [${b},${H},${Sk},dv])`);
  if (Sq === 0 || Sk === 0 || d === 0 || dv === 0) throw new Error(`attention: empty q ${q}, k ${k} or v ${v}`);
  if (mask) {
    if (mask.dtype !== 'f32' && mask.dtype !== 'i32') throw new Error(`attention: mask ${mask} must be f32 or i32`);
    const [mb, mq, mk] = mask.shape;
    if (mask.rank !== 3 || (mb !== b && mb !== 1) || (mq !== Sq && mq !== 1) || mk !== Sk)
      throw new Error(`attention: mask ${mask} must be [${b},${Sq},${Sk}] (size-1 batch or query axes broadcast)`);
  }
  const g: Geometry = { b, H, Sq, Sk, d, dv, scale, mask };
  const inputs = mask ? [q, k, v, mask] : [q, k, v];
  // Row statistics (max, Σ exp) stay f32 whatever the element type.
  const outShapes: { shape: number[]; dtype?: 'f32' }[] = [{ shape: [b, H, Sq, dv] }, { shape: [b * H * Sq, 2], dtype: 'f32' }];
  if (keepProbs) outShapes.push({ shape: [b, H, Sq, Sk] });
  const trialCfg = trialConfig('attention');
  const outs = makeNode('attention', inputs, outShapes, {
    encode(ctx) {
      const cfg = configFor(g, q.dtype, ctx.profile, trialCfg);
      if (cfg.kind === 'one') {
        const bindings = mask ? [q, k, v, out, stats, mask] : [q, k, v, out, stats];
        if (probs) bindings.push(probs);
        ctx.dispatch({ kernel: defs(g, 'ONE_Q', cfg, 6, !!probs), bindings, params: params(g), workgroups: b * H <= 65535 ? [b * H, 1] : [65535, Math.ceil((b * H) / 65535)] });
        return;
      }
      ctx.dispatch({
        kernel: defs(g, 'FWD', cfg, 6),
        bindings: mask ? [q, k, v, out, stats, mask] : [q, k, v, out, stats],
        params: params(g),
        workgroups: cfg.kind === 'register' ? [Math.ceil(Sq / cfg.RWG), b * H] : [Math.ceil(Sq / cfg.QB), b * H],
      });
      if (probs) {
        ctx.dispatch({
          kernel: defs(g, 'PROBS', cfg, 5),
          bindings: mask ? [q, k, stats, probs, mask] : [q, k, stats, probs],
          params: params(g),
          workgroups: probsGrid(g, cfg),
        });
      }
    },
    backward([dOut, _dStats, dProbs]) {
      const BH = b * H;
      const P3 = reshape(probs ?? probsFromStats(q, k, stats, g), [BH, Sq, Sk]);
      const dO3 = dOut ? reshape(dOut, [BH, Sq, dv]) : null;
      let dP: Tensor | null = dO3 ? matmul(dO3, reshape(v, [BH, Sk, dv]), { transB: true }) : null;
      if (dProbs) dP = dP ? add(dP, reshape(dProbs, [BH, Sq, Sk])) : reshape(dProbs, [BH, Sq, Sk]);
      const dv_ = v.requiresGrad && dO3 ? reshape(matmul(P3, dO3, { transA: true }), v.shape) : null;
      const tail = mask ? [null] : [];
      if (!dP) return [null, null, dv_, ...tail];
      const dS = softmaxBackward(P3, dP, g);
      const dq = q.requiresGrad ? reshape(matmul(dS, reshape(k, [BH, Sk, d])), q.shape) : null;
      const dk = k.requiresGrad ? reshape(matmul(dS, reshape(q, [BH, Sq, d]), { transA: true }), k.shape) : null;
      return [dq, dk, dv_, ...tail];
    },
  });
  const [out, stats] = outs;
  const probs: Tensor | null = keepProbs ? outs[2] : null;
  return { out, probs };
}

registerTunable<AttentionGeometry>({
  family: attentionFamily,
  trial(g) {
    const { BH, Sq, Sk, d, dv, dtype } = g;
    const q = fromData(trialData(BH * Sq * d, 1), [BH, 1, Sq, d], dtype).keep();
    const k = fromData(trialData(BH * Sk * d, 2), [BH, 1, Sk, d], dtype).keep();
    const v = fromData(trialData(BH * Sk * dv, 3), [BH, 1, Sk, dv], dtype).keep();
    // A keep-mask shared by the batch: every row keeps its first key and most others.
    const keep = Array.from({ length: Sq * Sk }, (_, i) => (i % Sk === 0 || (i + Math.floor(i / Sk)) % 5 !== 3 ? 1 : 0));
    const mask = g.mask === 'none' ? undefined : fromData(g.mask === 'f32' ? Float32Array.from(keep) : Int32Array.from(keep), [1, Sq, Sk], g.mask).keep();
    return {
      op: 'attention',
      build: () => attention(q, k, v, { scale: 1 / Math.sqrt(d), mask }).out,
      tolerance: attentionTrialTolerance(g),
      flops: 2 * BH * Sq * Sk * (d + dv),
      dispose: () => dispose(q, k, v, mask),
    };
  },
});
