// Every candidate configuration the tuner may pick, of every tuned family, against the float64
// references — not only the configuration this adapter ends up using. Candidates for both a
// software-adapter profile (register blocks) and a GPU profile (tiles) run here on any adapter.
import { beforeAll, describe, expect, it } from 'vitest';
import { fromData, init, read } from '../src/graph/runtime.ts';
import { profileFrom } from '../src/gpu/profile.ts';
import { withTrial } from '../src/graph/kernels/catalogue.ts';
import { matmulFamily, type MatmulGeometry } from '../src/graph/kernels/matmul.ts';
import { matmul } from '../src/graph/ops/matmul.ts';
import { expectWithin, gamma, rng } from './util.ts';
import { matmulRef } from './ref/cpu.ts';

const software = profileFrom({ vendor: '65541', description: 'llvmpipe' }, new Set<string>(), {});
const gpu = profileFrom({ vendor: 'nvidia', description: 'some GPU' }, new Set<string>(), {});

beforeAll(async () => {
  await init();
});

describe('matmul: every candidate configuration', () => {
  const R = rng('matmul-candidates');
  // One geometry per candidate, the layouts (transposes, vec4-aligned or odd sizes, bias)
  // rotating through the list so every load path meets several blocks.
  const seen = new Map<string, MatmulGeometry>();
  const layouts: [boolean, boolean, boolean][] = [];
  for (const transA of [false, true]) for (const transB of [false, true]) for (const aligned of [true, false]) layouts.push([transA, transB, aligned]);
  let li = 0;
  for (const profile of [software, gpu]) {
    // Candidates of small, mid-size and large products (blocks are pruned by size).
    const bases = [[16, 16, 8], [96, 80, 24], [512, 512, 512]].map(([M, N, K]): MatmulGeometry => ({ M, N, K, batch: 1, transA: false, transB: true, bias: true }));
    for (const c of bases.flatMap((base) => matmulFamily.candidates(base, profile))) {
      const key = matmulFamily.configKey(c);
      if (seen.has(key)) continue;
      const [transA, transB, aligned] = layouts[li++ % layouts.length];
      const odd = (n: number) => (aligned ? n : n + 1 + 2 * R.int(0, 3));
      seen.set(key, { M: odd(4 * R.int(16, 28)), N: odd(4 * R.int(12, 24)), K: odd(4 * R.int(2, 8)), batch: R.int(1, 2), transA, transB, bias: R.next() < 0.5 });
      it(`${key}`, async () => {
        const g = seen.get(key)!;
        expect(matmulFamily.parseConfig(key)).toEqual(c);
        const { M, N, K, batch, transA, transB } = g;
        const A = R.randn(batch * M * K), B = R.randn(batch * K * N), Bi = R.randn(N);
        const a = fromData(A, transA ? [batch, K, M] : [batch, M, K]);
        const b = fromData(B, transB ? [batch, N, K] : [batch, K, N]);
        const out = withTrial('matmul', c, () => matmul(a, b, { transA, transB, bias: g.bias ? fromData(Bi, [N]) : undefined }));
        const ref = new Float64Array(batch * M * N), mag = new Float64Array(batch * M * N);
        const absA = A.map(Math.abs), absB = B.map(Math.abs);
        for (let i = 0; i < batch; i++) {
          ref.set(matmulRef(A.subarray(i * M * K), B.subarray(i * K * N), M, N, K, transA, transB), i * M * N);
          mag.set(matmulRef(absA.subarray(i * M * K), absB.subarray(i * K * N), M, N, K, transA, transB), i * M * N);
        }
        if (g.bias) ref.forEach((v, i) => (ref[i] = v + Bi[i % N]));
        // f32 dot product of length K (+ bias): |error| ≤ γ_{K+1} · (Σ|a||b| + |bias|), any order.
        expectWithin(await read(out), ref, (i) => gamma(K + 1) * (mag[i] + (g.bias ? Math.abs(Bi[i % N]) : 0)) + 1e-30, `${key} ${JSON.stringify(g)}`);
      });
    }
  }
});
