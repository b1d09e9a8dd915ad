import { beforeAll, describe, expect, it } from 'vitest';
import { fromData, init, read, realize } from '../src/graph/runtime.ts';
import { rmsNorm } from '../src/graph/ops/norm.ts';
import { grad, param } from '../src/graph/autograd.ts';
import { readFileBytes } from '../src/io/files.ts';
import { type HostTensor, readSafetensors, toFloat32 } from '../src/io/safetensors.ts';
import { abs, dot, expectGradMatchesFiniteDiff, expectWithin, relL2, rng } from './util.ts';
import { numel, rmsNormBackRef, rmsNormBounds, rmsNormRef } from './ref/nn.ts';
import { matmulRef } from './ref/cpu.ts';

beforeAll(async () => {
  await init();
});

const R = rng('norm');

async function check(shape: number[], eps: number, fd: boolean) {
  const D = shape[shape.length - 1];
  const X = R.randn(numel(shape)), Wt = R.uniform(D, 0.5, 1.5), G = R.randn(numel(shape));
  const x = param(fromData(X, shape)), w = param(fromData(Wt, [D]));
  const y = rmsNorm(x, w, eps);
  const [gx, gw] = grad(y, [x, w], fromData(G, shape));
  await realize([y, gx!, gw!]);
  const { dx, dw } = rmsNormBackRef(X, Wt, G, D, eps);
  const bound = rmsNormBounds(X, Wt, G, D, eps);
  expectWithin(await read(y), rmsNormRef(X, Wt, D, eps), bound.y, `rmsNorm ${JSON.stringify(shape)} y`);
  expectWithin(await read(gx!), dx, bound.dx, `rmsNorm ${JSON.stringify(shape)} dx`);
  expectWithin(await read(gw!), dw, bound.dw, `rmsNorm ${JSON.stringify(shape)} dw`);
  if (fd) {
    const scale = dot(abs(G), abs(rmsNormRef(X, Wt, D, eps)));
    expectGradMatchesFiniteDiff(dx, (xx) => dot(G, rmsNormRef(xx, Wt, D, eps)), X, 1e-5, 'reference dx', { scale });
    expectGradMatchesFiniteDiff(dw, (ww) => dot(G, rmsNormRef(X, ww, D, eps)), Wt, 1e-5, 'reference dweight', { scale });
  }
}

describe('rmsNorm', () => {
  it('forward, dx and dw on small random shapes', async () => {
    for (let k = 0; k < 3; k++) {
      // D ≥ 2: with one feature the normalised output is ±w and dx is pure f32 cancellation.
      const shape = [R.int(1, 4), R.int(1, 3), R.int(2, 40)];
      await check(shape, k === 0 ? 1e-6 : 0.1, true);
    }
  });

  it('long rows and many rows (dw column reduction over several tiles)', async () => {
    await check([R.int(1, 3), R.int(257, 600)], 1e-6, false);
    await check([R.int(200, 400), R.int(33, 90)], 1e-6, false);
  });

  it('gradient only for x, or only for the weight', async () => {
    const D = R.int(2, 30), rows = R.int(1, 9);
    const X = R.randn(rows * D), Wt = R.uniform(D, 0.5, 1.5);
    const x = param(fromData(X, [rows, D]));
    const wConst = fromData(Wt, [D]);
    const [gx] = grad(rmsNorm(x, wConst), [x], fromData(new Float32Array(rows * D).fill(1), [rows, D]));
    await realize([gx!]);
    const ones = new Float64Array(rows * D).fill(1);
    expectWithin(await read(gx!), rmsNormBackRef(X, Wt, ones, D, 1e-6).dx, rmsNormBounds(X, Wt, ones, D, 1e-6).dx, 'rmsNorm dx alone');
  });

  it('rejects a weight of the wrong size', () => {
    expect(() => rmsNorm(fromData(new Float32Array(6), [2, 3]), fromData(new Float32Array(2), [2]))).toThrow(/weight .* must be \[3\]/);
  });

  it('golden tiny: logits = gen_logits(decoder_out), proj_out = proj(msve_out)', async () => {
    const dir = new URL('../../shared/golden/tiny/', import.meta.url);
    const io = readSafetensors(await readFileBytes(new URL('io.safetensors', dir).pathname)).tensors;
    const wts = readSafetensors(await readFileBytes(new URL('weights.safetensors', dir).pathname)).tensors;
    const get = (m: Map<string, HostTensor>, k: string): HostTensor => {
      const t = m.get(k);
      if (!t) throw new Error(`golden tiny: ${k} missing`);
      return t;
    };
    for (const [inName, normW, linW, linB, outName] of [
      ['decoder_out', 'gen_logits.0.weight', 'gen_logits.1.weight', null, 'logits'],
      ['msve_out', 'proj.0.weight', 'proj.1.weight', 'proj.1.bias', 'proj_out'],
    ] as const) {
      const xin = get(io, inName), nw = get(wts, normW), lw = get(wts, linW);
      const D = xin.shape[xin.shape.length - 1], O = lw.shape[0];
      const bias = linB ? toFloat32(get(wts, linB)) : new Float32Array(O);
      // The Linear runs on the CPU in float64 so that only rmsNorm is under test here.
      const linearRef = (v: ArrayLike<number>) => matmulRef(v, toFloat32(lw), v.length / D, O, D, false, true).map((a, i) => a + bias[i % O]);
      const normed = await read(rmsNorm(fromData(toFloat32(xin), xin.shape), fromData(toFloat32(nw), nw.shape)));
      const got = linearRef(normed);
      const want = toFloat32(get(io, outName));
      console.log(`golden tiny ${outName}: relL2 vs PyTorch ${relL2(got, want).toExponential(2)}`);
      // PyTorch's f32 CPU kernels round differently: agreement to f32 rounding.
      expect(relL2(got, want)).toBeLessThan(1e-5);
      // The float64 reference of the same composition agrees too.
      expect(relL2(got, linearRef(rmsNormRef(toFloat32(xin), toFloat32(nw), D, 1e-6)))).toBeLessThan(1e-5);
    }
  });
});
