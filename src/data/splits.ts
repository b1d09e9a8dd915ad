// Dataset splits exactly as the authors made them: scikit-learn's
// `train_test_split(df, test_size=f, shuffle=True, random_state=seed)`, which is
// ShuffleSplit(n_splits=1): n_test = ceil(f·n), n_train = n − n_test,
// perm = np.random.RandomState(seed).permutation(n), test = perm[:n_test], train = perm[n_test:].
// RandomState is MT19937 seeded with init_genrand(seed); permutation = arange(n) shuffled by
// Fisher–Yates from the end, j = random_interval(i) (rejection sampling on masked 32-bit draws).

/** MT19937 (Matsumoto & Nishimura), as numpy's legacy RandomState uses it. */
export class MT19937 {
  private mt = new Uint32Array(624);
  private idx = 624;

  /** init_genrand(seed): numpy's RandomState(seed) for an integer seed in [0, 2^32). */
  constructor(seed: number) {
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new Error(`MT19937: seed must be an integer in [0, 2^32), got ${seed}`);
    const mt = this.mt;
    mt[0] = seed >>> 0;
    for (let i = 1; i < 624; i++) {
      const prev = mt[i - 1] ^ (mt[i - 1] >>> 30);
      // 1812433253 · prev + i mod 2^32, split to stay exact in float64
      mt[i] = (((((prev & 0xffff0000) >>> 16) * 1812433253) << 16) + (prev & 0x0000ffff) * 1812433253 + i) >>> 0;
    }
    this.idx = 624;
  }

  private twist(): void {
    const mt = this.mt;
    for (let i = 0; i < 624; i++) {
      const y = (mt[i] & 0x80000000) | (mt[(i + 1) % 624] & 0x7fffffff);
      mt[i] = mt[(i + 397) % 624] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
    }
    this.idx = 0;
  }

  /** genrand_int32. */
  nextUint32(): number {
    if (this.idx >= 624) this.twist();
    let y = this.mt[this.idx++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** numpy's random_interval(max) for max < 2^32: uniform in [0, max]. */
  interval(max: number): number {
    if (max === 0) return 0;
    if (max > 0xffffffff) throw new Error(`MT19937.interval: max ${max} needs 64-bit draws, not implemented`);
    let mask = max;
    mask |= mask >>> 1;
    mask |= mask >>> 2;
    mask |= mask >>> 4;
    mask |= mask >>> 8;
    mask |= mask >>> 16;
    mask >>>= 0;
    let v: number;
    do v = (this.nextUint32() & mask) >>> 0;
    while (v > max);
    return v;
  }
}

/** np.random.RandomState(seed).permutation(n). */
export function numpyPermutation(n: number, seed: number): Int32Array {
  const rng = new MT19937(seed);
  const a = new Int32Array(n);
  for (let i = 0; i < n; i++) a[i] = i;
  for (let i = n - 1; i >= 1; i--) {
    const j = rng.interval(i);
    const t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
  return a;
}

/**
 * sklearn train_test_split(items, test_size=testFraction, shuffle=True, random_state=seed).
 * Returns [train, test] in the permuted order sklearn returns them.
 */
export function trainTestSplit<T>(items: readonly T[], testFraction: number, seed: number): [T[], T[]] {
  const n = items.length;
  if (!(testFraction > 0 && testFraction < 1)) throw new Error(`trainTestSplit: test fraction must be in (0, 1), got ${testFraction}`);
  const nTest = Math.ceil(testFraction * n);
  const nTrain = n - nTest;
  if (nTrain <= 0 || nTest <= 0) {
    throw new Error(`trainTestSplit: ${n} items with test fraction ${testFraction} leave train=${nTrain}, test=${nTest}; each split needs at least one item`);
  }
  const perm = numpyPermutation(n, seed);
  const test = Array.from(perm.subarray(0, nTest), (i) => items[i]);
  const train = Array.from(perm.subarray(nTest), (i) => items[i]);
  return [train, test];
}

/**
 * The authors' two-stage split: train/rest with `firstTest`, then rest → val/test with `secondTest`,
 * both with the same seed (COVCTR and MMRetinal: 0.2 then 0.5, seed 9876; PGROSS: 0.3 then 0.66, seed 1234).
 */
export function threeWaySplit<T>(items: readonly T[], firstTest: number, secondTest: number, seed: number): { train: T[]; val: T[]; test: T[] } {
  const [train, rest] = trainTestSplit(items, firstTest, seed);
  const [val, test] = trainTestSplit(rest, secondTest, seed);
  return { train, val, test };
}

export const AUTHORS_SPLITS = {
  covctr: { firstTest: 0.2, secondTest: 0.5, seed: 9876 },
  mmretinal: { firstTest: 0.2, secondTest: 0.5, seed: 9876 },
  pgross: { firstTest: 0.3, secondTest: 0.66, seed: 1234 },
} as const;
