// Float64 CPU references for the kernels (plain loops, easy to check by eye).

/** C = op(A)·op(B) for one matrix pair; A is [M,K] or [K,M] (transA). */
export function matmulRef(A: ArrayLike<number>, B: ArrayLike<number>, M: number, N: number, K: number, transA = false, transB = false): Float64Array {
  const C = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += (transA ? A[k * M + m] : A[m * K + k]) * (transB ? B[n * K + k] : B[k * N + n]);
      C[m * N + n] = s;
    }
  return C;
}

export const act = {
  relu: (x: number) => Math.max(x, 0),
  silu: (x: number) => x / (1 + Math.exp(-x)),
  gelu: (x: number) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
  selu: (x: number) => 1.0507009873554805 * (x > 0 ? x : 1.6732632423543772 * (Math.exp(x) - 1)),
  telu: (x: number) => x * Math.tanh(Math.exp(x)),
  sigmoid: (x: number) => 1 / (1 + Math.exp(-x)),
  tanh: (x: number) => Math.tanh(x),
};

/** erf to ~1e-15 (series / continued fraction). */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 2.5) {
    // Maclaurin series
    let sum = ax, term = ax;
    for (let n = 1; n < 100; n++) {
      term *= (-ax * ax) / n;
      const c = term / (2 * n + 1);
      sum += c;
      if (Math.abs(c) < 1e-17) break;
    }
    const r = (2 / Math.sqrt(Math.PI)) * sum;
    return x < 0 ? -r : r;
  }
  // Continued fraction for erfc
  let f = 0;
  for (let n = 60; n >= 1; n--) f = n / 2 / (ax + f);
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / (ax + f);
  return x < 0 ? erfc - 1 : 1 - erfc;
}
