// Float64 reference of masked scaled-dot-product attention and its analytic gradient.
// Layout: q [BH,Sq,d], k [BH,Sk,d], v [BH,Sk,dv] (row-major), mask [b,Sq,Sk] with
// BH = b·H (1 keep, 0 masked: score replaced by −1e9 like PyTorch masked_fill).

export interface AttnDims { b: number; H: number; Sq: number; Sk: number; d: number; dv: number }

function scores(q: ArrayLike<number>, k: ArrayLike<number>, dm: AttnDims, scale: number, mask?: ArrayLike<number>): Float64Array {
  const { b, H, Sq, Sk, d } = dm;
  const S = new Float64Array(b * H * Sq * Sk);
  for (let bh = 0; bh < b * H; bh++)
    for (let i = 0; i < Sq; i++)
      for (let j = 0; j < Sk; j++) {
        let s = 0;
        for (let c = 0; c < d; c++) s += q[(bh * Sq + i) * d + c] * k[(bh * Sk + j) * d + c];
        s *= scale;
        const bb = Math.floor(bh / H);
        if (mask && mask[(bb * Sq + i) * Sk + j] === 0) s = -1e9;
        S[(bh * Sq + i) * Sk + j] = s;
      }
  return S;
}

/** out [BH,Sq,dv] and probs [BH,Sq,Sk]. */
export function attentionRef(q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, dm: AttnDims, scale: number, mask?: ArrayLike<number>) {
  const { b, H, Sq, Sk, dv } = dm;
  const probs = scores(q, k, dm, scale, mask);
  for (let r = 0; r < b * H * Sq; r++) {
    let m = -Infinity, sum = 0;
    for (let j = 0; j < Sk; j++) m = Math.max(m, probs[r * Sk + j]);
    for (let j = 0; j < Sk; j++) sum += probs[r * Sk + j] = Math.exp(probs[r * Sk + j] - m);
    for (let j = 0; j < Sk; j++) probs[r * Sk + j] /= sum;
  }
  const out = new Float64Array(b * H * Sq * dv);
  for (let bh = 0; bh < b * H; bh++)
    for (let i = 0; i < Sq; i++)
      for (let j = 0; j < Sk; j++) {
        const pr = probs[(bh * Sq + i) * Sk + j];
        for (let c = 0; c < dv; c++) out[(bh * Sq + i) * dv + c] += pr * v[(bh * Sk + j) * dv + c];
      }
  return { out, probs };
}

/** Gradients of L = Σ out·gOut + Σ probs·gProbs with respect to q, k, v. */
export function attentionGradRef(
  q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, dm: AttnDims, scale: number,
  gOut: ArrayLike<number>, gProbs?: ArrayLike<number>, mask?: ArrayLike<number>,
) {
  const { b, H, Sq, Sk, d, dv } = dm;
  const { probs } = attentionRef(q, k, v, dm, scale, mask);
  const dq = new Float64Array(q.length), dk = new Float64Array(k.length), dvv = new Float64Array(v.length);
  for (let bh = 0; bh < b * H; bh++) {
    const bb = Math.floor(bh / H);
    for (let i = 0; i < Sq; i++) {
      const row = bh * Sq + i;
      // dP_ij = gOut_i·v_j + gProbs_ij; dS_ij = P_ij (dP_ij − Σ_l P_il dP_il)
      const dP = new Float64Array(Sk);
      for (let j = 0; j < Sk; j++) {
        let s = gProbs ? gProbs[row * Sk + j] : 0;
        for (let c = 0; c < dv; c++) s += gOut[row * dv + c] * v[(bh * Sk + j) * dv + c];
        dP[j] = s;
        for (let c = 0; c < dv; c++) dvv[(bh * Sk + j) * dv + c] += probs[row * Sk + j] * gOut[row * dv + c];
      }
      let dsum = 0;
      for (let j = 0; j < Sk; j++) dsum += probs[row * Sk + j] * dP[j];
      for (let j = 0; j < Sk; j++) {
        if (mask && mask[(bb * Sq + i) * Sk + j] === 0) continue;   // a replaced score has no gradient
        const ds = scale * probs[row * Sk + j] * (dP[j] - dsum);
        for (let c = 0; c < d; c++) {
          dq[row * d + c] += ds * k[(bh * Sk + j) * d + c];
          dk[(bh * Sk + j) * d + c] += ds * q[row * d + c];
        }
      }
    }
  }
  return { dq, dk, dv: dvv };
}

/**
 * Per-element error bounds of the f32 kernels against this reference (tests/util.ts model).
 * Scores s = scale·(q·k): d fused products and the scale, δ = γ_{d+1}·scale·Σ|q||k| absolute
 * (a masked score is replaced exactly: δ = 0). Probabilities p_j = e_j / l, e_j = exp(s_j − m):
 * the score errors shift p_j by the relative δ_j + Σ_k p_k·δ_k (the max cancels); exp is within
 * 3 + 3|x| ULP (tests/softmax.test.ts) of the rounded difference (3u|d_j| more); the online
 * softmax of the tiled kernel rescales what it has by α = exp(m − m_new) once per key tile, and a
 * key's weight carries the α errors of the tiles after it: their arguments add up to at most
 * d_j = m − s_j, so with T ≤ Sk tiles (any tiling) ε_j = ulps(3(T+1) + 6|d_j|) + 3u|d_j| + 2(T+1)u;
 * the sum l adds Σ p_k·ε_k + γ_Sk, the division 2.5 ULP. Then out and the gradients are sums of
 * products of these (γ_n·Σ|terms| each, plus the inputs' errors times the other factor):
 * dP = gO·v (+ gP), dsum = Σ p·dP, dS = scale·p(dP − dsum), dq = dS·k, dk = dSᵀ·q, dv = pᵀ·gO.
 * Second-order terms: factor 1.001; underflow flushed to zero: TINY32 absolute terms.
 * `store(value, error)`: the error after storing an intermediate of the backward (P, dP, dS) in
 * the tensors' element type (f16: one more rounding; f32, the default: none); the products that
 * read a stored value then carry its error times (|other factor| + its error).
 */
export function attentionBounds(
  q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, dm: AttnDims, scale: number, mask?: ArrayLike<number>,
  gOut?: ArrayLike<number>, gProbs?: ArrayLike<number>, store: (value: number, err: number) => number = (_, e) => e,
) {
  const U = 2 ** -24, ulp = (n: number) => 2 * n * U, gam = (n: number) => (n * U) / (1 - n * U), TINY = 2 ** -126;
  const { b, H, Sq, Sk, d, dv } = dm;
  const { probs } = attentionRef(q, k, v, dm, scale, mask);
  const S = scores(q, k, dm, scale, mask);
  const T = Sk;
  const rho = new Float64Array(probs.length);   // relative error of each probability
  const bProbs = new Float64Array(probs.length), bOut = new Float64Array(b * H * Sq * dv);
  const delta = new Float64Array(Sk), eps = new Float64Array(Sk);
  for (let bh = 0; bh < b * H; bh++) {
    const bb = Math.floor(bh / H);
    for (let i = 0; i < Sq; i++) {
      const row = bh * Sq + i;
      let m = -Infinity;
      for (let j = 0; j < Sk; j++) m = Math.max(m, S[row * Sk + j]);
      let sd = 0, se = 0;
      for (let j = 0; j < Sk; j++) {
        const masked = mask && mask[(bb * Sq + i) * Sk + j] === 0;
        let mag = 0;
        if (!masked) for (let c = 0; c < d; c++) mag += Math.abs(q[row * d + c] * k[(bh * Sk + j) * d + c]);
        delta[j] = gam(d + 1) * scale * mag;
        const dj = m - S[row * Sk + j];
        eps[j] = ulp(3 * (T + 1) + 6 * dj) + 3 * U * dj + 2 * (T + 1) * U;
        const p = probs[row * Sk + j];
        sd += p * delta[j];
        se += p * eps[j];
      }
      for (let j = 0; j < Sk; j++) {
        const r = 1.001 * (delta[j] + sd + eps[j] + se + gam(Sk) + ulp(2.5));
        rho[row * Sk + j] = r;
        bProbs[row * Sk + j] = r * probs[row * Sk + j] + 2 * TINY;
      }
      for (let c = 0; c < dv; c++) {
        let e = 0, mag = 0;
        for (let j = 0; j < Sk; j++) {
          const pv = probs[row * Sk + j] * Math.abs(v[(bh * Sk + j) * dv + c]);
          e += rho[row * Sk + j] * pv;
          mag += pv;
        }
        bOut[row * dv + c] = 1.001 * (e + gam(Sk + 1) * mag) + 2 * TINY;
      }
    }
  }
  if (!gOut) return { out: bOut, probs: bProbs };
  const bdq = new Float64Array(q.length), bdk = new Float64Array(k.length), bdv = new Float64Array(v.length);
  // Magnitudes and errors of dS, then of the products that use it.
  const dsAbs = new Float64Array(probs.length), dsErr = new Float64Array(probs.length);
  for (let bh = 0; bh < b * H; bh++) {
    const bb = Math.floor(bh / H);
    for (let i = 0; i < Sq; i++) {
      const row = bh * Sq + i;
      // ePs: the error of P as the backward reads it (stored); eDP: of dP (the product dO·vᵀ
      // stored, then, with gProbs, the sum stored again).
      const dP = new Float64Array(Sk), eDP = new Float64Array(Sk), ePs = new Float64Array(Sk);
      let D = 0, Dmag = 0, Derr = 0;
      for (let j = 0; j < Sk; j++) {
        const gp = gProbs ? gProbs[row * Sk + j] : 0;
        let s = 0, mag = Math.abs(gp);
        for (let c = 0; c < dv; c++) {
          const t = gOut[row * dv + c] * v[(bh * Sk + j) * dv + c];
          s += t; mag += Math.abs(t);
        }
        const e = store(s, gam(dv + 1) * mag);
        s += gp;
        dP[j] = s; eDP[j] = gProbs ? store(s, e) : e;
        const p = probs[row * Sk + j];
        ePs[j] = store(p, rho[row * Sk + j] * p + 2 * TINY);
        D += p * s; Dmag += (p + ePs[j]) * (mag + eDP[j]);
        Derr += ePs[j] * Math.abs(s) + (p + ePs[j]) * eDP[j];
      }
      Derr += gam(Sk) * Dmag;
      for (let j = 0; j < Sk; j++) {
        const masked = mask && mask[(bb * Sq + i) * Sk + j] === 0;
        if (masked) continue;
        const p = probs[row * Sk + j], ds = scale * p * (dP[j] - D);
        dsAbs[row * Sk + j] = Math.abs(ds);
        dsErr[row * Sk + j] = store(ds, 1.001 * scale * (ePs[j] * Math.abs(dP[j] - D) + (p + ePs[j]) * (eDP[j] + Derr) + gam(3) * p * (Math.abs(dP[j]) + Math.abs(D))) + 2 * TINY);
      }
      for (let j = 0; j < Sk; j++) {
        const p = probs[row * Sk + j];
        for (let c = 0; c < dv; c++) {
          const g = Math.abs(gOut[row * dv + c]);
          bdv[(bh * Sk + j) * dv + c] += ePs[j] * g + gam(Sq) * (p + ePs[j]) * g;
        }
        const a = dsAbs[row * Sk + j], e = dsErr[row * Sk + j];
        for (let c = 0; c < d; c++) {
          const kk = Math.abs(k[(bh * Sk + j) * d + c]), qq = Math.abs(q[row * d + c]);
          bdq[row * d + c] += e * kk + gam(Sk) * (a + e) * kk;
          bdk[(bh * Sk + j) * d + c] += e * qq + gam(Sq) * (a + e) * qq;
        }
      }
    }
  }
  const fin = (x: Float64Array) => x.map((e) => 1.001 * e + 2 * TINY);
  return { out: bOut, probs: bProbs, dq: fin(bdq), dk: fin(bdk), dv: fin(bdv) };
}
