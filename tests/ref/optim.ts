// Float64 references for the optimiser: torch 1.13 single-tensor AdamW and clip_grad_norm_.

export interface AdamWRefState {
  step: number;
  m: Float64Array;
  v: Float64Array;
  vmax: Float64Array;
}

export function adamwRefInit(n: number): AdamWRefState {
  return { step: 0, m: new Float64Array(n), v: new Float64Array(n), vmax: new Float64Array(n) };
}

/** One AdamW step of one parameter, in place on `p` and `st` (float64 throughout). */
export function adamwRefStep(
  p: Float64Array, g: ArrayLike<number>, st: AdamWRefState,
  o: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; amsgrad: boolean },
): void {
  st.step++;
  const bc1 = 1 - o.beta1 ** st.step, bc2 = 1 - o.beta2 ** st.step;
  for (let i = 0; i < p.length; i++) {
    p[i] *= 1 - o.lr * o.weightDecay;
    st.m[i] = o.beta1 * st.m[i] + (1 - o.beta1) * g[i];
    st.v[i] = o.beta2 * st.v[i] + (1 - o.beta2) * g[i] * g[i];
    st.vmax[i] = Math.max(st.vmax[i], st.v[i]);
    const v = o.amsgrad ? st.vmax[i] : st.v[i];
    p[i] -= (o.lr / bc1) * st.m[i] / (Math.sqrt(v) / Math.sqrt(bc2) + o.eps);
  }
}

/** clip_grad_norm_: total L2 norm and the clipped gradients. */
export function clipRef(grads: ArrayLike<number>[], maxNorm: number): { total: number; grads: Float64Array[] } {
  let s = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) s += g[i] * g[i];
  const total = Math.sqrt(s);
  const coef = Math.min(1, maxNorm / (total + 1e-6));
  return { total, grads: grads.map((g) => Float64Array.from(g, (x) => x * coef)) };
}

/** AdamW reference state with per-element absolute error bounds of the f32 kernel's p, m, v, vmax. */
export interface AdamWErrState extends AdamWRefState { ep: Float64Array; em: Float64Array; ev: Float64Array; evmax: Float64Array }

export function adamwErrInit(n: number): AdamWErrState {
  return { ...adamwRefInit(n), ep: new Float64Array(n), em: new Float64Array(n), ev: new Float64Array(n), evmax: new Float64Array(n) };
}

/**
 * adamwRefStep plus the error bounds of shaders/optim.wgsl ADAMW (tests/util.ts model), carried
 * from step to step: the scalars (decay, β's, 1 − β's, stepSize, √bc2, eps) are computed in
 * float64 and rounded to f32 (u each); pd = p·decay; m = m·β1 + (1−β1)·g (γ₃ of the terms' sum of
 * magnitudes); v = v·β2 + (1−β2)·g·g (γ₄); vmax = max (exact); sqrt 4.5 ULP plus the input's
 * error through |√a − √v| ≤ Δ/(√v + √(v−Δ)); ÷ 2.5 ULP each; p' = pd + (−stepSize)·(m/denom).
 * Each quantity's error is carried by the others' derivatives; second order: factor 1.001.
 */
export function adamwErrStep(
  p: Float64Array, g: ArrayLike<number>, st: AdamWErrState,
  o: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; amsgrad: boolean },
): void {
  const U = 2 ** -24, ulps = (k: number) => 2 * k * U, gam = (n: number) => (n * U) / (1 - n * U);
  const step = st.step + 1;
  const bc1 = 1 - o.beta1 ** step, bc2 = 1 - o.beta2 ** step;
  const decay = 1 - o.lr * o.weightDecay, stepSize = o.lr / bc1, bc2s = Math.sqrt(bc2);
  for (let i = 0; i < p.length; i++) {
    const pd = p[i] * decay, epd = st.ep[i] * decay + gam(2) * Math.abs(pd);
    const m = o.beta1 * st.m[i] + (1 - o.beta1) * g[i];
    st.em[i] = 1.001 * (o.beta1 * st.em[i] + gam(3) * (o.beta1 * Math.abs(st.m[i]) + (1 - o.beta1) * Math.abs(g[i])));
    const v = o.beta2 * st.v[i] + (1 - o.beta2) * g[i] * g[i];
    st.ev[i] = 1.001 * (o.beta2 * st.ev[i] + gam(4) * (o.beta2 * st.v[i] + (1 - o.beta2) * g[i] * g[i]));
    const vmax = Math.max(st.vmax[i], v);
    st.evmax[i] = Math.max(st.evmax[i], st.ev[i]);
    const vm = o.amsgrad ? vmax : v, evm = o.amsgrad ? st.evmax[i] : st.ev[i];
    const s = Math.sqrt(vm), es = evm / (s + Math.sqrt(Math.max(vm - evm, 0))) + ulps(4.5) * s;
    const q = s / bc2s, eq = es / bc2s + (ulps(2.5) + U) * q;
    const den = q + o.eps, eden = eq + 2 * U * den;
    const r = m / den, er = st.em[i] / den + (Math.abs(m) * eden) / (den * den) + ulps(2.5) * Math.abs(r);
    const upd = -stepSize * r, eu = stepSize * er + gam(2) * Math.abs(upd);
    st.ep[i] = 1.001 * (epd + eu + U * Math.abs(pd + upd));
  }
  adamwRefStep(p, g, st, o);
}

/**
 * clipRef plus error bounds of shaders/optim.wgsl NORM/SCALE: each tensor's Σg² (squares and an
 * any-order sum: γ_{n+1}, Kahan only helps), its sqrt (4.5 ULP) squared again, the sum over the
 * tensors (γ_count), the final sqrt; coef = min(maxNorm/(total + 1e-6), 1) (maxNorm and 1e-6
 * rounded, the sum, ÷ 2.5 ULP; exactly 1 when not clipping); out = g·coef (one rounding).
 */
export function clipErr(grads: ArrayLike<number>[], maxNorm: number) {
  const U = 2 ** -24, ulps = (k: number) => 2 * k * U, gam = (n: number) => (n * U) / (1 - n * U);
  const ref = clipRef(grads, maxNorm);
  const nMax = Math.max(...grads.map((g) => g.length));
  const eTotal = 1.001 * (0.5 * (gam(nMax + 1) + 2 * ulps(4.5) + U + gam(grads.length)) + ulps(4.5));
  const coef = Math.min(1, maxNorm / (ref.total + 1e-6));
  const eCoef = coef < 1 ? 1.001 * (eTotal * ref.total / (ref.total + 1e-6) + 3 * U + ulps(2.5)) : 0;
  return { ...ref, totalBound: eTotal * ref.total, gradBounds: ref.grads.map((g) => g.map((x) => 1.001 * (eCoef + U) * Math.abs(x))) };
}
