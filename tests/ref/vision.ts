// Float64 CPU references for the vision kernels (conv, batch norm, pooling, bilinear resize),
// forward and analytic backward, written as plainly as possible (PyTorch semantics).

import { abs, gamma, U32, ulps } from '../util.ts';

export interface ConvGeom {
  N: number; C: number; H: number; W: number;
  O: number; K: number; stride: number; pad: number;
}

export function convOut(g: ConvGeom): [number, number] {
  return [Math.floor((g.H + 2 * g.pad - g.K) / g.stride) + 1, Math.floor((g.W + 2 * g.pad - g.K) / g.stride) + 1];
}

/** y[n,o,oh,ow] = b[o] + Σ x[n,c,oh·s−p+ky,ow·s−p+kx]·w[o,c,ky,kx]. */
export function conv2dRef(x: ArrayLike<number>, w: ArrayLike<number>, b: ArrayLike<number> | null, g: ConvGeom): Float64Array {
  const [OH, OW] = convOut(g);
  const { N, C, H, W, O, K, stride, pad } = g;
  const y = new Float64Array(N * O * OH * OW);
  for (let n = 0; n < N; n++)
    for (let o = 0; o < O; o++)
      for (let oh = 0; oh < OH; oh++)
        for (let ow = 0; ow < OW; ow++) {
          let s = b ? b[o] : 0;
          for (let c = 0; c < C; c++)
            for (let ky = 0; ky < K; ky++)
              for (let kx = 0; kx < K; kx++) {
                const ih = oh * stride - pad + ky, iw = ow * stride - pad + kx;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                s += x[((n * C + c) * H + ih) * W + iw] * w[((o * C + c) * K + ky) * K + kx];
              }
          y[((n * O + o) * OH + oh) * OW + ow] = s;
        }
  return y;
}

/** Gradients of Σ dy·conv2d(x, w, b) w.r.t. x, w and b (scatter form, the opposite of the GPU's gathers). */
export function conv2dBackwardRef(x: ArrayLike<number>, w: ArrayLike<number>, dy: ArrayLike<number>, g: ConvGeom) {
  const [OH, OW] = convOut(g);
  const { N, C, H, W, O, K, stride, pad } = g;
  const dx = new Float64Array(N * C * H * W), dw = new Float64Array(O * C * K * K), db = new Float64Array(O);
  for (let n = 0; n < N; n++)
    for (let o = 0; o < O; o++)
      for (let oh = 0; oh < OH; oh++)
        for (let ow = 0; ow < OW; ow++) {
          const d = dy[((n * O + o) * OH + oh) * OW + ow];
          db[o] += d;
          for (let c = 0; c < C; c++)
            for (let ky = 0; ky < K; ky++)
              for (let kx = 0; kx < K; kx++) {
                const ih = oh * stride - pad + ky, iw = ow * stride - pad + kx;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                const xi = ((n * C + c) * H + ih) * W + iw, wi = ((o * C + c) * K + ky) * K + kx;
                dx[xi] += d * w[wi];
                dw[wi] += d * x[xi];
              }
        }
  return { dx, dw, db };
}

export interface BnResult {
  y: Float64Array;
  mean: Float64Array;
  /** Biased batch variance (training) or the running variance (eval). */
  varUsed: Float64Array;
  newRunningMean: Float64Array;
  newRunningVar: Float64Array;
}

/** BatchNorm2d forward over x [N,C,HW] (PyTorch: biased variance to normalise, unbiased into the running stat). */
export function batchNormRef(
  x: ArrayLike<number>, N: number, C: number, HW: number, weight: ArrayLike<number>, bias: ArrayLike<number>,
  rm: ArrayLike<number>, rv: ArrayLike<number>, training: boolean, momentum = 0.1, eps = 1e-5,
): BnResult {
  const y = new Float64Array(N * C * HW), mean = new Float64Array(C), varUsed = new Float64Array(C);
  const newRunningMean = Float64Array.from(rm), newRunningVar = Float64Array.from(rv);
  const cnt = N * HW;
  for (let c = 0; c < C; c++) {
    let mu: number, v: number;
    if (training) {
      let s = 0;
      for (let n = 0; n < N; n++) for (let i = 0; i < HW; i++) s += x[(n * C + c) * HW + i];
      mu = s / cnt;
      let q = 0;
      for (let n = 0; n < N; n++) for (let i = 0; i < HW; i++) q += (x[(n * C + c) * HW + i] - mu) ** 2;
      v = q / cnt;
      newRunningMean[c] = (1 - momentum) * rm[c] + momentum * mu;
      newRunningVar[c] = (1 - momentum) * rv[c] + momentum * (q / (cnt - 1));
    } else {
      mu = rm[c];
      v = rv[c];
    }
    mean[c] = mu;
    varUsed[c] = v;
    const inv = 1 / Math.sqrt(v + eps);
    for (let n = 0; n < N; n++)
      for (let i = 0; i < HW; i++) {
        const j = (n * C + c) * HW + i;
        y[j] = (x[j] - mu) * inv * weight[c] + bias[c];
      }
  }
  return { y, mean, varUsed, newRunningMean, newRunningVar };
}

/** Gradients of Σ dy·BN(x) w.r.t. x, weight, bias (training: through the batch statistics). */
export function batchNormBackwardRef(
  x: ArrayLike<number>, dy: ArrayLike<number>, N: number, C: number, HW: number, weight: ArrayLike<number>,
  mean: ArrayLike<number>, varUsed: ArrayLike<number>, training: boolean, eps = 1e-5,
) {
  const dx = new Float64Array(N * C * HW), dw = new Float64Array(C), db = new Float64Array(C);
  const cnt = N * HW;
  for (let c = 0; c < C; c++) {
    const inv = 1 / Math.sqrt(varUsed[c] + eps);
    let sdy = 0, sdyx = 0;
    for (let n = 0; n < N; n++)
      for (let i = 0; i < HW; i++) {
        const j = (n * C + c) * HW + i;
        sdy += dy[j];
        sdyx += dy[j] * (x[j] - mean[c]) * inv;
      }
    db[c] = sdy;
    dw[c] = sdyx;
    for (let n = 0; n < N; n++)
      for (let i = 0; i < HW; i++) {
        const j = (n * C + c) * HW + i;
        const xhat = (x[j] - mean[c]) * inv;
        dx[j] = training ? weight[c] * inv * (dy[j] - sdy / cnt - xhat * sdyx / cnt) : weight[c] * inv * dy[j];
      }
  }
  return { dx, dw, db };
}

/** MaxPool2d (padding is −inf, ceil_mode false); argmax = first maximum in window scan order. */
export function maxPoolRef(x: ArrayLike<number>, NC: number, H: number, W: number, k: number, s: number, p: number) {
  const OH = Math.floor((H + 2 * p - k) / s) + 1, OW = Math.floor((W + 2 * p - k) / s) + 1;
  const y = new Float64Array(NC * OH * OW), arg = new Int32Array(NC * OH * OW);
  for (let q = 0; q < NC; q++)
    for (let oh = 0; oh < OH; oh++)
      for (let ow = 0; ow < OW; ow++) {
        let best = -Infinity, bi = -1;
        for (let ky = 0; ky < k; ky++)
          for (let kx = 0; kx < k; kx++) {
            const ih = oh * s - p + ky, iw = ow * s - p + kx;
            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
            const v = x[(q * H + ih) * W + iw];
            if (v > best || bi < 0) {
              best = v;
              bi = ih * W + iw;
            }
          }
        y[(q * OH + oh) * OW + ow] = best;
        arg[(q * OH + oh) * OW + ow] = bi;
      }
  return { y, arg, OH, OW };
}

export function maxPoolBackwardRef(dy: ArrayLike<number>, arg: Int32Array, NC: number, H: number, W: number, OH: number, OW: number): Float64Array {
  const dx = new Float64Array(NC * H * W);
  for (let q = 0; q < NC; q++) for (let i = 0; i < OH * OW; i++) dx[q * H * W + arg[q * OH * OW + i]] += dy[q * OH * OW + i];
  return dx;
}

/** Adaptive average pooling bins (PyTorch): [⌊i·H/out⌋, ⌈(i+1)·H/out⌉). */
export function adaptiveBins(H: number, out: number): [number, number][] {
  return Array.from({ length: out }, (_, i) => [Math.floor((i * H) / out), Math.ceil(((i + 1) * H) / out)] as [number, number]);
}

export function adaptiveAvgPoolRef(x: ArrayLike<number>, NC: number, H: number, W: number, OH: number, OW: number): Float64Array {
  const by = adaptiveBins(H, OH), bx = adaptiveBins(W, OW);
  const y = new Float64Array(NC * OH * OW);
  for (let q = 0; q < NC; q++)
    for (let i = 0; i < OH; i++)
      for (let j = 0; j < OW; j++) {
        let s = 0;
        for (let h = by[i][0]; h < by[i][1]; h++) for (let w = bx[j][0]; w < bx[j][1]; w++) s += x[(q * H + h) * W + w];
        y[(q * OH + i) * OW + j] = s / ((by[i][1] - by[i][0]) * (bx[j][1] - bx[j][0]));
      }
  return y;
}

export function adaptiveAvgPoolBackwardRef(dy: ArrayLike<number>, NC: number, H: number, W: number, OH: number, OW: number): Float64Array {
  const by = adaptiveBins(H, OH), bx = adaptiveBins(W, OW);
  const dx = new Float64Array(NC * H * W);
  for (let q = 0; q < NC; q++)
    for (let i = 0; i < OH; i++)
      for (let j = 0; j < OW; j++) {
        const d = dy[(q * OH + i) * OW + j] / ((by[i][1] - by[i][0]) * (bx[j][1] - bx[j][0]));
        for (let h = by[i][0]; h < by[i][1]; h++) for (let w = bx[j][0]; w < bx[j][1]; w++) dx[(q * H + h) * W + w] += d;
      }
  return dx;
}

/** Source taps of one output coordinate: F.interpolate bilinear, align_corners=False. */
export function bilinearTaps(out: number, inSize: number, outSize: number): { i0: number; i1: number; l1: number } {
  const scale = inSize / outSize;
  const src = Math.max((out + 0.5) * scale - 0.5, 0);
  const i0 = Math.min(Math.floor(src), inSize - 1);
  const i1 = Math.min(i0 + 1, inSize - 1);
  return { i0, i1, l1: src - i0 };
}

export function resizeBilinearRef(x: ArrayLike<number>, NC: number, H: number, W: number, OH: number, OW: number): Float64Array {
  const y = new Float64Array(NC * OH * OW);
  for (let q = 0; q < NC; q++)
    for (let i = 0; i < OH; i++) {
      const ty = bilinearTaps(i, H, OH);
      for (let j = 0; j < OW; j++) {
        const tx = bilinearTaps(j, W, OW);
        const at = (h: number, w: number) => x[(q * H + h) * W + w];
        y[(q * OH + i) * OW + j] =
          (1 - ty.l1) * ((1 - tx.l1) * at(ty.i0, tx.i0) + tx.l1 * at(ty.i0, tx.i1)) +
          ty.l1 * ((1 - tx.l1) * at(ty.i1, tx.i0) + tx.l1 * at(ty.i1, tx.i1));
      }
    }
  return y;
}

export function resizeBilinearBackwardRef(dy: ArrayLike<number>, NC: number, H: number, W: number, OH: number, OW: number): Float64Array {
  const dx = new Float64Array(NC * H * W);
  for (let q = 0; q < NC; q++)
    for (let i = 0; i < OH; i++) {
      const ty = bilinearTaps(i, H, OH);
      for (let j = 0; j < OW; j++) {
        const tx = bilinearTaps(j, W, OW);
        const d = dy[(q * OH + i) * OW + j];
        const add = (h: number, w: number, v: number) => (dx[(q * H + h) * W + w] += v);
        add(ty.i0, tx.i0, d * (1 - ty.l1) * (1 - tx.l1));
        add(ty.i0, tx.i1, d * (1 - ty.l1) * tx.l1);
        add(ty.i1, tx.i0, d * ty.l1 * (1 - tx.l1));
        add(ty.i1, tx.i1, d * ty.l1 * tx.l1);
      }
    }
  return dx;
}

/**
 * Per-element error bounds of the f32 kernels (model in tests/util.ts) against the float64
 * reference, per channel c with n = N·H·W values: the batch mean is a sum (γ_{n−1}) and a
 * division, |Δμ| ≤ γ_n·Σ|x|/n; the two-pass variance Σ(x − μ̂)²/n is off by Δμ² (the mean's
 * error enters squared: Σ(x − μ̂)² = Σ(x − μ)² + nΔμ²) plus γ_{n+3} of itself (the difference,
 * the square, the sum, the division). 1/√(v + ε) adds the variance's error to first order,
 * Δv/(2(v + ε)) (with the (v + ε − Δv)^{−3/2} curvature), and 7 ULP (sqrt 4.5, ÷ 2.5) plus the
 * addition of ε. The rest is a few roundings on magnitudes. Second-order products of these
 * relative errors (≤ 1e-3 of the bound for n ≤ 10⁵) are covered by a factor 1.001. Eval uses the
 * given running statistics, exact in f32: Δμ = Δv = 0.
 */
export function batchNormBounds(
  X: Float64Array, DY: Float64Array, N: number, C: number, HW: number, Wt: Float64Array, B: Float64Array,
  RM: Float64Array, RV: Float64Array, momentum: number, eps: number, training: boolean,
  ref: { y: Float64Array; mean: Float64Array; varUsed: Float64Array }, dw: Float64Array, db: Float64Array,
) {
  const n = N * HW, u = U32, second = 1.001;
  const y = new Float64Array(X.length), dx = new Float64Array(X.length);
  const dwB = new Float64Array(C), dbB = new Float64Array(C), rmB = new Float64Array(C), rvB = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    const idx = (k: number, i: number) => (k * C + c) * HW + i;
    let s1 = 0, sdy = 0, sdyx = 0;
    const mu = ref.mean[c], v = ref.varUsed[c];
    for (let k = 0; k < N; k++) for (let i = 0; i < HW; i++) {
      s1 += Math.abs(X[idx(k, i)]);
      sdy += Math.abs(DY[idx(k, i)]);
      sdyx += Math.abs(DY[idx(k, i)] * (X[idx(k, i)] - mu));
    }
    const dMu = training ? gamma(n) * s1 / n : 0;
    const dV = training ? dMu * dMu + gamma(n + 3) * (v + dMu * dMu) : 0;
    const ve = v + eps, inv = 1 / Math.sqrt(ve);
    const relInv = (dV / (2 * ve)) * (ve / (ve - dV)) ** 1.5 + ulps(7) + u;
    // Running statistics: (1 − m)·r + m·batch, three roundings on each product and the sum.
    if (training) {
      const vu = v * n / (n - 1), dVu = dV * n / (n - 1) + gamma(2) * (vu + dV);
      rmB[c] = second * (gamma(3) * ((1 - momentum) * Math.abs(RM[c]) + momentum * Math.abs(mu)) + momentum * (1 + gamma(3)) * dMu);
      rvB[c] = second * (gamma(4) * ((1 - momentum) * RV[c] + momentum * vu) + momentum * (1 + gamma(4)) * dVu);
    }
    const aw = Math.abs(Wt[c]);
    // dbias = Σ dy; dweight = Σ dy·(x − μ̂), then × inv.
    dbB[c] = gamma(n) * sdy;
    dwB[c] = second * inv * (dMu * sdy + (sdyx + dMu * sdy) * (gamma(n + 1) + relInv + u));
    for (let k = 0; k < N; k++) for (let i = 0; i < HW; i++) {
      const j = idx(k, i), a = Math.abs(X[j] - mu) + dMu;
      y[j] = second * (aw * inv * (dMu + a * (relInv + gamma(4))) + u * Math.abs(B[c]));
      if (training) {
        const xh = Math.abs(X[j] - mu) * inv, dxh = inv * (dMu + a * (relInv + gamma(2)));
        const mag = Math.abs(DY[j]) + Math.abs(db[c]) / n + xh * Math.abs(dw[c]) / n;
        dx[j] = second * aw * inv * (dbB[c] / n + (xh + dxh) * dwB[c] / n + dxh * Math.abs(dw[c]) / n + mag * (relInv + gamma(7)));
      } else {
        dx[j] = second * aw * Math.abs(DY[j]) * inv * (relInv + gamma(2));
      }
    }
  }
  return { y, dx, dw: dwB, db: dbB, runningMean: rmB, runningVar: rvB };
}

/** Bound of the f32 adaptive average pool (model in tests/util.ts): a bin holds at most
 *  (⌈H/OH⌉ + 1)(⌈W/OW⌉ + 1) inputs; its sum plus the division, γ on the bin's Σ|x|/|bin|. */
export function adaptiveAvgPoolBound(X: ArrayLike<number>, NC: number, H: number, W: number, OH: number, OW: number): Float64Array {
  const bin = (Math.ceil(H / OH) + 1) * (Math.ceil(W / OW) + 1);
  return adaptiveAvgPoolRef(abs(X), NC, H, W, OH, OW).map((v) => gamma(bin + 2) * v);
}

// Error model (tests/util.ts) of shaders/resize.wgsl: the source coordinate
// src = max(scale·(o + 0.5) − 0.5, 0) with scale = in/out rounded, a product and a difference is
// within δ = γ₃·(in + 0.5) of the exact one; its fraction l = src − ⌊src⌋ is exact, 1 − l one
// rounding. Bilinear interpolation is continuous in src (also where ⌊src⌋ changes or the index
// is clamped) with slope |x_{i+1} − x_i| ≤ 2M per axis (M = the channel's max |x|), so
// |Δy| ≤ 2M(δ_y + δ_x) + γ₇·M (the weights' roundings, three products and sums). The backward
// dx_i = Σ_o w_o(i)·dy_o: each weight wy·wx within δ_y + δ_x + 3u, over the outputs whose taps
// (at src or src ± δ) include i, plus γ_n of Σ w·|dy| for its n terms.
export function resizeBounds(X: Float64Array, DY: Float64Array, NC: number, H: number, W: number, OH: number, OW: number) {
  const dY = gamma(3) * (H + 0.5), dX = gamma(3) * (W + 0.5);
  const yB = new Float64Array(NC * OH * OW);
  for (let q = 0; q < NC; q++) {
    let M = 0;
    for (let i = 0; i < H * W; i++) M = Math.max(M, Math.abs(X[q * H * W + i]));
    yB.fill(2 * M * (dY + dX) + gamma(7) * M, q * OH * OW, (q + 1) * OH * OW);
  }
  // Outputs o of one axis whose taps may include input i.
  const window = (inS: number, outS: number, d: number) => {
    const w: number[][] = Array.from({ length: inS }, () => []);
    for (let o = 0; o < outS; o++) {
      const src = (o + 0.5) * (inS / outS) - 0.5;
      const hit = new Set<number>();
      for (const s of [src - 2 * d, src, src + 2 * d]) {
        const i0 = Math.min(Math.floor(Math.max(s, 0)), inS - 1);
        hit.add(i0).add(Math.min(i0 + 1, inS - 1));
      }
      for (const i of hit) w[i].push(o);
    }
    return w;
  };
  const wy = window(H, OH, dY), wx = window(W, OW, dX);
  const mag = resizeBilinearBackwardRef(abs(DY), NC, H, W, OH, OW);
  const dxB = new Float64Array(NC * H * W);
  for (let q = 0; q < NC; q++)
    for (let h = 0; h < H; h++)
      for (let w = 0; w < W; w++) {
        let s = 0;
        for (const oh of wy[h]) for (const ow of wx[w]) s += Math.abs(DY[(q * OH + oh) * OW + ow]);
        const i = (q * H + h) * W + w, n = wy[h].length * wx[w].length;
        dxB[i] = 1.001 * ((dY + dX + 3 * U32) * s + gamma(n + 1) * mag[i]);
      }
  return { y: yB, dx: dxB };
}
