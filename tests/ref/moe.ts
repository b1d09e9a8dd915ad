// Float64 references of the MoE gate, the expert layer (a plain per-token loop, both combine
// modes) and the load-balancing loss, with analytic gradients.
import { act as actF, erf } from './cpu.ts';
import type { Rng } from '../util.ts';

export type ActName = 'relu' | 'silu' | 'gelu' | 'selu' | 'telu';

/** Derivatives of the activations in ./cpu.ts. */
export const actGrad: Record<ActName, (x: number) => number> = {
  relu: (x) => (x > 0 ? 1 : 0),
  silu: (x) => {
    const s = 1 / (1 + Math.exp(-x));
    return s * (1 + x * (1 - s));
  },
  gelu: (x) => 0.5 * (1 + erf(x / Math.SQRT2)) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI),
  selu: (x) => 1.0507009873554805 * (x > 0 ? 1 : 1.6732632423543772 * Math.exp(x)),
  telu: (x) => {
    const t = Math.tanh(Math.exp(x));
    return t + x * Math.exp(x) * (1 - t * t);
  },
};

/** probs = softmax(x·Wᵀ) [N,E]; top-k (prob descending, ties to the lower index), renormalised. */
export function gateRef(x: ArrayLike<number>, W: ArrayLike<number>, N: number, d: number, E: number, k: number) {
  const probs = new Float64Array(N * E), indices = new Int32Array(N * k), weights = new Float64Array(N * k);
  for (let t = 0; t < N; t++) {
    const z = new Float64Array(E);
    for (let e = 0; e < E; e++) for (let c = 0; c < d; c++) z[e] += x[t * d + c] * W[e * d + c];
    const m = Math.max(...z);
    let s = 0;
    for (let e = 0; e < E; e++) s += Math.exp(z[e] - m);
    for (let e = 0; e < E; e++) probs[t * E + e] = Math.exp(z[e] - m) / s;
    const order = [...Array(E).keys()].sort((a, b) => probs[t * E + b] - probs[t * E + a] || a - b);
    let S = 0;
    for (let j = 0; j < k; j++) S += probs[t * E + order[j]];
    for (let j = 0; j < k; j++) {
      indices[t * k + j] = order[j];
      weights[t * k + j] = probs[t * E + order[j]] / S;
    }
  }
  return { probs, indices, weights };
}

/** Gradients of L = Σ probs·gP + Σ weights·gW with respect to x [N,d] and W [E,d]. */
export function gateGradRef(x: ArrayLike<number>, W: ArrayLike<number>, N: number, d: number, E: number, k: number, gP: ArrayLike<number>, gW: ArrayLike<number>) {
  const { probs, indices, weights } = gateRef(x, W, N, d, E, k);
  const dx = new Float64Array(N * d), dW = new Float64Array(E * d);
  for (let t = 0; t < N; t++) {
    const dp = new Float64Array(E);
    for (let e = 0; e < E; e++) dp[e] = gP[t * E + e];
    let S = 0, wdw = 0;
    for (let j = 0; j < k; j++) {
      S += probs[t * E + indices[t * k + j]];
      wdw += weights[t * k + j] * gW[t * k + j];
    }
    for (let j = 0; j < k; j++) dp[indices[t * k + j]] += (gW[t * k + j] - wdw) / S;
    let pdp = 0;
    for (let e = 0; e < E; e++) pdp += probs[t * E + e] * dp[e];
    for (let e = 0; e < E; e++) {
      const dz = probs[t * E + e] * (dp[e] - pdp);
      for (let c = 0; c < d; c++) {
        dx[t * d + c] += dz * W[e * d + c];
        dW[e * d + c] += dz * x[t * d + c];
      }
    }
  }
  return { dx, dW };
}

export interface ExpertRef { w1: Float64Array; w3: Float64Array; w2: Float64Array }

/**
 * out[t] = Σ_j c_j · w2·(act(w1·x_t) ⊙ w3·x_t) over the experts idx[t,j]; c_j = 1 ('sum') or
 * weights[t,j] ('weighted'). With gOut also returns the gradients of Σ out·gOut.
 */
export function moeRef(
  x: ArrayLike<number>, indices: ArrayLike<number>, weights: ArrayLike<number>, experts: ExpertRef[],
  N: number, d: number, F: number, k: number, act: ActName, mode: 'sum' | 'weighted', gOut?: ArrayLike<number>,
) {
  const out = new Float64Array(N * d);
  const dx = new Float64Array(N * d), dWeights = new Float64Array(N * k);
  const dExp = experts.map(() => ({ w1: new Float64Array(F * d), w3: new Float64Array(F * d), w2: new Float64Array(d * F) }));
  for (let t = 0; t < N; t++)
    for (let j = 0; j < k; j++) {
      const e = indices[t * k + j];
      const { w1, w3, w2 } = experts[e];
      const c = mode === 'weighted' ? weights[t * k + j] : 1;
      const u1 = new Float64Array(F), u3 = new Float64Array(F), h = new Float64Array(F), y = new Float64Array(d);
      for (let f = 0; f < F; f++) {
        for (let i = 0; i < d; i++) {
          u1[f] += w1[f * d + i] * x[t * d + i];
          u3[f] += w3[f * d + i] * x[t * d + i];
        }
        h[f] = actF[act](u1[f]) * u3[f];
      }
      for (let i = 0; i < d; i++) {
        for (let f = 0; f < F; f++) y[i] += w2[i * F + f] * h[f];
        out[t * d + i] += c * y[i];
      }
      if (!gOut) continue;
      const dy = new Float64Array(d), dh = new Float64Array(F);
      for (let i = 0; i < d; i++) {
        dy[i] = c * gOut[t * d + i];
        dWeights[t * k + j] += gOut[t * d + i] * y[i];
      }
      for (let i = 0; i < d; i++)
        for (let f = 0; f < F; f++) {
          dh[f] += w2[i * F + f] * dy[i];
          dExp[e].w2[i * F + f] += dy[i] * h[f];
        }
      for (let f = 0; f < F; f++) {
        const du1 = dh[f] * u3[f] * actGrad[act](u1[f]), du3 = dh[f] * actF[act](u1[f]);
        for (let i = 0; i < d; i++) {
          dExp[e].w1[f * d + i] += du1 * x[t * d + i];
          dExp[e].w3[f * d + i] += du3 * x[t * d + i];
          dx[t * d + i] += w1[f * d + i] * du1 + w3[f * d + i] * du3;
        }
      }
    }
  return { out, dx, dExp, dWeights: mode === 'weighted' ? dWeights : new Float64Array(N * k) };
}

/** Σ_e p̄_e log(p̄_e + 1e-8), p̄ = column means of probs [N,E]; and its gradient. */
export function lbLossRef(probs: ArrayLike<number>, N: number, E: number) {
  const mean = new Float64Array(E);
  for (let t = 0; t < N; t++) for (let e = 0; e < E; e++) mean[e] += probs[t * E + e] / N;
  let loss = 0;
  for (let e = 0; e < E; e++) loss += mean[e] * Math.log(mean[e] + 1e-8);
  const grad = new Float64Array(N * E);
  for (let t = 0; t < N; t++)
    for (let e = 0; e < E; e++) grad[t * E + e] = (Math.log(mean[e] + 1e-8) + mean[e] / (mean[e] + 1e-8)) / N;
  return { loss, grad };
}

/** k distinct experts per token drawn from `allowed`, and positive weights summing to 1. */
export function randomRoute(R: Rng, N: number, k: number, allowed: number[]) {
  const idx = new Int32Array(N * k), w = new Float64Array(N * k);
  for (let t = 0; t < N; t++) {
    const pool = allowed.slice();
    let s = 0;
    for (let j = 0; j < k; j++) {
      idx[t * k + j] = pool.splice(R.int(0, pool.length - 1), 1)[0];
      s += w[t * k + j] = 0.2 + R.next();
    }
    for (let j = 0; j < k; j++) w[t * k + j] = Math.fround(w[t * k + j] / s);
  }
  return { idx, w };
}

export function randomExperts(R: Rng, E: number, d: number, F: number): ExpertRef[] {
  // ~Xavier scale so that activations stay O(1).
  return Array.from({ length: E }, () => ({
    w1: R.randn(F * d, 1 / Math.sqrt(d)), w3: R.randn(F * d, 1 / Math.sqrt(d)), w2: R.randn(d * F, 1 / Math.sqrt(F)),
  }));
}

/**
 * Per-element error bounds of the f32 expert kernels against moeRef (tests/util.ts model; the
 * activation's own formula error from tests/ref/elementwise-err.ts). Per slot (token t, choice j,
 * expert e): u1 = w1·x, u3 = w3·x (γ_d·Σ|w||x|); a = act(u1) (act's change over u1 ± Δu1 + the formula's error);
 * h = a·u3 (one rounding); y = w2·h (γ_F·Σ|w2||h| + Σ|w2|·Δh); out = Σ_j c_j·y (c_j·y one rounding,
 * γ_k over the choices). Backward: dy = c·gOut; dWeights = gOut·y (γ_d); dh = w2ᵀ·dy (γ_d);
 * du1 = (dh·u3)·act′(u1) (act′'s change over u1 ± Δu1: relu's step too, its formula error,
 * two roundings); du3 = dh·a; dW1 = Σ_slots du1·xᵀ, dW3 likewise, dW2 = Σ_slots dy·hᵀ (γ over the
 * slots routed to the expert); dx = Σ_slots (w1ᵀ·du1 + w3ᵀ·du3) (γ_{2F·k}). Slot weights that
 * carry an error (weightErr: computed by the gate) scale their slot's terms by it. Inputs' errors times
 * the other factor; second-order terms: factor 1.001; flushed underflow: TINY32 per term.
 * `store(value, error)`: the error after storing a forward intermediate (u1, u3, act(u1), h, y)
 * in the tensors' element type (f16: one more rounding each; f32, the default: none); the
 * backward's own intermediates are not modelled as stored.
 */
export function moeBounds(
  x: ArrayLike<number>, indices: ArrayLike<number>, weights: ArrayLike<number>, experts: ExpertRef[],
  N: number, d: number, F: number, k: number, act: ActName, mode: 'sum' | 'weighted', gOut?: ArrayLike<number>,
  actErr: (act: ActName, v: number) => number = () => 0, actGradErr: (act: ActName, v: number) => number = () => 0,
  weightErr?: ArrayLike<number>, store: (value: number, err: number) => number = (_, e) => e,
) {
  const U = 2 ** -24, TINY = 2 ** -126, gam = (n: number) => (n * U) / (1 - n * U);
  // How far act′ (and act) can move for an input off by at most r (the change at the interval's
  // ends: a smooth act′ over an interval of ~1e-6, and relu's step if the interval holds the kink).
  const spread = (g: (v: number) => number, v: number, r: number) => Math.max(Math.abs(g(v + r) - g(v)), Math.abs(g(v - r) - g(v)));
  // Relative error of the slot weight's products: their rounding, and the weight's own error
  // (weights computed by the gate: weightErr) — the weight scales everything of its slot.
  const wtOf = (s: number) => (mode === 'weighted' ? U + (weightErr ? weightErr[s] / Math.abs(weights[s]) : 0) : 0);
  const out = new Float64Array(N * d), outMag = new Float64Array(N * d);
  const dx = new Float64Array(N * d), dxMag = new Float64Array(N * d), dWeights = new Float64Array(N * k);
  const dE = experts.map(() => ({ w1: new Float64Array(F * d), w3: new Float64Array(F * d), w2: new Float64Array(d * F) }));
  const dM = experts.map(() => ({ w1: new Float64Array(F * d), w3: new Float64Array(F * d), w2: new Float64Array(d * F) }));
  const slots = new Float64Array(experts.length);
  for (let t = 0; t < N * k; t++) slots[indices[t]]++;
  for (let t = 0; t < N; t++)
    for (let j = 0; j < k; j++) {
      const e = indices[t * k + j];
      const { w1, w3, w2 } = experts[e];
      const c = mode === 'weighted' ? weights[t * k + j] : 1, wt = wtOf(t * k + j);
      const u1 = new Float64Array(F), u3 = new Float64Array(F), h = new Float64Array(F), eh = new Float64Array(F), av = new Float64Array(F), ea = new Float64Array(F), e1 = new Float64Array(F), e3 = new Float64Array(F);
      for (let f = 0; f < F; f++) {
        let m1 = 0, m3 = 0;
        for (let i = 0; i < d; i++) {
          u1[f] += w1[f * d + i] * x[t * d + i]; m1 += Math.abs(w1[f * d + i] * x[t * d + i]);
          u3[f] += w3[f * d + i] * x[t * d + i]; m3 += Math.abs(w3[f * d + i] * x[t * d + i]);
        }
        e1[f] = store(u1[f], gam(d) * m1 + TINY); e3[f] = store(u3[f], gam(d) * m3 + TINY);
        av[f] = actF[act](u1[f]);
        ea[f] = store(av[f], 1.001 * spread(actF[act], u1[f], e1[f]) + actErr(act, u1[f]));
        h[f] = av[f] * u3[f];
        eh[f] = store(h[f], Math.abs(av[f]) * e3[f] + (Math.abs(u3[f]) + e3[f]) * ea[f] + U * Math.abs(h[f]));
      }
      const y = new Float64Array(d), ey = new Float64Array(d);
      for (let i = 0; i < d; i++) {
        let mag = 0;
        for (let f = 0; f < F; f++) { y[i] += w2[i * F + f] * h[f]; mag += Math.abs(w2[i * F + f]) * (Math.abs(h[f]) + eh[f]); ey[i] += Math.abs(w2[i * F + f]) * eh[f]; }
        ey[i] = store(y[i], ey[i] + gam(F) * mag);
        out[t * d + i] += Math.abs(c) * ey[i] + wt * Math.abs(c * y[i]);
        outMag[t * d + i] += Math.abs(c * y[i]);
      }
      if (!gOut) continue;
      const dy = new Float64Array(d);
      let dwE = 0, dwM = 0;
      for (let i = 0; i < d; i++) {
        dy[i] = c * gOut[t * d + i];
        dwE += Math.abs(gOut[t * d + i]) * ey[i];
        dwM += Math.abs(gOut[t * d + i] * y[i]);
      }
      dWeights[t * k + j] = dwE + gam(d) * dwM;
      const dh = new Float64Array(F), edh = new Float64Array(F);
      for (let f = 0; f < F; f++) {
        let mag = 0;
        for (let i = 0; i < d; i++) { dh[f] += w2[i * F + f] * dy[i]; mag += Math.abs(w2[i * F + f] * dy[i]); }
        edh[f] = (gam(d) + wt) * mag + TINY;
      }
      for (let i = 0; i < d; i++)
        for (let f = 0; f < F; f++) {
          dE[e].w2[i * F + f] += Math.abs(dy[i]) * eh[f] + (U + wt) * Math.abs(dy[i] * h[f]);
          dM[e].w2[i * F + f] += Math.abs(dy[i] * h[f]);
        }
      for (let f = 0; f < F; f++) {
        const g1 = actGrad[act](u1[f]);
        const du1 = dh[f] * u3[f] * g1, du3 = dh[f] * av[f];
        const edu1 = 1.001 * (Math.abs(u3[f] * g1) * edh[f] + Math.abs(dh[f] * g1) * e3[f] + Math.abs(dh[f] * u3[f]) * (actGradErr(act, u1[f]) + spread(actGrad[act], u1[f], e1[f])) + 2 * U * Math.abs(du1)) + TINY;
        const edu3 = Math.abs(av[f]) * edh[f] + Math.abs(dh[f]) * ea[f] + U * Math.abs(du3) + TINY;
        for (let i = 0; i < d; i++) {
          const xi = Math.abs(x[t * d + i]);
          dE[e].w1[f * d + i] += xi * edu1 + U * Math.abs(du1) * xi;
          dM[e].w1[f * d + i] += Math.abs(du1) * xi;
          dE[e].w3[f * d + i] += xi * edu3 + U * Math.abs(du3) * xi;
          dM[e].w3[f * d + i] += Math.abs(du3) * xi;
          dx[t * d + i] += Math.abs(w1[f * d + i]) * edu1 + Math.abs(w3[f * d + i]) * edu3;
          dxMag[t * d + i] += Math.abs(w1[f * d + i] * du1) + Math.abs(w3[f * d + i] * du3);
        }
      }
    }
  const fin = (e: Float64Array, m: Float64Array, n: number) => e.map((v, i) => 1.001 * (v + gam(n) * m[i]) + TINY);
  return {
    out: fin(out, outMag, k), dx: fin(dx, dxMag, 2 * F * k), dWeights: dWeights.map((v) => 1.001 * v + TINY),
    dExp: dE.map((b, e) => ({ w1: fin(b.w1, dM[e].w1, slots[e]), w3: fin(b.w3, dM[e].w3, slots[e]), w2: fin(b.w2, dM[e].w2, slots[e]) })),
  };
}

/**
 * Per-element error bounds of topkGate (shaders/moe.wgsl GATE_FWD/GATE_BWD, logits by matmul),
 * the load-balancing loss and the gradients to x and W, against gateRef / lbLossRef /
 * gateGradRef (tests/util.ts model). Logits: γ_d·Σ|x||W|; probs: softmax's relative error as in
 * tests/ref/attention.ts (the logits' errors δ_e + Σp·δ, exp 3 + 3|x| ULP, γ_E, ÷); weights =
 * p/Σ_sel p (γ_k, one more ÷); lb = Σ_e m̄·log(m̄ + 1e-8), m̄ = (Σ_t p)·(1/N): the mean's error,
 * log's 3 ULP (2⁻²¹ absolute on [0.5, 2]) and the input's error over a, products, γ_E; its
 * gradient (log a + m̄/a)/N through the same ops. Backward: dp = gP (+ lb's) + (gW − Σw·gW)/S at
 * the picks, pdp = Σp·dp (γ_E), dz = p(dp − pdp), dx = dz·W (γ_E), dW = dzᵀ·x (γ_N); each
 * input's error times the other factor. gWErr: errors of gW when computed upstream.
 * `store(value, error)`: the error after storing the logits in the tensors' element type (f16:
 * one more rounding; f32, the default: none). probs and weights bound the f32 values the kernel
 * computes (and picks by), before their own store.
 */
export function gateBounds(
  x: ArrayLike<number>, W: ArrayLike<number>, N: number, d: number, E: number, k: number,
  gP?: ArrayLike<number>, withLb = false, gW?: ArrayLike<number>, gWErr?: ArrayLike<number>,
  store: (value: number, err: number) => number = (_, e) => e,
) {
  const U = 2 ** -24, TINY = 2 ** -126, ulps = (n: number) => 2 * n * U, gam = (n: number) => (n * U) / (1 - n * U);
  const { probs, indices, weights } = gateRef(x, W, N, d, E, k);
  const bP = new Float64Array(N * E), bW = new Float64Array(N * k);
  for (let t = 0; t < N; t++) {
    const z = new Float64Array(E), dl = new Float64Array(E);
    for (let e = 0; e < E; e++) for (let c = 0; c < d; c++) { z[e] += x[t * d + c] * W[e * d + c]; dl[e] += gam(d) * Math.abs(x[t * d + c] * W[e * d + c]); }
    for (let e = 0; e < E; e++) dl[e] = store(z[e], dl[e]);
    const m = Math.max(...z);
    let sd = 0, se = 0;
    const eps = z.map((v) => ulps(3 + 3 * (m - v)) + 3 * U * (m - v));
    for (let e = 0; e < E; e++) { sd += probs[t * E + e] * dl[e]; se += probs[t * E + e] * eps[e]; }
    // The logits' errors move p_e by a factor within exp(±(dl_e + c·Σp·dl)), c = (e^M − 1)/M,
    // M = max dl (Jensen, and exp's convexity on [0, M]): not first order, for f16 logits.
    const M = Math.max(...dl), cM = M > 0 ? Math.expm1(M) / M : 1;
    const rho = new Float64Array(E);
    for (let e = 0; e < E; e++) {
      rho[e] = 1.001 * (Math.expm1(dl[e] + cM * sd) + eps[e] + se + gam(E) + ulps(2.5));
      bP[t * E + e] = rho[e] * probs[t * E + e] + TINY;
    }
    let S = 0, sRho = 0;
    for (let j = 0; j < k; j++) S += probs[t * E + indices[t * k + j]];
    for (let j = 0; j < k; j++) sRho += (probs[t * E + indices[t * k + j]] / S) * rho[indices[t * k + j]];
    // p_e/Σ_sel p: within (1 + ρ_e)/(1 − ρ_S) of the ratio (ρ_S = Σ_sel share·ρ), γ_k and the ÷.
    for (let j = 0; j < k; j++) bW[t * k + j] = 1.001 * ((rho[indices[t * k + j]] + sRho) / (1 - sRho) + gam(k) + ulps(2.5)) * weights[t * k + j] + TINY;
  }
  // The load-balancing loss and its gradient wrt probs (the same for every token).
  const lb = lbLossRef(probs, N, E);
  const mean = new Float64Array(E), eMean = new Float64Array(E);
  for (let t = 0; t < N; t++) for (let e = 0; e < E; e++) { mean[e] += probs[t * E + e] / N; eMean[e] += bP[t * E + e] / N; }
  let eLb = 0, lbMag = 0;
  const eLbGrad = new Float64Array(E);
  for (let e = 0; e < E; e++) {
    eMean[e] = 1.001 * (eMean[e] + gam(N) * mean[e] + 2 * U * mean[e]);
    const a = mean[e] + 1e-8, eA = eMean[e] + gam(2) * a;
    const lg = Math.log(a), eLog = eA / a + (a >= 0.5 && a <= 2 ? 2 ** -21 : ulps(3) * Math.abs(lg));
    eLb += mean[e] * eLog + Math.abs(lg) * eMean[e] + U * Math.abs(mean[e] * lg);
    lbMag += Math.abs(mean[e] * lg);
    const q = mean[e] / a;
    eLbGrad[e] = 1.001 * ((eLog + eMean[e] / a + mean[e] * eA / (a * a) + (ulps(2.5) + U) * q + 3 * U * (Math.abs(lg) + q)) / N + 2 * U * Math.abs(lg + q) / N);
  }
  eLb = 1.001 * (eLb + gam(E) * lbMag);
  if (!gP && !gW) return { probs: bP, weights: bW, lb: eLb };
  const dx = new Float64Array(N * d), dxMag = new Float64Array(N * d), dW = new Float64Array(E * d), dWMag = new Float64Array(E * d);
  for (let t = 0; t < N; t++) {
    let S = 0, eS = 0, wdw = 0, eWdw = 0, wdwMag = 0;
    for (let j = 0; j < k; j++) {
      const e = indices[t * k + j];
      S += probs[t * E + e]; eS += bP[t * E + e];
      const g = gW ? gW[t * k + j] : 0, eg = gWErr ? gWErr[t * k + j] : 0;
      wdw += weights[t * k + j] * g; wdwMag += Math.abs(weights[t * k + j] * g);
      eWdw += bW[t * k + j] * Math.abs(g) + weights[t * k + j] * eg;
    }
    eS += gam(k) * S; eWdw += gam(k) * wdwMag;
    const dp = new Float64Array(E), edp = new Float64Array(E);
    for (let e = 0; e < E; e++) {
      const lbg = withLb ? lb.grad[t * E + e] : 0;
      dp[e] = (gP ? gP[t * E + e] : 0) + lbg;
      edp[e] = withLb ? eLbGrad[e] + U * Math.abs(dp[e]) : 0;
    }
    for (let j = 0; j < k; j++) {
      const e = indices[t * k + j], g = gW ? gW[t * k + j] : 0, eg = gWErr ? gWErr[t * k + j] : 0;
      const num = g - wdw, q = num / S;
      dp[e] += q;
      edp[e] += (eg + eWdw + U * Math.abs(num)) / S + Math.abs(num) * eS / (S * S) + ulps(2.5) * Math.abs(q) + U * Math.abs(dp[e]);
    }
    let pdp = 0, ePdp = 0, pdpMag = 0;
    for (let e = 0; e < E; e++) {
      const p = probs[t * E + e];
      pdp += p * dp[e]; pdpMag += p * Math.abs(dp[e]);
      ePdp += bP[t * E + e] * Math.abs(dp[e]) + p * edp[e];
    }
    ePdp += gam(E) * pdpMag;
    for (let e = 0; e < E; e++) {
      const p = probs[t * E + e], dz = p * (dp[e] - pdp);
      const edz = 1.001 * (bP[t * E + e] * Math.abs(dp[e] - pdp) + p * (edp[e] + ePdp) + gam(2) * p * (Math.abs(dp[e]) + Math.abs(pdp))) + TINY;
      for (let c = 0; c < d; c++) {
        dx[t * d + c] += edz * Math.abs(W[e * d + c]); dxMag[t * d + c] += Math.abs(dz * W[e * d + c]);
        dW[e * d + c] += edz * Math.abs(x[t * d + c]); dWMag[e * d + c] += Math.abs(dz * x[t * d + c]);
      }
    }
  }
  return {
    probs: bP, weights: bW, lb: eLb,
    dx: dx.map((v, i) => 1.001 * (v + gam(E) * dxMag[i]) + TINY), dW: dW.map((v, i) => 1.001 * (v + gam(N) * dWMag[i]) + TINY),
  };
}
