// The few numpy behaviours the reference metrics depend on, reproduced bit for bit where
// possible: `np.sum`/`np.mean` of a 1-D float64 array (pairwise summation), the legacy
// `np.random.RandomState` stream (MT19937 + masked bounded integers, used by
// `np.random.choice`), and `np.percentile`'s default linear interpolation (numpy 1.24).

/** numpy's `pairwise_sum_DOUBLE` over a[start .. start+n). */
function pairwiseSum(a: ArrayLike<number>, start: number, n: number): number {
  if (n < 8) {
    let res = 0;
    for (let i = 0; i < n; i++) res += a[start + i];
    return res;
  }
  if (n <= 128) {
    const r = new Float64Array(8);
    for (let j = 0; j < 8; j++) r[j] = a[start + j];
    let i = 8;
    for (; i < n - (n % 8); i += 8) for (let j = 0; j < 8; j++) r[j] += a[start + i + j];
    let res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; i++) res += a[start + i];
    return res;
  }
  let n2 = Math.floor(n / 2);
  n2 -= n2 % 8;
  return pairwiseSum(a, start, n2) + pairwiseSum(a, start + n2, n - n2);
}

/** `np.sum` of a 1-D float64 array (the reduction starts from 0, then the pairwise sum). */
export function npSum(a: ArrayLike<number>): number {
  return 0 + pairwiseSum(a, 0, a.length);
}

/** `np.mean` of a 1-D float64 array (NaN when empty, as numpy). */
export function npMean(a: ArrayLike<number>): number {
  return npSum(a) / a.length;
}

/** numpy's legacy `RandomState` (MT19937), enough for `seed` and `choice(N, size)`. */
export class LegacyRandomState {
  private readonly key = new Uint32Array(624);
  private pos = 624;

  constructor(seed: number) {
    this.seed(seed);
  }

  /** `np.random.seed(int)`: MT19937 `init_genrand`. */
  seed(seed: number): void {
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new Error(`LegacyRandomState.seed: seed ${seed} must be an integer in [0, 2^32)`);
    let s = seed >>> 0;
    for (let i = 0; i < 624; i++) {
      this.key[i] = s;
      // 1812433253 * (s ^ (s >>> 30)) + i + 1, mod 2^32.
      s = (Math.imul(1812433253, (s ^ (s >>> 30)) >>> 0) + i + 1) >>> 0;
    }
    this.pos = 624;
  }

  private generate(): void {
    const k = this.key;
    const UPPER = 0x80000000, LOWER = 0x7fffffff, MATRIX_A = 0x9908b0df;
    let i = 0;
    for (; i < 624 - 397; i++) {
      const y = (k[i] & UPPER) | (k[i + 1] & LOWER);
      k[i] = k[i + 397] ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    }
    for (; i < 623; i++) {
      const y = (k[i] & UPPER) | (k[i + 1] & LOWER);
      k[i] = k[i + 397 - 624] ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    }
    const y = (k[623] & UPPER) | (k[0] & LOWER);
    k[623] = k[396] ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    this.pos = 0;
  }

  /** MT19937 `genrand_int32`. */
  nextUint32(): number {
    if (this.pos === 624) this.generate();
    let y = this.key[this.pos++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /**
   * `np.random.randint(0, high)` as the legacy stream draws it (and so `choice(high)`):
   * `next_uint32 & mask`, redrawn while > high − 1, mask = smallest 2^k − 1 ≥ high − 1;
   * no draw at all when high = 1.
   */
  randintBelow(high: number): number {
    if (!Number.isInteger(high) || high < 1 || high > 2 ** 32) throw new Error(`LegacyRandomState.randintBelow: high ${high} must be an integer in [1, 2^32]`);
    const rng = high - 1;
    if (rng === 0) return 0;
    let mask = rng;
    mask |= mask >>> 1;
    mask |= mask >>> 2;
    mask |= mask >>> 4;
    mask |= mask >>> 8;
    mask |= mask >>> 16;
    mask >>>= 0;
    for (;;) {
      const v = (this.nextUint32() & mask) >>> 0;
      if (v <= rng) return v;
    }
  }
}

/** numpy 1.24 `_lerp(a, b, t)`: from the nearer end, as numpy does for t ≥ 0.5. */
function npLerp(a: number, b: number, t: number): number {
  const diff = b - a;
  return t >= 0.5 ? b - diff * (1 - t) : a + diff * t;
}

/** `np.percentile(values, q)` with the default 'linear' method (values need not be sorted). */
export function npPercentile(values: ArrayLike<number>, q: number): number {
  const sorted = Float64Array.from(values).sort();
  const n = sorted.length;
  if (n === 0) throw new Error('npPercentile: empty input');
  const virtualIndex = (n - 1) * (q / 100);
  if (virtualIndex >= n - 1) return sorted[n - 1];
  if (virtualIndex < 0) return sorted[0];
  const prev = Math.floor(virtualIndex);
  return npLerp(sorted[prev], sorted[prev + 1], virtualIndex - prev);
}
