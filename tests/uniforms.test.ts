// Typed uniform schemas (src/graph/kernels/uniforms.ts): the generated `struct Params` and the
// packed bytes agree with WGSL's uniform layout rules (scalars 4-byte aligned, vec4 and arrays
// of vec4 16-byte aligned, the struct a 16-byte multiple) — checked on the words written and,
// for every kernel family's schema, on the GPU by a shader that reads each field back — and
// packing by name refuses unknown, missing, out-of-range and over-long values.
import { beforeAll, describe, expect, it } from 'vitest';
import { init, runtime } from '../src/graph/runtime.ts';
import { type UniformSchema, uniformSchema, type UniformType } from '../src/graph/kernels/uniforms.ts';
import { attentionParams } from '../src/graph/kernels/attention.ts';
import { batchnormParams } from '../src/graph/kernels/batchnorm.ts';
import { castParams } from '../src/graph/kernels/cast.ts';
import { convParams } from '../src/graph/kernels/conv.ts';
import { copyParams } from '../src/graph/kernels/copy.ts';
import { elementwiseParams } from '../src/graph/kernels/elementwise.ts';
import { embeddingParams } from '../src/graph/kernels/embedding.ts';
import { lossParams } from '../src/graph/kernels/loss.ts';
import { matmulParams } from '../src/graph/kernels/matmul.ts';
import { matvecParams } from '../src/graph/kernels/matvec.ts';
import * as moe from '../src/graph/kernels/moe.ts';
import { normParams } from '../src/graph/kernels/norm.ts';
import { optimParams } from '../src/graph/kernels/optim.ts';
import { poolParams } from '../src/graph/kernels/pool.ts';
import { randomParams } from '../src/graph/kernels/random.ts';
import { reduceParams } from '../src/graph/kernels/reduce.ts';
import { resizeParams } from '../src/graph/kernels/resize.ts';
import { rotaryParams } from '../src/graph/kernels/rotary.ts';
import { softmaxParams } from '../src/graph/kernels/softmax.ts';
import type { Params } from '../src/graph/tensor.ts';

type AnySchema = UniformSchema<Record<string, UniformType>>;

/** Every kernel family's schema (moe: one per group of kinds). */
const FAMILIES: Record<string, AnySchema> = {
  attention: attentionParams,
  batchnorm: batchnormParams,
  cast: castParams,
  conv: convParams,
  copy: copyParams,
  elementwise: elementwiseParams,
  embedding: embeddingParams,
  loss: lossParams,
  matmul: matmulParams,
  matvec: matvecParams,
  moeGate: moe.moeGateParams, moeRoute: moe.moeRouteParams, moeGather: moe.moeGatherParams, moeCombine: moe.moeCombineParams, moeSlotDot: moe.moeSlotDotParams, moeGmm: moe.moeGmmParams, moeWgrad: moe.moeWgradParams,
  norm: normParams,
  optim: optimParams,
  pool: poolParams,
  random: randomParams,
  reduce: reduceParams,
  resize: resizeParams,
  rotary: rotaryParams,
  softmax: softmaxParams,
};

function bytes(p: Params): DataView {
  const v = new DataView(new ArrayBuffer(p.byteLength));
  p.writeTo(v, 0);
  return v;
}

/** Element type and word count of a field (1 scalar, 4 per vec4). */
function shape(t: UniformType): { scalar: string; words: number } {
  const a = /^array<vec4<(\w+)>, *(\d+)>$/.exec(t);
  if (a) return { scalar: a[1], words: 4 * Number(a[2]) };
  const v = /^vec4<(\w+)>$/.exec(t);
  return v ? { scalar: v[1], words: 4 } : { scalar: t, words: 1 };
}

/** Distinct values for every field word (u32 from 1000 up, i32 negative, f32 with fractions). */
function sample(s: AnySchema): { values: Record<string, number | number[]>; words: { scalar: string; value: number }[] } {
  const values: Record<string, number | number[]> = {};
  const words: { scalar: string; value: number }[] = [];
  let k = 0;
  for (const [name, t] of Object.entries(s.fields)) {
    const { scalar, words: n } = shape(t);
    const xs = Array.from({ length: n }, () => {
      k++;
      return scalar === 'u32' ? 1000 + k : scalar === 'i32' ? -1000 - k : k + 0.25;
    });
    values[name] = n === 1 ? xs[0] : xs;
    for (const value of xs) words.push({ scalar, value });
  }
  return { values, words };
}

beforeAll(async () => {
  await init();
});

describe('uniform schema layout', () => {
  const mixed = uniformSchema('mixed', { n: 'u32', off: 'i32', s: 'f32', dims: 'array<vec4<u32>, 2>', v: 'vec4<f32>', last: 'u32' });

  it('declares explicit padding before 16-byte-aligned fields and after the last field', () => {
    expect(mixed.wgsl).toBe(
      'struct Params {\n  n: u32,  off: i32,  s: f32,  _pad0: u32,\n  dims: array<vec4<u32>, 2>,\n  v: vec4<f32>,\n  last: u32,  _pad1: u32,  _pad2: u32,  _pad3: u32,\n}',
    );
    expect(mixed.byteLength).toBe(80);
    // Scalar-only schemas keep their four-fields-a-line form, padded to 16 bytes.
    expect(uniformSchema('scalars', { a: 'u32', b: 'f32', c: 'i32' }).wgsl).toBe('struct Params {\n  a: u32,  b: f32,  c: i32,  _pad0: u32,\n}');
  });

  it('packs each field at its WGSL offset (scalars at 4, vec4 and arrays at 16-byte multiples), short lists zero-padded', () => {
    const v = bytes(mixed.pack({ n: 7, off: -3, s: 0.1, dims: [2, 3, 5], v: [1.5, -2, 4, 8], last: 9 }));
    expect(v.byteLength).toBe(80);
    expect(v.getUint32(0, true)).toBe(7);
    expect(v.getInt32(4, true)).toBe(-3);
    expect(v.getFloat32(8, true)).toBe(Math.fround(0.1));
    expect(v.getUint32(12, true)).toBe(0); // padding before dims
    expect([16, 20, 24, 28, 32, 36, 40, 44].map((o) => v.getUint32(o, true))).toEqual([2, 3, 5, 0, 0, 0, 0, 0]);
    expect([48, 52, 56, 60].map((o) => v.getFloat32(o, true))).toEqual([1.5, -2, 4, 8]);
    expect([64, 68, 72, 76].map((o) => v.getUint32(o, true))).toEqual([9, 0, 0, 0]);
  });

  it('partial packing fills the fields left out with 0', () => {
    const v = bytes(mixed.pack({ s: 2, last: 1 }, true));
    for (let o = 0; o < 80; o += 4) expect(v.getUint32(o, true), `word at ${o}`).toBe(o === 8 ? 0x40000000 : o === 64 ? 1 : 0);
  });

  it('refuses unknown, missing, out-of-range and over-long values, naming family and field', () => {
    const s = mixed as unknown as AnySchema;
    const all = { n: 1, off: 0, s: 0, dims: [1], v: [], last: 0 };
    expect(() => s.pack({ ...all, nn: 1 })).toThrow(/mixed params: unknown field 'nn' \(fields: n, off, s, dims, v, last\)/);
    expect(() => s.pack({ n: 1, off: 0, s: 0, v: [], last: 0 })).toThrow(/mixed params: field 'dims' missing/);
    expect(() => s.pack({ ...all, n: -1 })).toThrow(/mixed params: n = -1 is not a u32/);
    expect(() => s.pack({ ...all, n: 2 ** 32 })).toThrow(/is not a u32/);
    expect(() => s.pack({ ...all, n: 1.5 })).toThrow(/is not a u32/);
    expect(() => s.pack({ ...all, off: 2 ** 31 })).toThrow(/mixed params: off = 2147483648 is not an i32/);
    expect(() => s.pack({ ...all, dims: [1, 2, 3, 4, 5, 6, 7, 8, 9] })).toThrow(/mixed params: dims has 9 values, at most 8 fit in array<vec4<u32>, 2>/);
    expect(() => s.pack({ ...all, dims: [1, -2] })).toThrow(/mixed params: dims\[1\] = -2 is not a u32/);
    expect(() => s.pack({ ...all, dims: 3 })).toThrow(/dims is a array<vec4<u32>, 2>, got 3/);
    expect(() => s.pack({ ...all, n: [1] })).toThrow(/n is a u32, got a list/);
    expect(() => uniformSchema('bad', { x: 'vec3<f32>' as UniformType })).toThrow(/bad params: field 'x' has unsupported type 'vec3<f32>'/);
  });
});

describe('every kernel family schema matches the GPU compiler layout', () => {
  it('a shader reading back each field word by name sees the value packed for it', async () => {
    const device = runtime().device;
    for (const [family, s] of Object.entries(FAMILIES)) {
      const { values, words } = sample(s);
      // out[k] = the bits of the k-th field word, read through the declared struct.
      const reads: string[] = [];
      for (const [name, t] of Object.entries(s.fields)) {
        const { words: n } = shape(t);
        const a = /^array</.test(t);
        for (let i = 0; i < n; i++) {
          const e = n === 1 ? `p.${name}` : a ? `p.${name}[${i >> 2}][${i & 3}]` : `p.${name}[${i}]`;
          reads.push(`  out[${reads.length}] = bitcast<u32>(${e});`);
        }
      }
      const code = `${s.wgsl}\n@group(0) @binding(0) var<uniform> p: Params;\n@group(0) @binding(1) var<storage, read_write> out: array<u32>;\n@compute @workgroup_size(1)\nfn main() {\n${reads.join('\n')}\n}\n`;
      const params = s.pack(values);
      const data = new Uint8Array(params.byteLength);
      params.writeTo(new DataView(data.buffer), 0);
      expect(params.byteLength, family).toBe(s.byteLength);
      device.pushErrorScope('validation');
      const module = device.createShaderModule({ code, label: `uniforms-${family}` });
      const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
      const uni = device.createBuffer({ size: data.byteLength, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
      device.queue.writeBuffer(uni, 0, data);
      const out = device.createBuffer({ size: 4 * words.length, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
      const back = device.createBuffer({ size: 4 * words.length, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      const bind = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: uni } }, { binding: 1, resource: { buffer: out } }] });
      const enc = device.createCommandEncoder();
      const pass = enc.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bind);
      pass.dispatchWorkgroups(1);
      pass.end();
      enc.copyBufferToBuffer(out, 0, back, 0, 4 * words.length);
      device.queue.submit([enc.finish()]);
      const err = await device.popErrorScope();
      expect(err?.message, `${family}: ${code}`).toBeUndefined();
      await back.mapAsync(GPUMapMode.READ);
      const got = new DataView(back.getMappedRange().slice(0));
      back.unmap();
      [uni, out, back].forEach((b) => b.destroy());
      const seen = words.map((_, k) => (words[k].scalar === 'f32' ? got.getFloat32(4 * k, true) : words[k].scalar === 'i32' ? got.getInt32(4 * k, true) : got.getUint32(4 * k, true)));
      expect(seen, family).toEqual(words.map((w) => (w.scalar === 'f32' ? Math.fround(w.value) : w.value)));
    }
  });
});
