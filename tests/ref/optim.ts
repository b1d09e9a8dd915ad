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
