// Float64 CPU references for the neural-network kernels (reduce, softmax, norm, embedding,
// rotary, loss): forward and analytic backward, plain loops.
import { gamma, TINY32, U32, ulps } from '../util.ts';

export function numel(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** [outer, n, inner] view of `shape` around `axis` (negative allowed). */
export function axisSplit(shape: number[], axis: number): { outer: number; n: number; inner: number } {
  if (axis < 0) axis += shape.length;
  return { outer: numel(shape.slice(0, axis)), n: shape[axis], inner: numel(shape.slice(axis + 1)) };
}

export function sumRef(x: ArrayLike<number>, shape: number[], axis: number, scale = 1): Float64Array {
  const { outer, n, inner } = axisSplit(shape, axis);
  const y = new Float64Array(outer * inner);
  for (let o = 0; o < outer; o++)
    for (let j = 0; j < n; j++)
      for (let i = 0; i < inner; i++) y[o * inner + i] += x[(o * n + j) * inner + i];
  return y.map((v) => v * scale);
}

/** d/dx of Σ dy·(scale·Σ_axis x): scale·dy broadcast along the axis. */
export function sumBackRef(dy: ArrayLike<number>, shape: number[], axis: number, scale = 1): Float64Array {
  const { outer, n, inner } = axisSplit(shape, axis);
  const dx = new Float64Array(outer * n * inner);
  for (let o = 0; o < outer; o++)
    for (let j = 0; j < n; j++)
      for (let i = 0; i < inner; i++) dx[(o * n + j) * inner + i] = scale * dy[o * inner + i];
  return dx;
}

/** Max values and the index (along the axis) of the first maximum. */
export function maxRef(x: ArrayLike<number>, shape: number[], axis: number): { y: Float64Array; idx: Int32Array } {
  const { outer, n, inner } = axisSplit(shape, axis);
  const y = new Float64Array(outer * inner), idx = new Int32Array(outer * inner);
  for (let o = 0; o < outer; o++)
    for (let i = 0; i < inner; i++) {
      let best = -Infinity, bi = 0;
      for (let j = 0; j < n; j++) {
        const v = x[(o * n + j) * inner + i];
        if (v > best) {
          best = v;
          bi = j;
        }
      }
      y[o * inner + i] = best;
      idx[o * inner + i] = bi;
    }
  return { y, idx };
}

export function maxBackRef(dy: ArrayLike<number>, idx: Int32Array, shape: number[], axis: number): Float64Array {
  const { outer, n, inner } = axisSplit(shape, axis);
  const dx = new Float64Array(outer * n * inner);
  for (let o = 0; o < outer; o++) for (let i = 0; i < inner; i++) dx[(o * n + idx[o * inner + i]) * inner + i] = dy[o * inner + i];
  return dx;
}

/** For each element of x (shape), whether the broadcast mask is 0 there. */
export function maskZeros(mask: ArrayLike<number>, maskShape: number[], shape: number[]): boolean[] {
  const off = shape.length - maskShape.length;
  const mstr = new Array(maskShape.length).fill(1);
  for (let i = maskShape.length - 2; i >= 0; i--) mstr[i] = mstr[i + 1] * maskShape[i + 1];
  const out: boolean[] = [];
  const coord = new Array(shape.length).fill(0);
  for (let e = 0; e < numel(shape); e++) {
    let r = e;
    for (let d = shape.length - 1; d >= 0; d--) {
      coord[d] = r % shape[d];
      r = Math.floor(r / shape[d]);
    }
    let m = 0;
    for (let d = 0; d < maskShape.length; d++) if (maskShape[d] !== 1) m += coord[d + off] * mstr[d];
    out.push(mask[m] === 0);
  }
  return out;
}

/** Softmax over rows of K; where `zero[e]` the logit is replaced by -1e9 first. */
export function softmaxRef(x: ArrayLike<number>, K: number, zero?: boolean[]): Float64Array {
  const y = new Float64Array(x.length);
  for (let b = 0; b < x.length; b += K) {
    let mx = -Infinity;
    const z = new Float64Array(K);
    for (let j = 0; j < K; j++) {
      z[j] = zero?.[b + j] ? -1e9 : x[b + j];
      mx = Math.max(mx, z[j]);
    }
    let s = 0;
    for (let j = 0; j < K; j++) s += Math.exp(z[j] - mx);
    for (let j = 0; j < K; j++) y[b + j] = Math.exp(z[j] - mx) / s;
  }
  return y;
}

/** dx = y ⊙ (dy − Σ dy⊙y), 0 where masked. */
export function softmaxBackRef(y: ArrayLike<number>, dy: ArrayLike<number>, K: number, zero?: boolean[]): Float64Array {
  const dx = new Float64Array(y.length);
  for (let b = 0; b < y.length; b += K) {
    let s = 0;
    for (let j = 0; j < K; j++) s += dy[b + j] * y[b + j];
    for (let j = 0; j < K; j++) dx[b + j] = zero?.[b + j] ? 0 : y[b + j] * (dy[b + j] - s);
  }
  return dx;
}

export function logSoftmaxRef(x: ArrayLike<number>, K: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let b = 0; b < x.length; b += K) {
    let mx = -Infinity;
    for (let j = 0; j < K; j++) mx = Math.max(mx, x[b + j]);
    let s = 0;
    for (let j = 0; j < K; j++) s += Math.exp(x[b + j] - mx);
    const ls = Math.log(s);
    for (let j = 0; j < K; j++) y[b + j] = x[b + j] - mx - ls;
  }
  return y;
}

/** dx = dy − softmax(x)·Σ dy, with y = logSoftmax(x). */
export function logSoftmaxBackRef(y: ArrayLike<number>, dy: ArrayLike<number>, K: number): Float64Array {
  const dx = new Float64Array(y.length);
  for (let b = 0; b < y.length; b += K) {
    let s = 0;
    for (let j = 0; j < K; j++) s += dy[b + j];
    for (let j = 0; j < K; j++) dx[b + j] = dy[b + j] - Math.exp(y[b + j]) * s;
  }
  return dx;
}

export function rmsNormRef(x: ArrayLike<number>, w: ArrayLike<number>, D: number, eps: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let b = 0; b < x.length; b += D) {
    let ss = 0;
    for (let j = 0; j < D; j++) ss += x[b + j] * x[b + j];
    const r = 1 / Math.sqrt(ss / D + eps);
    for (let j = 0; j < D; j++) y[b + j] = x[b + j] * r * w[j];
  }
  return y;
}

/** Gradients of Σ dy⊙rmsNorm(x, w) with respect to x and w. */
export function rmsNormBackRef(x: ArrayLike<number>, w: ArrayLike<number>, dy: ArrayLike<number>, D: number, eps: number): { dx: Float64Array; dw: Float64Array } {
  const dx = new Float64Array(x.length), dw = new Float64Array(D);
  for (let b = 0; b < x.length; b += D) {
    let ss = 0, s = 0;
    for (let j = 0; j < D; j++) {
      ss += x[b + j] * x[b + j];
      s += w[j] * dy[b + j] * x[b + j];
    }
    const r = 1 / Math.sqrt(ss / D + eps);
    for (let j = 0; j < D; j++) {
      dx[b + j] = r * w[j] * dy[b + j] - (x[b + j] * r * r * r * s) / D;
      dw[j] += dy[b + j] * x[b + j] * r;
    }
  }
  return { dx, dw };
}

/** Rows of table picked by ids; out-of-range ids give zeros. */
export function embeddingRef(ids: ArrayLike<number>, table: ArrayLike<number>, V: number, D: number): Float64Array {
  const y = new Float64Array(ids.length * D);
  for (let t = 0; t < ids.length; t++) {
    const id = ids[t];
    if (id < 0 || id >= V) continue;
    for (let f = 0; f < D; f++) y[t * D + f] = table[id * D + f];
  }
  return y;
}

export function embeddingBackRef(ids: ArrayLike<number>, dy: ArrayLike<number>, V: number, D: number): Float64Array {
  const dt = new Float64Array(V * D);
  for (let t = 0; t < ids.length; t++) {
    const id = ids[t];
    if (id < 0 || id >= V) continue;
    for (let f = 0; f < D; f++) dt[id * D + f] += dy[t * D + f];
  }
  return dt;
}

/**
 * Interleaved rotary embedding of x [rows, dh] (pos = row % n) over features [start, start+2m):
 * θ = sign·f32(pos·freqs[i]) (the f32 product the kernel and torch form), cos/sin in float64.
 * With sign = −1 it is also the exact backward (the transpose of the rotation).
 */
export function rotaryRef(x: ArrayLike<number>, freqs: ArrayLike<number>, n: number, dh: number, start: number, sign = 1): Float64Array {
  const y = Float64Array.from(x as ArrayLike<number>);
  const m = freqs.length;
  for (let b = 0, row = 0; b < x.length; b += dh, row++) {
    const pos = row % n;
    for (let i = 0; i < m; i++) {
      const th = sign * Math.fround(pos * freqs[i]);
      const c = Math.cos(th), s = Math.sin(th);
      const a = x[b + start + 2 * i], bb = x[b + start + 2 * i + 1];
      y[b + start + 2 * i] = a * c - bb * s;
      y[b + start + 2 * i + 1] = bb * c + a * s;
    }
  }
  return y;
}

/** Mean cross entropy over rows whose label != ignore (0 if none). */
export function crossEntropyRef(logits: ArrayLike<number>, labels: ArrayLike<number>, V: number, ignore: number): number {
  let s = 0, count = 0;
  for (let r = 0; r < labels.length; r++) {
    if (labels[r] === ignore) continue;
    let mx = -Infinity;
    for (let j = 0; j < V; j++) mx = Math.max(mx, logits[r * V + j]);
    let e = 0;
    for (let j = 0; j < V; j++) e += Math.exp(logits[r * V + j] - mx);
    s += mx + Math.log(e) - logits[r * V + labels[r]];
    count++;
  }
  return count ? s / count : 0;
}

/** d loss / d logits times the upstream gradient g. */
export function crossEntropyBackRef(logits: ArrayLike<number>, labels: ArrayLike<number>, V: number, ignore: number, g = 1): Float64Array {
  const dx = new Float64Array(logits.length);
  let count = 0;
  for (let r = 0; r < labels.length; r++) if (labels[r] !== ignore) count++;
  if (!count) return dx;
  for (let r = 0; r < labels.length; r++) {
    if (labels[r] === ignore) continue;
    let mx = -Infinity;
    for (let j = 0; j < V; j++) mx = Math.max(mx, logits[r * V + j]);
    let e = 0;
    for (let j = 0; j < V; j++) e += Math.exp(logits[r * V + j] - mx);
    for (let j = 0; j < V; j++) dx[r * V + j] = (g * (Math.exp(logits[r * V + j] - mx) / e - (j === labels[r] ? 1 : 0))) / count;
  }
  return dx;
}

/** Indices 0..n-1 in a random order, the first k (for finite-difference spot checks). */
export function sampleIndices(n: number, k: number, next: () => number): number[] {
  const all = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [all[i], all[j]] = [all[j], all[i]];
  }
  return all.slice(0, Math.min(k, n));
}

/** Central finite differences of f at the given indices of x only. */
export function finiteDiffAt(f: (x: Float64Array) => number, x: Float64Array, at: number[], h = 1e-6): Float64Array {
  const g = new Float64Array(at.length);
  const y = Float64Array.from(x);
  at.forEach((i, k) => {
    y[i] = x[i] + h;
    const fp = f(y);
    y[i] = x[i] - h;
    const fm = f(y);
    y[i] = x[i];
    g[k] = (fp - fm) / (2 * h);
  });
  return g;
}

/**
 * Per-element error bounds of an f32 rmsNorm (y, dx, dw) against rmsNormRef/rmsNormBackRef,
 * model in tests/util.ts. Per row: Σx² is D positive terms (γ_D), /D and +ε two roundings (ε
 * itself rounded to f32: one more), so the mean square is off by γ_{D+3} relative; the square
 * root halves that, sqrt and ÷ add 7 ULP: ε_r = γ_{D+3}/2 + ulps(7). y = x·r·w: ε_r + γ_2.
 * dx = r·w·dy − x·r³·s/D with s = Σ w·dy·x (γ_D on magnitudes): r³ carries 3ε_r. dw = Σ over
 * rows of dy·x·r. Second-order terms: factor 1.001.
 */
export function rmsNormBounds(x: ArrayLike<number>, w: ArrayLike<number>, dy: ArrayLike<number>, D: number, eps: number) {
  const y = new Float64Array(x.length), dx = new Float64Array(x.length), dw = new Float64Array(D);
  const rows = x.length / D;
  for (let b = 0; b < x.length; b += D) {
    let ss = 0, s = 0, sAbs = 0;
    for (let j = 0; j < D; j++) {
      ss += x[b + j] * x[b + j];
      s += w[j] * dy[b + j] * x[b + j];
      sAbs += Math.abs(w[j] * dy[b + j] * x[b + j]);
    }
    const r = 1 / Math.sqrt(ss / D + eps);
    const er = gamma(D + 3) / 2 + ulps(7);
    for (let j = 0; j < D; j++) {
      const t1 = Math.abs(r * w[j] * dy[b + j]), t2 = (Math.abs(x[b + j]) * r ** 3 * Math.abs(s)) / D;
      y[b + j] = 1.001 * Math.abs(x[b + j] * r * w[j]) * (er + gamma(2));
      dx[b + j] = 1.001 * (t1 * (er + gamma(4)) + t2 * (3 * er + gamma(6)) + (Math.abs(x[b + j]) * r ** 3 / D) * gamma(D + 2) * sAbs);
      dw[j] += 1.001 * Math.abs(dy[b + j] * x[b + j] * r) * (er + gamma(rows + 2));
    }
  }
  return { y, dx, dw };
}

/**
 * Softmax error model (tests/util.ts) per row of K: d_j = z_j − max is one rounding (u|d_j|, which
 * exp turns into a relative u|d_j|); WGSL exp is within 3 + 2|d| ULP (exp2-based: 3 + 3|d| covers
 * the log₂e scaling); the sum of K positive terms adds γ_K plus the terms' own errors weighted by
 * their share y_k. Per element the exp's relative error ε_j = ulps(3 + 3|d_j|) + 3u|d_j|, per row
 * the sum's ε_S = Σ_k ε_k·y_k + γ_K (yr: the float64 softmax, or the shares exp(d_k)/S).
 */
export function softmaxRowErrors(X: ArrayLike<number>, K: number, zero: boolean[] | undefined, yr: ArrayLike<number>) {
  const eps = new Float64Array(X.length), epsS = new Float64Array(X.length / K);
  for (let b = 0, r = 0; b < X.length; b += K, r++) {
    let mx = -Infinity;
    for (let j = 0; j < K; j++) mx = Math.max(mx, zero?.[b + j] ? -1e9 : X[b + j]);
    let es = gamma(K);
    for (let j = 0; j < K; j++) {
      const d = Math.abs((zero?.[b + j] ? -1e9 : X[b + j]) - mx);
      eps[b + j] = ulps(3 + 3 * d) + 3 * U32 * d;
      es += eps[b + j] * yr[b + j];
    }
    epsS[r] = es;
  }
  return { eps, epsS };
}

/**
 * Per-element bounds of the f32 softmax (y = e_j / S, the division 2.5 ULP:
 * |Δy_j| ≤ y_j(ε_j + ε_S + ulps(2.5))) and of its backward dx_j = y_j(w_j − Σ_k w_k·y_k), which
 * carries the forward errors (the kernel reads its own y) and a γ_K sum plus three roundings.
 * Second-order terms: factor 1.001. Results that underflow may be flushed to zero: TINY32 terms.
 */
export function softmaxBounds(X: ArrayLike<number>, W: ArrayLike<number>, K: number, zero: boolean[] | undefined, yr: Float64Array) {
  const { eps, epsS } = softmaxRowErrors(X, K, zero, yr);
  // Plus 2·TINY32 absolute: exp(d) and the quotient may underflow to subnormals, flushed to 0.
  const dy = yr.map((y, i) => 1.001 * y * (eps[i] + epsS[Math.floor(i / K)] + ulps(2.5)) + 2 * TINY32);
  const dg = new Float64Array(X.length);
  for (let b = 0; b < X.length; b += K) {
    let s = 0, sAbs = 0, sErr = 0;
    for (let j = 0; j < K; j++) {
      s += W[b + j] * yr[b + j];
      sAbs += Math.abs(W[b + j]) * yr[b + j];
      sErr += Math.abs(W[b + j]) * dy[b + j];
    }
    for (let j = b; j < b + K; j++)
      dg[j] = 1.001 * (dy[j] * (Math.abs(W[j]) + Math.abs(s) + sErr) + yr[j] * (sErr + gamma(K) * sAbs) + gamma(3) * yr[j] * (Math.abs(W[j]) + sAbs)) + 2 * TINY32 * (Math.abs(W[j]) + sAbs + 1);
  }
  return { y: dy, dx: dg };
}

/**
 * Per-element bounds of the f32 logSoftmax against logSoftmaxRef/logSoftmaxBackRef (yr, W: the
 * upstream gradient). y_j = d_j − log S: the subtraction's rounding of d (u|d|), log S off by S's
 * relative error ε_S (softmaxRowErrors; S ≥ 1) plus log's own 3 ULP (absolute 2⁻²¹ on [0.5, 2]),
 * and one rounding of the result. dx_j = w_j − exp(y_j)·Σw: exp's 3 + 2|y| ULP and y's error
 * relative to p_j = exp(y_j), the sum γ_K, two roundings.
 */
export function logSoftmaxBounds(X: ArrayLike<number>, W: ArrayLike<number>, K: number, yr: Float64Array) {
  const p = yr.map(Math.exp);
  const { epsS } = softmaxRowErrors(X, K, undefined, p);
  const yB = new Float64Array(yr.length), gB = new Float64Array(yr.length);
  for (let b = 0, r = 0; b < yr.length; b += K, r++) {
    let mx = -Infinity, ws = 0, wAbs = 0;
    for (let j = 0; j < K; j++) {
      mx = Math.max(mx, X[b + j]);
      ws += W[b + j];
      wAbs += Math.abs(W[b + j]);
    }
    const ls = Math.abs(yr[b] - (X[b] - mx));
    for (let j = b; j < b + K; j++) {
      const d = Math.abs(X[j] - mx);
      yB[j] = 1.001 * (U32 * d + epsS[r] + Math.max(ulps(3) * ls, 2 ** -21) + U32 * (d + ls));
      gB[j] = 1.001 * (p[j] * (ulps(3 + 2 * Math.abs(yr[j])) + yB[j]) * (Math.abs(ws) + gamma(K) * wAbs) + p[j] * gamma(K) * wAbs + gamma(2) * (Math.abs(W[j]) + p[j] * wAbs));
    }
  }
  return { y: yB, dx: gB };
}

/**
 * Error bounds of the f32 cross-entropy (shaders/loss.wgsl; model in tests/util.ts, as for
 * softmax). Per row, with d_k = x_k − max: S = Σexp(d_k) within ε_S (softmaxRowErrors), log S
 * within δ_L = ε_S + log's 3 ULP (2⁻²¹ absolute on [0.5, 2]). The row loss (max − x_label) + log S
 * adds u|d_label| and a rounding; the mean is a sum over the counted rows (γ_count) and a division
 * (2.5 ULP). The gradient is g·(p_j − [j = label])/count with p_j = exp(x_j − lse) and
 * lse = max + log S stored f32: lse off by δ_L + u|lse|, a_j = x_j − lse one more rounding,
 * exp 3 + 2|a_j| ULP of p_j; then p − [hot] one rounding, g/count 2.5 ULP and the product one:
 * 7u on |p − hot|. Second-order terms: factor 1.001; underflowing p_j may flush to 0 (TINY32),
 * and so may a subnormal dx itself (another TINY32, absolute).
 */
export function crossEntropyBounds(X: Float64Array, labels: ArrayLike<number>, V: number, ignore: number, g: number) {
  let count = 0;
  for (let r = 0; r < labels.length; r++) if (labels[r] !== ignore) count++;
  const dx = new Float64Array(X.length);
  let lossErr = 0, lossMag = 0;
  for (let r = 0; r < labels.length; r++) {
    if (labels[r] === ignore) continue;
    const row = X.subarray(r * V, (r + 1) * V), p = softmaxRef(row, V);
    const epsS = softmaxRowErrors(row, V, undefined, p).epsS[0];
    let mx = -Infinity, S = 0;
    for (let j = 0; j < V; j++) mx = Math.max(mx, row[j]);
    for (let j = 0; j < V; j++) S += Math.exp(row[j] - mx);
    const logS = Math.log(S), dl = Math.abs(row[labels[r]] - mx);
    const dL = epsS + Math.max(ulps(3) * logS, 2 ** -21);
    lossErr += 1.001 * (dL + U32 * dl + gamma(2) * (logS + dl));
    lossMag += logS + dl;
    const eLse = dL + U32 * Math.abs(mx + logS);
    for (let j = 0; j < V; j++) {
      const a = Math.abs(row[j] - mx) + logS, hot = j === labels[r] ? 1 : 0;
      dx[r * V + j] = (Math.abs(g) / count) * (1.001 * (p[j] * (eLse + U32 * a + ulps(3 + 2 * a)) + 7 * U32 * Math.abs(p[j] - hot)) + 2 * TINY32) + TINY32;
    }
  }
  return { loss: count ? (1.001 * (lossErr + gamma(count) * lossMag) + ulps(2.5) * lossMag) / count : 0, dx };
}

/**
 * Per-element bound of the f32 rotation against rotaryRef: θ = f32(pos)·freq rounds once (u|θ|,
 * and sin/cos have slope ≤ 1); the kernel's own sincos (Cody–Waite reduction, Cephes
 * polynomials, shaders/rotary.wgsl) is within a few ulp of 1: 8u absolute is allowed; then
 * x₁cos θ ∓ x₂sin θ is two products and a sum (γ_3). Partner of element e: e ± 1.
 */
export function rotaryBound(X: ArrayLike<number>, freqs: ArrayLike<number>, n: number, dh: number, start: number): Float64Array {
  const b = new Float64Array(X.length);
  for (let e = 0; e < X.length; e++) {
    const rel = (e % dh) - start;
    if (rel < 0 || rel >= 2 * freqs.length) continue; // copied: exact
    const theta = (Math.floor(e / dh) % n) * freqs[rel >> 1];
    const partner = rel % 2 === 0 ? e + 1 : e - 1;
    b[e] = (Math.abs(X[e]) + Math.abs(X[partner])) * (8 * U32 + 2 * U32 * Math.abs(theta) + gamma(3));
  }
  return b;
}
