// safetensors reader/writer: the golden weights file against an independent header parse, dtype
// conversions against float64 references, write→read round trips on random tensors, and
// corrupted files (truncations, flipped header bytes, crafted bad headers) that must give a
// WeightsFileError naming the file and a byte offset — never another exception or garbage.

import { describe, expect, it } from 'vitest';
import {
  byteSizeOf, DTYPE_SIZE, type DType, f32ToBf16Bits, f32ToF16Bits, fromFloat32, fromInts, type HostTensor,
  numelOf, readSafetensors, toFloat32, toInt32, writeSafetensors,
} from '../src/io/safetensors.ts';
import { readFileBytes, sourceName, WeightsFileError, writeFileAtomic } from '../src/io/files.ts';
import { type Rng, rng } from './util.ts';

const goldenWeights = new URL('../../shared/golden/tiny/weights.safetensors', import.meta.url).pathname;

/** Reference f16 decode by float64 arithmetic on the bit fields. */
function halfToNumber(h: number): number {
  const s = h >> 15 ? -1 : 1, e = (h >> 10) & 31, m = h & 1023;
  if (e === 0) return s * m * Math.pow(2, -24);
  if (e === 31) return m ? NaN : s * Infinity;
  return s * Math.pow(2, e - 15) * (1 + m / 1024);
}

/** Reference round-to-nearest-even into a sorted table of finite representable values. */
function nearestEven(x: number, values: Float64Array, bitsOf: (i: number) => number): number {
  let lo = 0, hi = values.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (values[mid] <= x) lo = mid;
    else hi = mid;
  }
  const dl = Math.abs(x - values[lo]), dh = Math.abs(values[hi] - x);
  if (dl < dh) return bitsOf(lo);
  if (dh < dl) return bitsOf(hi);
  return bitsOf(lo) & 1 ? bitsOf(hi) : bitsOf(lo);
}

/** Expects `fn` to throw a WeightsFileError whose message names `file` and a byte offset. */
function expectFileError(fn: () => unknown, file: string, extra?: RegExp): WeightsFileError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  if (!(caught instanceof WeightsFileError)) {
    throw new Error(`expected a WeightsFileError, got ${caught === undefined ? 'no error' : String((caught as Error)?.stack ?? caught)}`);
  }
  expect(caught.message).toContain(file);
  expect(caught.message).toMatch(/byte offset \d+/);
  expect(caught.offset).toBeTypeOf('number');
  if (extra) expect(caught.message).toMatch(extra);
  return caught;
}

const DTYPES: DType[] = ['F64', 'F32', 'F16', 'BF16', 'I64', 'I32', 'I16', 'I8', 'U8', 'BOOL', 'U16', 'U32', 'U64'];

function randomShape(R: Rng): number[] {
  const rank = R.int(0, 4);
  return Array.from({ length: rank }, () => (R.next() < 0.05 ? 0 : R.int(1, 7)));
}

function randomTensor(R: Rng, dtype: DType, shape = randomShape(R)): HostTensor {
  const data = new Uint8Array(byteSizeOf(dtype, shape));
  for (let i = 0; i < data.length; i++) data[i] = R.int(0, 255);
  if (dtype === 'BOOL') for (let i = 0; i < data.length; i++) data[i] &= 1;
  return { dtype, shape, data };
}

/** A small safetensors file with a few random tensors and its tensors. */
function smallFile(R: Rng): { bytes: Uint8Array; tensors: Map<string, HostTensor> } {
  const tensors = new Map<string, HostTensor>();
  const n = R.int(2, 6);
  for (let i = 0; i < n; i++) tensors.set(`layer.${i}.w${R.int(0, 99)}`, randomTensor(R, DTYPES[R.int(0, DTYPES.length - 1)], [R.int(1, 5), R.int(1, 5)]));
  return { bytes: writeSafetensors(tensors, { note: 'small' }), tensors };
}

/** Builds a file from a raw header object and data bytes (for crafted bad headers). */
function craft(header: unknown, data: Uint8Array, padTo8 = true): Uint8Array {
  let json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  if (padTo8 && json.length % 8) {
    const p = new Uint8Array(Math.ceil(json.length / 8) * 8).fill(0x20);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setUint32(0, json.length, true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

describe('safetensors: golden tiny weights', () => {
  it('reads all 216 tensors with the header an independent parse sees', async () => {
    const bytes = await readFileBytes(goldenWeights);
    const { tensors, metadata } = readSafetensors(bytes, goldenWeights);
    // Independent parse: DataView length + JSON.parse of the raw header text.
    const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
    const names = Object.keys(header).filter((k) => k !== '__metadata__');
    expect(tensors.size).toBe(216);
    expect(names.length).toBe(216);
    expect(metadata).toEqual(header.__metadata__);
    const dtypes = new Set<string>();
    for (const name of names) {
      const h = header[name], t = tensors.get(name)!;
      expect(t.dtype).toBe(h.dtype);
      expect(t.shape).toEqual(h.shape);
      expect(t.data.byteOffset - bytes.byteOffset).toBe(8 + n + h.data_offsets[0]);
      expect(t.data.length).toBe(h.data_offsets[1] - h.data_offsets[0]);
      dtypes.add(t.dtype);
    }
    expect([...dtypes].sort()).toEqual(['F16', 'F32', 'I64']);
    // Spot values: num_batches_tracked = 1 (README), BN running_var > 0, rope.freqs = 1/10000^(2i/dim).
    for (const [name, t] of tensors) {
      if (name.endsWith('num_batches_tracked')) {
        expect(t.shape).toEqual([]);
        expect(Array.from(toInt32(t, name))).toEqual([1]);
      }
      if (name.endsWith('running_var')) expect(Math.min(...toFloat32(t))).toBeGreaterThan(0);
    }
    const freqs = toFloat32(tensors.get('encoder.layers.0.self_attention.rope.freqs')!);
    const dim = 2 * freqs.length; // RotaryEmbedding(dim = qk_rope_dim/2) keeps dim/2 freqs
    freqs.forEach((f, i) => expect(f).toBe(Math.fround(1 / Math.fround(Math.pow(10000, Math.fround((2 * i) / dim))))));
  });

  it('F16 values decode exactly like a float64 bit-field reference', async () => {
    const { tensors } = readSafetensors(await readFileBytes(goldenWeights), goldenWeights);
    let count = 0;
    for (const [, t] of tensors) {
      if (t.dtype !== 'F16') continue;
      const got = toFloat32(t);
      const dv = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      for (let i = 0; i < got.length; i++) {
        if (got[i] !== halfToNumber(dv.getUint16(2 * i, true))) throw new Error(`element ${i}: ${got[i]}`);
      }
      count += got.length;
    }
    expect(count).toBeGreaterThan(1e6);
  });

  it('write(read(golden)) reproduces the golden data bytes and header entries (same layout as gen.py)', async () => {
    const bytes = await readFileBytes(goldenWeights);
    const { tensors, metadata } = readSafetensors(bytes, goldenWeights);
    const again = writeSafetensors(tensors, metadata);
    expect(again.length).toBe(bytes.length);
    const n = new DataView(bytes.buffer, bytes.byteOffset).getUint32(0, true);
    expect(new DataView(again.buffer).getUint32(0, true)).toBe(n);
    let firstDiff = -1;
    for (let i = 8 + n; i < bytes.length; i++) if (again[i] !== bytes[i]) { firstDiff = i; break; }
    expect(firstDiff).toBe(-1);
    // gen.py puts "__metadata__" last, Python's safetensors (and this writer) first: compare the rest.
    const entries = (b: Uint8Array) => Object.entries(JSON.parse(new TextDecoder().decode(b.subarray(8, 8 + n))) as object);
    const mine = entries(again), theirs = entries(bytes);
    expect(mine.filter(([k]) => k !== '__metadata__')).toEqual(theirs.filter(([k]) => k !== '__metadata__'));
    expect(Object.fromEntries(mine).__metadata__).toEqual(Object.fromEntries(theirs).__metadata__);
  });

  it('truncations of the golden file at several offsets are errors naming file and offset', async () => {
    const bytes = await readFileBytes(goldenWeights);
    const n = new DataView(bytes.buffer, bytes.byteOffset).getUint32(0, true);
    for (const cut of [0, 3, 7, 8, 9, 8 + (n >> 1), 8 + n - 1, 8 + n, 8 + n + 1, bytes.length >> 1, bytes.length - 1]) {
      const e = expectFileError(() => readSafetensors(bytes.subarray(0, cut), 'golden-cut.safetensors'), 'golden-cut.safetensors');
      expect(e.offset!).toBeLessThanOrEqual(Math.max(cut, 8 + n));
    }
  });
});

describe('safetensors: conversions', () => {
  it('f32→f16 rounds to nearest even like a float64 search over all halves; decode∘encode is the identity', () => {
    const R = rng('safetensors f16');
    const finite: number[] = [];
    for (let h = 0; h < 0x7c00; h++) finite.push(h);
    const values = Float64Array.from(finite.map(halfToNumber));
    // f32 inputs (the scaled values rounded to f32 first: an f64 just past a tie would otherwise be
    // rounded twice, f64→f32 onto the tie, then to even — seed 1351291251).
    const sample = R.randn(4000, 3).map((x, i) => Math.fround(i % 4 === 0 ? x * 1e-5 : i % 4 === 1 ? x * 2e4 : x));
    for (const x of sample) {
      const ax = Math.abs(x);
      let want: number;
      if (ax >= 65520) want = 0x7c00; // at/over max + half ulp: overflow to Inf
      else want = nearestEven(ax, values, (i) => finite[i]);
      const got = f32ToF16Bits(x);
      if (got !== (x < 0 || Object.is(x, -0) ? want | 0x8000 : want)) throw new Error(`f16(${x}) = ${got.toString(16)}, want ${want.toString(16)}`);
    }
    // Exact midpoints between neighbouring halves (ties, incl. subnormals) go to the even one.
    for (let i = 0; i + 1 < values.length; i++) {
      const mid = (values[i] + values[i + 1]) / 2;
      if (Math.fround(mid) !== mid) throw new Error(`midpoint ${mid} not exact in f32`);
      const want = finite[i] & 1 ? finite[i + 1] : finite[i];
      if (f32ToF16Bits(mid) !== want || f32ToF16Bits(-mid) !== (want | 0x8000)) throw new Error(`tie ${mid}: got 0x${f32ToF16Bits(mid).toString(16)}`);
    }
    // Every half (both signs, incl. subnormals, ±Inf) survives decode then encode; NaN stays NaN.
    const all = new Uint16Array(65536).map((_, i) => i);
    const dec = toFloat32({ dtype: 'F16', shape: [65536], data: new Uint8Array(all.buffer) });
    for (let h = 0; h < 65536; h++) {
      if ((h & 0x7c00) === 0x7c00 && h & 0x3ff) expect(Number.isNaN(dec[h])).toBe(true);
      else if (f32ToF16Bits(dec[h]) !== h) throw new Error(`half 0x${h.toString(16)} → ${dec[h]} → 0x${f32ToF16Bits(dec[h]).toString(16)}`);
    }
  });

  it('f32→bf16 rounds to nearest even (float64 reference); bf16 decode is exact', () => {
    const R = rng('safetensors bf16');
    const xs = R.randn(3000, 10);
    const enc = fromFloat32(xs, [xs.length], 'BF16');
    const dec = toFloat32(enc);
    for (let i = 0; i < xs.length; i++) {
      const x = xs[i];
      // Reference: the two bf16 neighbours of x by truncating its float32 bits, pick nearest/even.
      const u = new Uint32Array(new Float32Array([x]).buffer)[0];
      const lo = u >>> 16, hi = lo + 1;
      const f = (b: number) => new Float32Array(new Uint32Array([b << 16]).buffer)[0];
      const dl = Math.abs(x - f(lo)), dh = Math.abs(f(hi) - x);
      const want = dl < dh ? lo : dh < dl ? hi : lo & 1 ? hi : lo;
      expect(f32ToBf16Bits(x)).toBe(want);
      expect(dec[i]).toBe(f(want));
    }
  });

  it('integer dtypes: toFloat32 / toInt32 values, I64 range check, fromInts', () => {
    const R = rng('safetensors ints');
    const vals = Array.from({ length: 200 }, (_, i) => (i < 4 ? [0, -1, 2 ** 31 - 1, -(2 ** 31)][i] : R.int(-1e9, 1e9)));
    const t64 = fromInts(vals, [200], 'I64'), t32 = fromInts(vals, [10, 20], 'I32');
    const bi = new BigInt64Array(t64.data.buffer);
    vals.forEach((v, i) => expect(bi[i]).toBe(BigInt(v)));
    expect(Array.from(toInt32(t64))).toEqual(vals);
    expect(Array.from(toInt32(t32))).toEqual(vals);
    expect(Array.from(toFloat32(t64))).toEqual(vals.map(Math.fround));
    const big = fromInts([5, 2 ** 31], [2], 'I64');
    expect(() => toInt32(big, 'big')).toThrow(/big.*element 1 = 2147483648/);
    expect(() => toInt32(fromInts([-(2 ** 31) - 1], [1], 'I64'))).toThrow(/-2147483649/);
    expect(Array.from(toFloat32(fromInts([-(2 ** 40)], [1], 'I64')))).toEqual([-(2 ** 40)]);
    expect(() => toInt32(fromFloat32([1], [1]))).toThrow(/F32 is not an integer/);
    expect(() => fromFloat32([1, 2], [3])).toThrow(/2 values for shape \[3\]/);
    // Unaligned views are handled (copy), not a RangeError.
    const buf = new Uint8Array(9);
    buf.set(new Uint8Array(new Float32Array([1.5, -2]).buffer), 1);
    expect(Array.from(toFloat32({ dtype: 'F32', shape: [2], data: buf.subarray(1) }))).toEqual([1.5, -2]);
  });
});

describe('safetensors: round trips', () => {
  it('random tensors of every dtype and odd shapes (incl. scalars and empty) survive write→read', () => {
    const R = rng('safetensors roundtrip');
    for (let rep = 0; rep < 20; rep++) {
      const tensors: Record<string, HostTensor> = {};
      const n = R.int(1, 12);
      for (let i = 0; i < n; i++) tensors[`t${i}.${DTYPES[i % DTYPES.length]}.${R.int(0, 1e6)}`] = randomTensor(R, DTYPES[R.int(0, DTYPES.length - 1)]);
      const metadata = R.next() < 0.5 ? { format: 'pt', seed: String(R.seed), 'ünï': 'cödé "q"' } : undefined;
      const bytes = writeSafetensors(tensors, metadata);
      const n8 = new DataView(bytes.buffer).getUint32(0, true);
      expect(n8 % 8).toBe(0);
      expect(new TextDecoder().decode(bytes.subarray(8, 8 + n8))).toMatch(/^\{.*\} *$/);
      const back = readSafetensors(bytes, 'rt.safetensors');
      expect(back.metadata).toEqual(metadata ?? {});
      expect([...back.tensors.keys()].sort()).toEqual(Object.keys(tensors).sort());
      for (const [name, t] of Object.entries(tensors)) {
        const b = back.tensors.get(name)!;
        expect(b.dtype).toBe(t.dtype);
        expect(b.shape).toEqual(t.shape);
        expect(b.data).toEqual(t.data);
        // Layout: every tensor offset is a multiple of its element size.
        expect((b.data.byteOffset - 8 - n8) % DTYPE_SIZE[b.dtype]).toBe(0);
        expect(b.data.length).toBe(numelOf(t.shape) * DTYPE_SIZE[t.dtype]);
      }
    }
  });

  it('float data survive fromFloat32 → write → read → toFloat32 (F32 exact, F16/BF16 to their rounding)', () => {
    const R = rng('safetensors float roundtrip');
    const shape = [R.int(1, 9), R.int(1, 9), R.int(1, 5)];
    const x = R.randn(numelOf(shape));
    const file = writeSafetensors(new Map([['a', fromFloat32(x, shape)], ['b', fromFloat32(x, shape, 'F16')], ['c', fromFloat32(x, shape, 'BF16')], ['d', fromFloat32(x, shape, 'F64')]]));
    const { tensors } = readSafetensors(file);
    expect(Array.from(toFloat32(tensors.get('a')!))).toEqual(Array.from(x));
    expect(Array.from(toFloat32(tensors.get('d')!))).toEqual(Array.from(x));
    const h = toFloat32(tensors.get('b')!), bf = toFloat32(tensors.get('c')!);
    for (let i = 0; i < x.length; i++) {
      expect(Math.abs(h[i] - x[i])).toBeLessThanOrEqual(Math.max(Math.abs(x[i]) * 2 ** -11, 2 ** -25));
      expect(Math.abs(bf[i] - x[i])).toBeLessThanOrEqual(Math.abs(x[i]) * 2 ** -8);
    }
  });

  it('reads files whose tensors are listed in any order and stored in any order', () => {
    const R = rng('safetensors order');
    const a = randomTensor(R, 'F16', [3]), b = randomTensor(R, 'I64', [2]), c = randomTensor(R, 'F32', []);
    // Data order c, a, b with header order b, c, a (unaligned offsets are legal; reads copy).
    const data = new Uint8Array([...c.data, ...a.data, ...b.data]);
    const file = craft({ b: { dtype: 'I64', shape: [2], data_offsets: [10, 26] }, c: { dtype: 'F32', shape: [], data_offsets: [0, 4] }, a: { dtype: 'F16', shape: [3], data_offsets: [4, 10] } }, data);
    const t = readSafetensors(file, 'order.safetensors').tensors;
    expect(t.get('a')!.data).toEqual(a.data);
    expect(t.get('b')!.data).toEqual(b.data);
    expect(t.get('c')!.data).toEqual(c.data);
    expect(Array.from(toFloat32(t.get('b')!))).toEqual(Array.from(toFloat32(b)));
  });

  it('writer rejects inconsistent tensors', () => {
    expect(() => writeSafetensors({ x: { dtype: 'F32', shape: [2], data: new Uint8Array(7) } })).toThrow(/"x" F32 \[2\] needs 8 bytes, has 7/);
    expect(() => writeSafetensors({ __metadata__: fromFloat32([1], [1]) })).toThrow(/invalid tensor name/);
    expect(() => writeSafetensors({ x: { dtype: 'Q8' as DType, shape: [1], data: new Uint8Array(1) } })).toThrow(/unknown dtype/);
  });
});

describe('safetensors: corrupted files', () => {
  it('crafted bad headers name the file, the tensor and the byte offset', () => {
    const F = 'bad.safetensors';
    const d8 = new Uint8Array(8);
    const cases: [Uint8Array, RegExp][] = [
      [craft({ w: { dtype: 'F32', shape: [2], data_offsets: [0, 12] } }, new Uint8Array(12)), /tensor "w": holds 12 bytes but F32 shape \[2\] needs 8/],
      [craft({ w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, d8), /tensor "w": data_offsets \[0, 16\] run past the end/],
      [craft({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, d8), /"b".*overlap tensor "a"/],
      [craft({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, d8), /"a".*4 unclaimed bytes/],
      [craft({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, d8), /4 bytes after the last tensor/],
      [craft({ a: { dtype: 'F32', shape: [1], data_offsets: [8, 4] } }, d8), /"a".*end before begin/],
      [craft({ a: { dtype: 'F32', shape: [1], data_offsets: [-4, 0] } }, d8), /"a".*bad data_offsets/],
      [craft({ a: { dtype: 'F32', shape: [1.5], data_offsets: [0, 8] } }, d8), /"a".*bad shape/],
      [craft({ a: { dtype: 'Q4', shape: [1], data_offsets: [0, 8] } }, d8), /"a".*unknown dtype "Q4"/],
      [craft({ a: { dtype: 'F32', shape: [2] } }, d8), /"a".*bad data_offsets/],
      [craft({ a: [1, 2] }, d8), /"a".*not an object/],
      [craft({ __metadata__: { k: 3 } }, new Uint8Array(0)), /"__metadata__"\."k" is not a string/],
      [craft('{"a": {"dtype": "F32",', d8), /not valid JSON/],
      [craft('[1,2]   ', d8), /does not start with "\{"/],
      [craft('{}', new Uint8Array(0), false).subarray(0, 9), /bad header length 2: the file has only 1 bytes/],
      [(() => { const f = craft('{"a\uFFFF":1}', d8); f[11] = 0xff; return f; })(), /not valid UTF-8/],
      [(() => { const f = craft({}, d8); new DataView(f.buffer).setUint32(4, 1, true); return f; })(), /bad header length \d+ \(over the/],
    ];
    for (const [bytes, re] of cases) expectFileError(() => readSafetensors(bytes, F), F, re);
  });

  it('every truncation of a small file and random flips of its header bytes: error or an intact parse, never another exception', () => {
    const R = rng('safetensors corrupt');
    const { bytes, tensors } = smallFile(R);
    const F = 'small.safetensors';
    for (let cut = 0; cut < bytes.length; cut++) expectFileError(() => readSafetensors(bytes.subarray(0, cut), F), F);
    const n = new DataView(bytes.buffer).getUint32(0, true);
    let errors = 0, parsed = 0;
    for (let rep = 0; rep < 400; rep++) {
      const f = bytes.slice();
      const flips = R.int(1, 3);
      for (let k = 0; k < flips; k++) f[R.int(0, 8 + n - 1)] ^= 1 << R.int(0, 7);
      let result;
      try {
        result = readSafetensors(f, F);
      } catch (e) {
        if (!(e instanceof WeightsFileError)) throw new Error(`flip gave ${(e as Error).stack}`);
        expect(e.message).toContain(F);
        expect(e.message).toMatch(/byte offset \d+/);
        errors++;
        continue;
      }
      // A flip that still parses must describe a consistent file: sizes match shapes, tiles the data.
      parsed++;
      let total = 0;
      for (const [, t] of result.tensors) {
        expect(t.data.length).toBe(byteSizeOf(t.dtype, t.shape));
        total += t.data.length;
      }
      expect(total).toBe(bytes.length - 8 - n);
      void tensors;
    }
    expect(errors).toBeGreaterThan(0);
    console.log(`header flips: ${errors} errors, ${parsed} consistent parses (e.g. flipped name or metadata characters)`);
  });
});

describe('files: atomic write and cross-runtime reads', () => {
  it('writeFileAtomic replaces the file in one rename and leaves no temporary behind', async () => {
    const R = rng('files atomic');
    const Deno = (globalThis as unknown as { Deno: { makeTempDir(): Promise<string>; readDir(p: string): AsyncIterable<{ name: string }>; remove(p: string, o: { recursive: boolean }): Promise<void> } }).Deno;
    const dir = await Deno.makeTempDir();
    try {
      const path = `${dir}/w.safetensors`;
      const first = writeSafetensors({ a: fromFloat32(R.randn(5), [5]) });
      const second = writeSafetensors({ b: fromFloat32(R.randn(9), [3, 3], 'F16') }, { v: '2' });
      await writeFileAtomic(path, first);
      await writeFileAtomic(path, second);
      expect(await readFileBytes(path)).toEqual(second);
      const names: string[] = [];
      for await (const e of Deno.readDir(dir)) names.push(e.name);
      expect(names).toEqual(['w.safetensors']);
      expect(readSafetensors(await readFileBytes(path), path).metadata).toEqual({ v: '2' });
      // Browser-style inputs: Blob and ArrayBuffer give the same bytes.
      expect(await readFileBytes(new Blob([second]))).toEqual(second);
      expect(await readFileBytes(second.slice().buffer)).toEqual(second);
      expect(sourceName(new File([second], 'upload.safetensors'))).toBe('upload.safetensors');
      await expect(writeFileAtomic(`${dir}/no/such/dir/x`, first)).rejects.toThrow();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});
