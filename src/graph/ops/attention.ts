// Fused multi-head attention: softmax(q·kᵀ·scale, masked) · v in one kernel per block of
// query rows (online softmax over key tiles, any Sq/Sk). The backward re-materialises P from
// the saved per-row max and sum (or uses the kept probabilities) and runs dV = Pᵀ·dO,
// dP = dO·Vᵀ, dS = softmax-backward(P, dP), dQ = dS·K, dK = dSᵀ·Q.
import { makeNode, type Tensor } from '../tensor.ts';
import { grid1d, isCpuAdapter, registerKernelsByDefault } from './util.ts';
import { attentionParams } from '../kernels/attention.ts';
import { kernelOverride } from '../kernels/overrides.ts';

import { matmul } from './matmul.ts';
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

/** WebGPU's guaranteed workgroup memory is 16 KiB = 4096 floats. */
const WG_FLOATS = 4096;

/** Query/key tile sizes whose workgroup arrays fit (Q block + K/V tile + score tile). */
export function attentionTiles(d: number, dv: number): { QB: number; KB: number } {
  const kvd = Math.max(d, dv);
  for (const [QB, KB] of [[16, 16], [8, 16], [8, 8], [4, 8], [4, 4], [2, 4], [1, 4]])
    if (QB * d + KB * kvd + QB * KB <= WG_FLOATS) return { QB, KB };
  throw new Error(`attention: head sizes d=${d}, dv=${dv} are too large for workgroup memory`);
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

/** Head sizes up to which the unrolled register kernels are used (q row and output in registers). */
const REG_MAX_D = 160;

function useRegister(g: Geometry): boolean {
  if (g.d + g.dv > REG_MAX_D) return false;
  const forced = kernelOverride('attention');
  return forced ? forced === 'register' : registerKernelsByDefault();
}

/**
 * FWD_REG / PROBS_REG bodies: q row in registers q{c}; per key (uniform loop) the score with
 * the same fma order as PROBS; FWD keeps a running max m, sum l and outputs o{c}, rescaled
 * with one exp per key (the larger of score and max gets weight 1).
 */
export function attentionRegisterBody(d: number, dv: number, probs: boolean, hasMask: boolean): string {
  const L: string[] = [];
  for (let c = 0; c < d; c++) L.push(`  let q${c} = f32(Q[qb + ${c}u]);`);
  if (probs) L.push('  let sr = 2u * (bh * p.Sq + qRow);', '  let rm = stats[sr];', '  let rl = stats[sr + 1u];', '  let pb = (bh * p.Sq + qRow) * p.Sk;');
  else {
    L.push('  var m = NONE;', '  var l = 0.0;');
    for (let c = 0; c < dv; c++) L.push(`  var o${c} = 0.0;`);
  }
  L.push('  for (var key = 0u; key < p.Sk; key++) {');
  L.push('    let kb = kBase + key * D;', '    var dot = 0.0;');
  for (let c = 0; c < d; c++) L.push(`    dot = fma(q${c}, f32(K[kb + ${c}u]), dot);`);
  L.push('    var s = dot * p.scale;');
  if (hasMask) L.push('    if (!keep(b, qRow, key)) { s = -1e9; }');
  if (probs) {
    L.push('    if (row < p.Sq) { P[pb + key] = T(exp(s - rm) / rl); }');
  } else {
    L.push('    let up = s > m;', '    let e = exp(-abs(s - m));');
    L.push('    let alpha = select(1.0, e, up);', '    let pr = select(e, 1.0, up);');
    L.push('    m = max(m, s);', '    l = fma(l, alpha, pr);', '    let vb = vBase + key * DV;');
    for (let c = 0; c < dv; c++) L.push(`    o${c} = fma(o${c}, alpha, pr * f32(V[vb + ${c}u]));`);
  }
  L.push('  }');
  if (!probs) {
    L.push('  if (row < p.Sq) {', '    let ob = (bh * p.Sq + row) * DV;');
    for (let c = 0; c < dv; c++) L.push(`    O[ob + ${c}u] = T(o${c} / l);`);
    L.push('    stats[2u * (bh * p.Sq + row)] = m;', '    stats[2u * (bh * p.Sq + row) + 1u] = l;', '  }');
  }
  return L.join('\n');
}

/** Largest key count of the one-query kernel (its scores live in workgroup memory). */
const ONE_Q_MAX_SK = 3072;

/** One query row (decoding steps): the ONE_Q kernel, unless a test forces another. */
function useOneQuery(g: Geometry): boolean {
  return kernelOverride('attention') === undefined && g.Sq === 1 && g.Sk <= ONE_Q_MAX_SK;
}


function defs(g: Geometry, kind: 'FWD' | 'PROBS' | 'SM_BWD' | 'ONE_Q', maskBinding: number, writeP = false) {
  const t = attentionTiles(g.d, g.dv);
  const reg = kind !== 'SM_BWD' && kind !== 'ONE_Q' && useRegister(g);
  return {
    family: 'attention',
    defs: {
      ONE_Q: kind === 'ONE_Q', WRITE_P: writeP, P_BINDING: g.mask ? 7 : 6, SKP: kind === 'ONE_Q' ? g.Sk : 1, OWG: kind === 'ONE_Q' && !isCpuAdapter() ? 64 : 8,
      FWD: kind === 'FWD' && !reg, PROBS: kind === 'PROBS' && !reg, SM_BWD: kind === 'SM_BWD',
      FWD_REG: kind === 'FWD' && reg, PROBS_REG: kind === 'PROBS' && reg,
      REG_BODY: reg ? attentionRegisterBody(g.d, g.dv, kind === 'PROBS', !!g.mask) : '',
      D: g.d, DV: g.dv, KVD: Math.max(g.d, g.dv), QB: t.QB, KB: t.KB,
      HAS_MASK: !!g.mask, MASK_F32: g.mask?.dtype === 'f32', MASK_BINDING: maskBinding,
    },
    gen: { PARAMS: attentionParams.wgsl },
  };
}

/** Workgroups of the PROBS kernel (register: 8 query rows of one head per workgroup). */
function probsGrid(g: Geometry): [number, number] {
  return useRegister(g) ? [Math.ceil(g.Sq / 8), g.b * g.H] : grid1d(g.b * g.H * g.Sq * g.Sk);
}

/** Attention probabilities from the forward's row statistics: [b,H,Sq,Sk]. */
function probsFromStats(q: Tensor, k: Tensor, stats: Tensor, g: Geometry): Tensor {
  const inputs = g.mask ? [q, k, stats, g.mask] : [q, k, stats];
  const [probs] = makeNode('attention_probs', inputs, [{ shape: [g.b, g.H, g.Sq, g.Sk] }], {
    encode(ctx) {
      ctx.dispatch({
        kernel: defs(g, 'PROBS', 5),
        bindings: g.mask ? [q, k, stats, probs, g.mask] : [q, k, stats, probs],
        params: params(g),
        workgroups: probsGrid(g),
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
        kernel: defs(g, 'SM_BWD', 4),
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
  const outs = makeNode('attention', inputs, outShapes, {
    encode(ctx) {
      if (useOneQuery(g)) {
        const bindings = mask ? [q, k, v, out, stats, mask] : [q, k, v, out, stats];
        if (probs) bindings.push(probs);
        ctx.dispatch({ kernel: defs(g, 'ONE_Q', 6, !!probs), bindings, params: params(g), workgroups: b * H <= 65535 ? [b * H, 1] : [65535, Math.ceil((b * H) / 65535)] });
        return;
      }
      const t = attentionTiles(d, dv);
      ctx.dispatch({
        kernel: defs(g, 'FWD', 6),
        bindings: mask ? [q, k, v, out, stats, mask] : [q, k, v, out, stats],
        params: params(g),
        workgroups: useRegister(g) ? [Math.ceil(Sq / 8), b * H] : [Math.ceil(Sq / t.QB), b * H],
      });
      if (probs) {
        ctx.dispatch({
          kernel: defs(g, 'PROBS', 5),
          bindings: mask ? [q, k, stats, probs, mask] : [q, k, stats, probs],
          params: params(g),
          workgroups: probsGrid(g),
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
