import { beforeAll, describe, expect, it } from 'vitest';
import { fromData, init, read, realize } from '../src/graph/runtime.ts';
import { embedding, sinusoidalPositions, sinusoidalTable } from '../src/graph/ops/embedding.ts';
import { add, scale } from '../src/graph/ops/elementwise.ts';
import { reshape } from '../src/graph/ops/shape.ts';
import { grad, param } from '../src/graph/autograd.ts';
import { readFileBytes } from '../src/io/files.ts';
import { type HostTensor, readSafetensors, toFloat32, toInt32 } from '../src/io/safetensors.ts';
import { abs, dot, expectGradMatchesFiniteDiff, expectWithin, gamma, relL2, rng } from './util.ts';
import { embeddingBackRef, embeddingRef, numel } from './ref/nn.ts';

beforeAll(async () => {
  await init();
});

const R = rng('embedding');

/** Table gradient summed in float32 in token order: what the kernel promises bit for bit. */
function f32TokenOrderGrad(ids: ArrayLike<number>, dy: ArrayLike<number>, V: number, D: number): Float32Array {
  const acc = new Float32Array(V * D);
  for (let t = 0; t < ids.length; t++) {
    const id = ids[t];
    if (id < 0 || id >= V) continue;
    for (let f = 0; f < D; f++) acc[id * D + f] = Math.fround(acc[id * D + f] + dy[t * D + f]);
  }
  return acc;
}

async function check(idsShape: number[], V: number, D: number, outOfRange: boolean, fd: boolean) {
  const N = numel(idsShape);
  const ids = Int32Array.from({ length: N }, () => (outOfRange && R.next() < 0.15 ? (R.next() < 0.5 ? -1 - R.int(0, 3) : V + R.int(0, 3)) : R.int(0, V - 1)));
  const T = R.randn(V * D), G = R.randn(N * D);
  const idsT = fromData(ids, idsShape, 'i32');
  const table = param(fromData(T, [V, D]));
  const y = embedding(idsT, table);
  expect(y.shape).toEqual([...idsShape, D]);
  const [gt] = grad(y, [table], fromData(G, y.shape));
  await realize([y, gt!]);
  // A gather copies values: exact.
  expect(Array.from(await read(y))).toEqual(Array.from(embeddingRef(ids, T, V, D)));
  const gRef = embeddingBackRef(ids, G, V, D);
  const g = await read(gt!);
  // Each table row sums the gradients of the tokens that use it: γ_count·Σ|G| per element.
  const uses = new Map<number, number>();
  for (const id of ids) uses.set(id, (uses.get(id) ?? 0) + 1);
  expectWithin(g, gRef, embeddingBackRef(ids, abs(G), V, D).map((m) => gamma(Math.max(1, ...uses.values())) * m), 'embedding table gradient');
  // Deterministic: per row, f32 sums in token order, so bit-identical to that CPU sum.
  expect(Array.from(g)).toEqual(Array.from(f32TokenOrderGrad(ids, G, V, D)));
  if (fd) {
    // The loss Σ G·embedding is linear in the table: differences are exact up to rounding.
    expectGradMatchesFiniteDiff(gRef, (tt) => dot(G, embeddingRef(ids, tt, V, D)), T, 1e-3, 'reference dtable', { scale: dot(abs(G), abs(embeddingRef(ids, T, V, D))) });
  }
}

describe('embedding', () => {
  it('small random cases with repeated ids (FD-checked reference)', async () => {
    for (let k = 0; k < 3; k++) await check([R.int(1, 3), R.int(1, 7)], R.int(1, 6), R.int(1, 9), false, true);
  });

  it('out-of-range ids give zero rows and no gradient', async () => {
    await check([R.int(2, 4), R.int(5, 12)], R.int(2, 8), R.int(3, 20), true, true);
  });

  it('larger: hundreds of tokens, rank-1 and rank-3 ids', async () => {
    await check([R.int(200, 400)], R.int(20, 60), R.int(60, 130), false, false);
    await check([2, R.int(3, 5), R.int(20, 40)], R.int(100, 300), R.int(8, 40), true, false);
  });

  it('rejects non-i32 ids and a non-2-D table', () => {
    expect(() => embedding(fromData([0, 1], [2]), fromData(new Float32Array(4), [2, 2]))).toThrow(/ids .* must be i32/);
    expect(() => embedding(fromData([0, 1], [2], 'i32'), fromData(new Float32Array(4), [4]))).toThrow(/must be \[V, d\]/);
  });
});

describe('sinusoidalPositions', () => {
  it('matches the formula in float64 to f32 rounding, odd d too', async () => {
    for (const [T, d] of [[R.int(1, 90), 2 * R.int(1, 40)], [R.int(1, 20), 2 * R.int(1, 10) + 1]]) {
      const pe = await read(sinusoidalPositions(T, d));
      const ref = new Float64Array(T * d);
      for (let n = 0; n < T; n++)
        for (let c = 0; c < d; c++) {
          const i = Math.floor(c / 2), a = n * Math.exp((-2 * i * Math.log(10000)) / d);
          ref[n * d + c] = c % 2 === 0 ? Math.sin(a) : Math.cos(a);
        }
      // The f32 angle n·w (rounded like PyTorch's) is off by up to ~n·2^-24 rad from float64's.
      let maxErr = 0;
      for (let e = 0; e < ref.length; e++) maxErr = Math.max(maxErr, Math.abs(pe[e] - ref[e]));
      expect(maxErr).toBeLessThan(T * 2 ** -23 + 1e-7);
    }
  });
});

describe('golden tiny', () => {
  const dir = new URL('../../shared/golden/tiny/', import.meta.url);
  const load = async (f: string) => readSafetensors(await readFileBytes(new URL(f, dir).pathname)).tensors;
  const get = (m: Map<string, HostTensor>, k: string): HostTensor => {
    const t = m.get(k);
    if (!t) throw new Error(`golden tiny: ${k} missing`);
    return t;
  };

  it('sinusoidal table equals text_embs.pe.pe; text_emb_out = embedding·sqrt(d) + pe', async () => {
    const io = await load('io.safetensors'), wts = await load('weights.safetensors');
    const peG = get(wts, 'text_embs.pe.pe');
    const [, T, d] = peG.shape;
    const peGold = toFloat32(peG);
    const mine = sinusoidalTable(T, d);
    let maxDiff = 0;
    for (let i = 0; i < mine.length; i++) maxDiff = Math.max(maxDiff, Math.abs(mine[i] - peGold[i]));
    console.log(`golden tiny pe: max |diff| ${maxDiff.toExponential(2)}`);
    // PyTorch's f32 sin/cos/exp are within ~1 ulp of ours.
    expect(maxDiff).toBeLessThan(1e-6);

    const idsG = get(io, 'input_ids'), W = get(wts, 'text_embs.embedding.weight');
    const [b] = idsG.shape;
    const ids = fromData(toInt32(idsG, 'input_ids'), idsG.shape, 'i32');
    const emb = embedding(ids, fromData(toFloat32(W), W.shape));
    const out = add(scale(emb, Math.sqrt(d)), reshape(fromData(peGold, [T, d]), [1, T, d]));
    const want = toFloat32(get(io, 'text_emb_out'));
    const got = await read(out);
    console.log(`golden tiny text_emb_out: relL2 ${relL2(got, want).toExponential(2)}`);
    expect(relL2(got, want)).toBeLessThan(1e-6);
    expect(got.length).toBe(b * T * d);
  });
});
