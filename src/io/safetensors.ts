// safetensors reader/writer (the format of Hugging Face's `safetensors`, byte-compatible both
// ways): 8-byte little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}} padded with
// spaces, then the raw little-endian data; offsets are relative to the start of the data.
// Every structural problem is a WeightsFileError naming the file, tensor and byte offset.

import { WeightsFileError } from './files.ts';

export type DType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U64' | 'U32' | 'U16' | 'U8' | 'BOOL';

/** A tensor on the host: raw little-endian bytes, row-major (contiguous). */
export interface HostTensor {
  dtype: DType;
  shape: number[];
  data: Uint8Array;
}

export const DTYPE_SIZE: Record<DType, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
};

export function isDType(s: unknown): s is DType {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_SIZE, s);
}

if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error('src/io: big-endian hosts are not supported (weights are little-endian and read through typed arrays)');
}

/** Number of elements of a shape (1 for a scalar `[]`). */
export function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Byte size a tensor of this dtype and shape must have. */
export function byteSizeOf(dtype: DType, shape: readonly number[]): number {
  return numelOf(shape) * DTYPE_SIZE[dtype];
}

/** Header JSON is limited like Python's safetensors (100 MB) so a corrupt length cannot make us
 *  decode a huge buffer. */
const MAX_HEADER = 100_000_000;

export interface SafetensorsFile {
  tensors: Map<string, HostTensor>;
  metadata: Record<string, string>;
}

/** Parses a safetensors file. Tensor `data` are views into `bytes` (no copy). */
export function readSafetensors(bytes: Uint8Array, fileName = '<memory>'): SafetensorsFile {
  const fail = (offset: number | undefined, detail: string, tensor?: string): never => {
    throw new WeightsFileError(fileName, offset, detail, tensor);
  };
  if (bytes.length < 8) fail(0, `truncated safetensors file: ${bytes.length} bytes, the 8-byte header length is missing`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lenLo = dv.getUint32(0, true), lenHi = dv.getUint32(4, true);
  const headerLen = lenHi * 2 ** 32 + lenLo;
  if (headerLen > MAX_HEADER) fail(0, `bad header length ${headerLen} (over the ${MAX_HEADER}-byte limit)`);
  if (8 + headerLen > bytes.length) fail(0, `bad header length ${headerLen}: the file has only ${bytes.length - 8} bytes after the length field (truncated?)`);
  if (headerLen < 2) fail(0, `bad header length ${headerLen}: too short for a JSON object`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLen));
  } catch {
    return fail(8, 'header is not valid UTF-8');
  }
  if (text[0] !== '{') fail(8, `header does not start with "{" (found ${JSON.stringify(text.slice(0, 16))})`);
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    // V8 reports "at position P" — translate it to a file offset where possible.
    const m = /position (\d+)/.exec(String((e as Error).message));
    return fail(8 + (m ? Number(m[1]) : 0), `header is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) return fail(8, 'header JSON is not an object');

  const dataStart = 8 + headerLen;
  const dataLen = bytes.length - dataStart;
  const metadata: Record<string, string> = {};
  const entries: { name: string; dtype: DType; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail(8, '"__metadata__" is not an object of strings');
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(8, `"__metadata__"."${k}" is not a string`);
        metadata[k] = v as string;
      }
      continue;
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return fail(8, 'header entry is not an object', name);
    const info = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (!isDType(info.dtype)) return fail(8, `unknown dtype ${JSON.stringify(info.dtype)}`, name);
    const shape = info.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      return fail(8, `bad shape ${JSON.stringify(shape)}`, name);
    }
    const offs = info.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      return fail(8, `bad data_offsets ${JSON.stringify(offs)}`, name);
    }
    const [begin, end] = offs as number[];
    if (begin > end) fail(dataStart + begin, `data_offsets [${begin}, ${end}] end before begin`, name);
    if (end > dataLen) {
      fail(dataStart + begin, `data_offsets [${begin}, ${end}] run past the end of the data (${dataLen} bytes after the header; file truncated?)`, name);
    }
    const want = byteSizeOf(info.dtype, shape as number[]);
    if (end - begin !== want) {
      fail(dataStart + begin, `holds ${end - begin} bytes but ${info.dtype} shape [${(shape as number[]).join(', ')}] needs ${want}`, name);
    }
    entries.push({ name, dtype: info.dtype, shape: (shape as number[]).slice(), begin, end });
  }
  // Python's safetensors requires the tensors to tile the data exactly: no overlap, no hole.
  const sorted = entries.slice().sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0, prev = '';
  for (const e of sorted) {
    if (e.begin < pos) fail(dataStart + e.begin, `data_offsets [${e.begin}, ${e.end}] overlap tensor "${prev}" (which ends at ${pos})`, e.name);
    if (e.begin > pos) fail(dataStart + pos, `${e.begin - pos} unclaimed bytes before this tensor's data`, e.name);
    pos = e.end;
    prev = e.name;
  }
  if (pos !== dataLen) fail(dataStart + pos, `${dataLen - pos} bytes after the last tensor's data are claimed by no tensor`);

  const tensors = new Map<string, HostTensor>();
  for (const e of entries) {
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data: bytes.subarray(dataStart + e.begin, dataStart + e.end) });
  }
  return { tensors, metadata };
}

/** Serialises tensors as safetensors. Data are laid out by descending element size (stable), so
 *  every tensor's offset is a multiple of its element size, as Python's writer does. */
export function writeSafetensors(
  tensors: Map<string, HostTensor> | Record<string, HostTensor>,
  metadata?: Record<string, string>,
): Uint8Array<ArrayBuffer> {
  const list = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  for (const [name, t] of list) {
    if (name === '__metadata__' || name.length === 0) throw new Error(`writeSafetensors: invalid tensor name "${name}"`);
    if (!isDType(t.dtype)) throw new Error(`writeSafetensors: tensor "${name}" has unknown dtype ${JSON.stringify(t.dtype)}`);
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new Error(`writeSafetensors: tensor "${name}" has bad shape [${t.shape.join(', ')}]`);
    }
    const want = byteSizeOf(t.dtype, t.shape);
    if (t.data.length !== want) {
      throw new Error(`writeSafetensors: tensor "${name}" ${t.dtype} [${t.shape.join(', ')}] needs ${want} bytes, has ${t.data.length}`);
    }
  }
  const order = list.map((e, i) => ({ e, i })).sort((a, b) => DTYPE_SIZE[b.e[1].dtype] - DTYPE_SIZE[a.e[1].dtype] || a.i - b.i);
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new Error(`writeSafetensors: metadata "${k}" is not a string`);
    }
    header.__metadata__ = metadata;
  }
  let offset = 0;
  for (const { e: [name, t] } of order) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.length] };
    offset += t.data.length;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + padded + offset);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, padded % 2 ** 32, true);
  dv.setUint32(4, Math.floor(padded / 2 ** 32), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + padded);
  json = new Uint8Array(0);
  let pos = 8 + padded;
  for (const { e: [, t] } of order) {
    out.set(t.data, pos);
    pos += t.data.length;
  }
  return out;
}

// ---- dtype conversion ----

let f16Table: Float32Array | undefined;
function halfTable(): Float32Array {
  if (f16Table) return f16Table;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    t[h] = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
  }
  return (f16Table = t);
}

/** A typed-array view if the bytes are aligned, else an aligned copy. */
function view<T>(data: Uint8Array, size: number, Ctor: new (b: ArrayBufferLike, o: number, n: number) => T): T {
  const n = data.length / size;
  if (data.byteOffset % size === 0) return new Ctor(data.buffer, data.byteOffset, n);
  return new Ctor(data.slice().buffer, 0, n);
}

function checkLength(t: HostTensor, what: string): void {
  const want = byteSizeOf(t.dtype, t.shape);
  if (t.data.length !== want) throw new Error(`${what}: ${t.dtype} [${t.shape.join(', ')}] needs ${want} bytes, has ${t.data.length}`);
}

/** Values as float32 (a fresh array). Integers convert exactly up to 2^24, then round. */
export function toFloat32(t: HostTensor): Float32Array {
  checkLength(t, 'toFloat32');
  const n = numelOf(t.shape);
  const out = new Float32Array(n);
  switch (t.dtype) {
    case 'F32': out.set(view(t.data, 4, Float32Array)); break;
    case 'F64': out.set(view(t.data, 8, Float64Array)); break;
    case 'F16': {
      const tab = halfTable(), h = view(t.data, 2, Uint16Array);
      for (let i = 0; i < n; i++) out[i] = tab[h[i]];
      break;
    }
    case 'BF16': {
      const h = view(t.data, 2, Uint16Array), u = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) u[i] = h[i] << 16;
      break;
    }
    case 'I64': case 'U64': {
      const w = view(t.data, 4, Uint32Array);
      const signed = t.dtype === 'I64';
      for (let i = 0; i < n; i++) {
        const hi = signed ? w[2 * i + 1] | 0 : w[2 * i + 1];
        out[i] = hi * 4294967296 + w[2 * i];
      }
      break;
    }
    case 'I32': out.set(view(t.data, 4, Int32Array)); break;
    case 'U32': out.set(view(t.data, 4, Uint32Array)); break;
    case 'I16': out.set(view(t.data, 2, Int16Array)); break;
    case 'U16': out.set(view(t.data, 2, Uint16Array)); break;
    case 'I8': out.set(new Int8Array(t.data.buffer, t.data.byteOffset, n)); break;
    case 'U8': case 'BOOL': out.set(t.data); break;
  }
  return out;
}

/** Integer values as int32 (a fresh array); throws if a value does not fit. */
export function toInt32(t: HostTensor, name = 'tensor'): Int32Array {
  checkLength(t, `toInt32(${name})`);
  const n = numelOf(t.shape);
  const out = new Int32Array(n);
  switch (t.dtype) {
    case 'I64': case 'U64': {
      const w = view(t.data, 4, Uint32Array);
      for (let i = 0; i < n; i++) {
        const lo = w[2 * i], hi = w[2 * i + 1];
        const fits = t.dtype === 'I64' ? (hi === 0 && lo < 0x80000000) || (hi === 0xffffffff && lo >= 0x80000000) : hi === 0 && lo < 0x80000000;
        if (!fits) {
          const v = t.dtype === 'I64' ? (hi | 0) * 4294967296 + lo : hi * 4294967296 + lo;
          throw new Error(`toInt32(${name}): element ${i} = ${v} does not fit in int32`);
        }
        out[i] = lo | 0;
      }
      break;
    }
    case 'U32': {
      const w = view(t.data, 4, Uint32Array);
      for (let i = 0; i < n; i++) {
        if (w[i] >= 0x80000000) throw new Error(`toInt32(${name}): element ${i} = ${w[i]} does not fit in int32`);
        out[i] = w[i];
      }
      break;
    }
    case 'I32': out.set(view(t.data, 4, Int32Array)); break;
    case 'I16': out.set(view(t.data, 2, Int16Array)); break;
    case 'U16': out.set(view(t.data, 2, Uint16Array)); break;
    case 'I8': out.set(new Int8Array(t.data.buffer, t.data.byteOffset, n)); break;
    case 'U8': case 'BOOL': out.set(t.data); break;
    default: throw new Error(`toInt32(${name}): dtype ${t.dtype} is not an integer type`);
  }
  return out;
}

const f32buf = new Float32Array(1), u32buf = new Uint32Array(f32buf.buffer);

/** float32 → IEEE half, round to nearest even (overflow → ±Inf, NaN kept). */
export function f32ToF16Bits(x: number): number {
  f32buf[0] = x;
  const b = u32buf[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff, mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal: rounds to zero
    const m = mant | 0x800000, shift = 14 - e;
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1), half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++; // may carry into the exponent: correct
  return sign | h;
}

/** float32 → bfloat16, round to nearest even. */
export function f32ToBf16Bits(x: number): number {
  f32buf[0] = x;
  const b = u32buf[0];
  if ((b & 0x7f800000) === 0x7f800000 && b & 0x7fffff) return (b >>> 16) | 0x40;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

/** A HostTensor from float values, stored as F32, F16, BF16 or F64. */
export function fromFloat32(arr: ArrayLike<number>, shape: number[], dtype: 'F32' | 'F16' | 'BF16' | 'F64' = 'F32'): HostTensor {
  const n = numelOf(shape);
  if (arr.length !== n) throw new Error(`fromFloat32: ${arr.length} values for shape [${shape.join(', ')}] (${n} elements)`);
  let data: Uint8Array;
  if (dtype === 'F32') data = new Uint8Array(Float32Array.from(arr).buffer);
  else if (dtype === 'F64') data = new Uint8Array(Float64Array.from(arr).buffer);
  else {
    const h = new Uint16Array(n), conv = dtype === 'F16' ? f32ToF16Bits : f32ToBf16Bits;
    for (let i = 0; i < n; i++) h[i] = conv(arr[i]);
    data = new Uint8Array(h.buffer);
  }
  return { dtype, shape: shape.slice(), data };
}

/** A HostTensor from integers, stored as I64 or I32 (values must be safe integers). */
export function fromInts(arr: ArrayLike<number>, shape: number[], dtype: 'I64' | 'I32' = 'I64'): HostTensor {
  const n = numelOf(shape);
  if (arr.length !== n) throw new Error(`fromInts: ${arr.length} values for shape [${shape.join(', ')}] (${n} elements)`);
  for (let i = 0; i < n; i++) {
    const v = arr[i];
    if (!Number.isSafeInteger(v) || (dtype === 'I32' && (v < -0x80000000 || v > 0x7fffffff))) {
      throw new Error(`fromInts: element ${i} = ${v} is not a valid ${dtype}`);
    }
  }
  if (dtype === 'I32') return { dtype, shape: shape.slice(), data: new Uint8Array(Int32Array.from(arr).buffer) };
  const w = new Uint32Array(2 * n);
  for (let i = 0; i < n; i++) {
    const v = arr[i];
    w[2 * i] = v >>> 0;
    w[2 * i + 1] = Math.floor(v / 4294967296) >>> 0;
  }
  return { dtype, shape: shape.slice(), data: new Uint8Array(w.buffer) };
}
