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
