import { beforeAll, describe, expect, it } from 'vitest';
import { fromData, init, read, realize } from '../src/graph/runtime.ts';
import { crossEntropy } from '../src/graph/ops/loss.ts';
import { scale } from '../src/graph/ops/elementwise.ts';
import { reshape } from '../src/graph/ops/shape.ts';
import { grad, param } from '../src/graph/autograd.ts';
import { readFileBytes } from '../src/io/files.ts';
import { type HostTensor, readSafetensors, toFloat32, toInt32 } from '../src/io/safetensors.ts';
import { abs, expectGradMatchesFiniteDiff, expectWithin, rng } from './util.ts';
import { crossEntropyBackRef, crossEntropyBounds, crossEntropyRef } from './ref/nn.ts';

beforeAll(async () => {
  await init();
});

const R = rng('loss');

// Error model: tests/ref/nn.ts crossEntropyBounds.

/** Loss and gradient (with upstream gradient g, applied through `scale`) against the reference. */
async function check(N: number, V: number, ignore: number, pIgnore: number, fd: boolean, logitScale = 2) {
  const X = R.randn(N * V, logitScale);
  const labels = Int32Array.from({ length: N }, () => (R.next() < pIgnore ? ignore : R.int(0, V - 1)));
  const x = param(fromData(X, [N, V]));
  const loss = crossEntropy(x, fromData(labels, [N], 'i32'), ignore);
  expect(loss.shape).toEqual([]);
  const g = Math.fround(0.5 + R.next());
  const [gx] = grad(scale(loss, g), [x]);
  await realize([loss, gx!]);
  const ref = crossEntropyRef(X, labels, V, ignore);
  const gRef = crossEntropyBackRef(X, labels, V, ignore, g);
  const got = (await read(loss))[0];
  const bound = crossEntropyBounds(X, labels, V, ignore, g);
  expectWithin([got], [ref], bound.loss, `cross-entropy N=${N} V=${V}: loss`);
  expectWithin(await read(gx!), gRef, bound.dx, `cross-entropy N=${N} V=${V}: dx`);
  if (fd) expectGradMatchesFiniteDiff(gRef, (xx) => g * crossEntropyRef(xx, labels, V, ignore), X, 1e-5, 'reference dlogits');
  return { got, gx: await read(gx!), labels };
}

describe('crossEntropy', () => {
  it('small random cases with ignored rows (FD-checked reference)', async () => {
    for (let k = 0; k < 3; k++) await check(R.int(1, 8), R.int(1, 30), R.int(-100, 3), 0.3, true);
  });

  it('long rows and many rows', async () => {
    await check(R.int(50, 150), R.int(300, 1100), 0, 0.2, false);
    await check(R.int(300, 700), R.int(20, 50), -100, 0.5, false);
  });

  it('ignored rows get zero gradient; no counted row gives loss 0 and zero gradient', async () => {
    const { gx, labels } = await check(6, 9, 0, 0.5, false);
    const V = 9;
    labels.forEach((l, r) => {
      if (l === 0) for (let j = 0; j < V; j++) expect(gx[r * V + j]).toBe(0);
    });
    const x = param(fromData(R.randn(4 * 5), [4, 5]));
    const loss = crossEntropy(x, fromData([7, 7, 7, 7], [4], 'i32'), 7);
    const [g] = grad(loss, [x]);
    await realize([loss, g!]);
    expect((await read(loss))[0]).toBe(0);
    expect(Array.from(await read(g!)).every((v) => v === 0)).toBe(true);
  });

  it('a counted label outside [0, V) makes the loss NaN', async () => {
    const loss = crossEntropy(fromData(R.randn(2 * 3), [2, 3]), fromData([1, 3], [2], 'i32'), -100);
    expect(Number.isNaN((await read(loss))[0])).toBe(true);
  });

  it('rejects mismatched labels', () => {
    expect(() => crossEntropy(fromData(new Float32Array(6), [2, 3]), fromData([0, 1, 2], [3], 'i32'), 0)).toThrow(/labels .* must be \[2\]/);
    expect(() => crossEntropy(fromData(new Float32Array(6), [2, 3]), fromData([0, 1], [2]), 0)).toThrow(/must be i32/);
  });

  it('golden tiny: xe_loss from logits and label_ids (ignore pad = 0)', async () => {
    const url = new URL('../../shared/golden/tiny/io.safetensors', import.meta.url);
    const io = readSafetensors(await readFileBytes(url.pathname)).tensors;
    const get = (k: string): HostTensor => {
      const t = io.get(k);
      if (!t) throw new Error(`golden tiny: ${k} missing`);
      return t;
    };
    const lg = get('logits'), lb = get('label_ids');
    const [b, T, V] = lg.shape;
    const logits = reshape(fromData(toFloat32(lg), lg.shape), [b * T, V]);
    const labels = toInt32(lb, 'label_ids');
    const loss = crossEntropy(logits, fromData(labels, [b * T], 'i32'), 0);
    const got = (await read(loss))[0];
    const want = toFloat32(get('xe_loss'))[0];
    const ref = crossEntropyRef(toFloat32(lg), labels, V, 0);
    console.log(`golden tiny xe_loss: ours ${got}, PyTorch ${want}, float64 ${ref}`);
    expect(Math.abs(got - want) / Math.abs(want)).toBeLessThan(1e-6);
    expect(Math.abs(got - ref) / Math.abs(ref)).toBeLessThan(1e-6);
  });
});
