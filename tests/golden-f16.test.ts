// The tiny golden cases in f16 (`micar golden <case> --precision f16`): weights, activations and
// the key/value cache in f16, sums in f32. Logits must be within 1e-2 rel L2 of the authors' f32
// values (F16_TOLERANCE; measured ~1e-3: a few u16 = 2^-11 roundings amplified through the layers);
// greedy tokens must agree wherever the top two logits are not within f16 rounding of each other.
import { beforeAll, describe, expect, it } from 'vitest';
import { F16_TOLERANCE, runGolden } from '../src/cli/golden.ts';
import { init, runtime } from '../src/graph/runtime.ts';

beforeAll(async () => {
  await init();
});

const root = new URL('../../shared/golden/', import.meta.url).pathname;

describe('golden cases in f16', () => {
  for (const c of ['tiny', 'tiny-weighted', 'tiny-telu']) {
    it(`${c}: logits within ${F16_TOLERANCE.logits} of the f32 golden; greedy agreement printed`, async () => {
      if (!runtime().gpu.hasF16) return; // auto/f16 refusal is tested in precision.test.ts
      const lines: string[] = [];
      const r = await runGolden(`${root}${c}`, (s) => lines.push(s), { precision: 'f16' });
      const verdict = JSON.parse(lines[lines.length - 1]);
      expect(r.failures).toEqual([]);
      expect(r.worst.logits).toBeLessThan(F16_TOLERANCE.logits);
      // Teacher-forced steps may differ only at near-ties.
      const hard = lines.filter((l) => l.includes('differs:') && !l.includes('near-tie'));
      expect(hard).toEqual([]);
      expect(verdict.precision).toBe('f16');
      expect(verdict.greedy_agreement).toBeGreaterThan(0);
    }, 300_000);
  }
});
