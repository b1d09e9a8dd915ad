import { beforeAll, describe, expect, it } from 'vitest';
import { fromData, init, read, realize } from '../src/graph/runtime.ts';
import { rotary } from '../src/graph/ops/rotary.ts';
import { grad, param } from '../src/graph/autograd.ts';
import { readFileBytes } from '../src/io/files.ts';
import { readSafetensors, toFloat32 } from '../src/io/safetensors.ts';
import { abs, dot, expectGradMatchesFiniteDiff, expectWithin, relL2, rng } from './util.ts';
import { numel, rotaryBound, rotaryRef } from './ref/nn.ts';

beforeAll(async () => {
  await init();
});

const R = rng('rotary');

/** rotary_embedding_torch's freqs for RotaryEmbedding(dim): 1/10000^(2i/dim), in f32. */
function torchFreqs(dim: number): Float64Array {
  const m = Math.floor(dim / 2);
  return Float64Array.from({ length: m }, (_, i) => Math.fround(1 / Math.fround(10000 ** Math.fround((2 * i) / dim))));
}

// Error model: tests/ref/nn.ts rotaryBound.

async function check(shape: number[], freqs: Float64Array, start: number, fd: boolean) {
  const [n, dh] = shape.slice(-2);
  const X = R.randn(numel(shape)), G = R.randn(numel(shape));
  const x = param(fromData(X, shape));
  const f = fromData(freqs, [freqs.length]);
  const y = rotary(x, f, start);
  const [gx] = grad(y, [x], fromData(G, shape));
  await realize([y, gx!]);
  const yr = rotaryRef(X, freqs, n, dh, start);
  const gr = rotaryRef(G, freqs, n, dh, start, -1);
  const got = await read(y);
  console.log(`rotary [${shape}] start ${start} m ${freqs.length}: forward relL2 ${relL2(got, yr).toExponential(2)}`);
  expectWithin(got, yr, rotaryBound(X, freqs, n, dh, start), `rotary [${shape}] start ${start}: y`);
  expectWithin(await read(gx!), gr, rotaryBound(G, freqs, n, dh, start), `rotary [${shape}] start ${start}: dx`);
  // Features outside [start, start+2m) are copied exactly.
  for (let e = 0; e < X.length; e++) {
    const c = e % dh;
    if (c < start || c >= start + 2 * freqs.length) expect(got[e]).toBe(X[e]);
  }
  if (fd) {
    // Linear in x: finite differences are exact up to rounding.
    expectGradMatchesFiniteDiff(gr, (xx) => dot(G, rotaryRef(xx, freqs, n, dh, start)), X, 1e-3, 'reference dx', { scale: dot(abs(G), abs(rotaryRef(X, freqs, n, dh, start))) });
  }
}

describe('rotary', () => {
  it('MLA layout: [b,H,n,nope+rope], start = nope, first half of the rope part rotates', async () => {
    for (let k = 0; k < 3; k++) {
      const nope = 2 * R.int(0, 6), rope = 4 * R.int(1, 4);
      const freqs = torchFreqs(rope / 2); // qk_rope/4 entries
      await check([R.int(1, 2), R.int(1, 3), R.int(1, 12), nope + rope], freqs, nope, true);
    }
  });

  it('odd start and odd leftovers, rank 2', async () => {
    const m = R.int(1, 5), start = 2 * R.int(0, 3) + 1;
    await check([R.int(1, 20), start + 2 * m + R.int(0, 3)], R.uniform(m, 0, 1), start, true);
  });

  it('long sequences and large angles (range reduction of sin/cos)', async () => {
    // positions up to ~200 with freqs up to 3: θ up to ~600 rad.
    await check([2, R.int(150, 200), 16], R.uniform(6, 0.5, 3), 2, false);
    await check([1, 80, 96], torchFreqs(24), 48, false);
  });

  it('golden freqs (tiny: qk_nope = qk_rope = 12)', async () => {
    const url = new URL('../../shared/golden/tiny/weights.safetensors', import.meta.url);
    const t = readSafetensors(await readFileBytes(url.pathname)).tensors.get('decoder.layers.0.self_attention.rope.freqs');
    if (!t) throw new Error('golden tiny: decoder.layers.0.self_attention.rope.freqs missing');
    const freqs = Float64Array.from(toFloat32(t));
    // Stored freqs are rotary_embedding_torch's own; they must equal the formula here.
    expect(Array.from(freqs)).toEqual(Array.from(torchFreqs(6)));
    await check([2, 4, 12, 24], freqs, 12, false);
  });

  it('rejects a rotated range that does not fit', () => {
    const x = fromData(new Float32Array(2 * 8), [2, 8]);
    expect(() => rotary(x, fromData([1, 2, 3], [3]), 3)).toThrow(/do not fit/);
  });

  it('position offset (cached decoding) equals the matching rows of the full rotation', async () => {
    const n = R.int(2, 9), dh = 16, off = R.int(1, n - 1);
    const freqs = torchFreqs(8);
    const X = R.randn(n * dh);
    const full = rotary(fromData(X, [1, n, dh]), fromData(freqs, [freqs.length]), 4);
    const tail = rotary(fromData(X.subarray(off * dh), [1, n - off, dh]), fromData(freqs, [freqs.length]), 4, off);
    await realize([full, tail]);
    const f = await read(full);
    // The same arithmetic on the same positions: bit-identical.
    expectWithin(await read(tail), f.subarray(off * dh), 0, 'rows of the offset rotation vs the full one');
  });
});
