// Float64 CPU references for the vision kernels (conv, batch norm, pooling, bilinear resize),
// forward and analytic backward, written as plainly as possible (PyTorch semantics).

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
