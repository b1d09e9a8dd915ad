// Dataset splits exactly as the authors made them: scikit-learn's
// `train_test_split(df, test_size=f, shuffle=True, random_state=seed)`, which is
// ShuffleSplit(n_splits=1): n_test = ceil(f·n), n_train = n − n_test,
// perm = np.random.RandomState(seed).permutation(n), test = perm[:n_test], train = perm[n_test:].
// RandomState is MT19937 seeded with init_genrand(seed); permutation = arange(n) shuffled by
// Fisher–Yates from the end, j = random_interval(i) (rejection sampling on masked 32-bit draws).
import { LegacyRandomState } from '../metrics/numpy.ts';

/** np.random.RandomState(seed).permutation(n). */
export function numpyPermutation(n: number, seed: number): Int32Array {
  const rng = new LegacyRandomState(seed);
  const a = new Int32Array(n);
  for (let i = 0; i < n; i++) a[i] = i;
  for (let i = n - 1; i >= 1; i--) {
    const j = rng.randintBelow(i + 1); // numpy's random_interval(i)
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
