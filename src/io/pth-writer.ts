// Writes the torch.save zip format that src/io/pth.ts reads (and torch.load accepts):
// `<prefix>/data.pkl` as pickle protocol 2, `<prefix>/data/<key>` per storage, `<prefix>/version`,
// stored (uncompressed) with data aligned to 64 bytes like PyTorch's writer. Used by tests to
// make checkpoints from golden weights, optionally with an inert "whole_model" entry full of
// class references (as the authors' snapshots have) that a reader must skip.

import { crc32 } from './files.ts';
import { DTYPE_SIZE, type DType, type HostTensor, numelOf } from './safetensors.ts';

/** A tensor given as a view of a (possibly shared) storage, to write strided/offset layouts. */
export interface StridedTensor {
  dtype: DType;
  shape: number[];
  /** Storage key; views with the same key share one storage record. */
  storageKey: string;
  /** The whole storage's bytes. */
  storage: Uint8Array;
  /** In elements. */
  offset: number;
  /** In elements. */
  stride: number[];
}

export interface WritePthOptions {
  /** Archive folder name (torch uses the file's base name). Default "archive". */
  prefix?: string;
  /** Add a "whole_model" entry: a pickled module tree of inert class objects (architecture.*,
   *  torch.nn.*, a REDUCE of os.system, parameters sharing the state_dict's storages). */
  extra?: 'whole_model';
  /** Write the state_dict as the top-level object instead of under "model". */
  bare?: boolean;
}

const STORAGE_NAMES: Record<DType, string | undefined> = {
  F32: 'FloatStorage', F64: 'DoubleStorage', F16: 'HalfStorage', BF16: 'BFloat16Storage', I64: 'LongStorage',
  I32: 'IntStorage', I16: 'ShortStorage', I8: 'CharStorage', U8: 'ByteStorage', BOOL: 'BoolStorage',
  U16: undefined, U32: undefined, U64: undefined,
};

/** Pickle protocol 2 emitter with a memo for repeated globals and strings. */
class PickleWriter {
  private chunks: number[] = [];
  private globals = new Map<string, number>();
  private memoCount = 0;
  private enc = new TextEncoder();
  op(...b: number[]): this {
    for (const x of b) this.chunks.push(x);
    return this;
  }
  private u32(v: number): void {
    this.op(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff);
  }
  /** Memoises the stack top under the next index (BINPUT / LONG_BINPUT). */
  put(): number {
    const i = this.memoCount++;
    if (i < 256) this.op(0x71, i);
    else {
      this.op(0x72);
      this.u32(i);
    }
    return i;
  }
  get(i: number): this {
    if (i < 256) return this.op(0x68, i); // BINGET
    this.op(0x6a); // LONG_BINGET
    this.u32(i);
    return this;
  }
  str(s: string): this {
    const b = this.enc.encode(s);
    this.op(0x58); // BINUNICODE
    this.u32(b.length);
    for (const x of b) this.chunks.push(x);
    return this;
  }
  int(v: number): this {
    if (!Number.isSafeInteger(v)) throw new Error(`writePth: integer ${v} is not a safe integer`);
    if (v >= 0 && v < 256) return this.op(0x4b, v); // BININT1
    if (v >= 0 && v < 65536) return this.op(0x4d, v & 0xff, v >> 8); // BININT2
    if (v >= -0x80000000 && v <= 0x7fffffff) {
      this.op(0x4a); // BININT
      this.u32(v >>> 0);
      return this;
    }
    // LONG1: little-endian two's complement
    const bytes: number[] = [];
    let x = BigInt(v);
    do {
      bytes.push(Number(x & 0xffn));
      x >>= 8n;
    } while (!((x === 0n && !(bytes[bytes.length - 1] & 0x80)) || (x === -1n && bytes[bytes.length - 1] & 0x80)));
    return this.op(0x8a, bytes.length, ...bytes);
  }
  float(v: number): this {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, v, false);
    return this.op(0x47, ...b); // BINFLOAT
  }
  bool(v: boolean): this {
    return this.op(v ? 0x88 : 0x89);
  }
  none(): this {
    return this.op(0x4e);
  }
  /** GLOBAL, memoised: the second use is a BINGET as in torch's pickles. */
  global(module: string, name: string): this {
    const key = `${module}\n${name}`;
    const m = this.globals.get(key);
    if (m !== undefined) return this.get(m);
    this.op(0x63, ...this.enc.encode(`${module}\n${name}\n`));
    this.globals.set(key, this.put());
    return this;
  }
  tuple(items: (() => void)[]): this {
    if (items.length === 0) return this.op(0x29);
    if (items.length <= 3) {
      items.forEach((f) => f());
      return this.op(0x84 + items.length); // TUPLE1..3
    }
    this.op(0x28);
    items.forEach((f) => f());
    return this.op(0x74);
  }
  /** `collections.OrderedDict()` then SETITEMS of the pairs. */
  orderedDict(pairs: [string, () => void][]): this {
    this.global('collections', 'OrderedDict').op(0x29, 0x52); // EMPTY_TUPLE REDUCE
    if (pairs.length) {
      this.op(0x28);
      for (const [k, f] of pairs) {
        this.str(k);
        f();
      }
      this.op(0x75); // SETITEMS
    }
    return this;
  }
  dict(pairs: [string, () => void][]): this {
    this.op(0x7d); // EMPTY_DICT
    if (pairs.length) {
      this.op(0x28);
      for (const [k, f] of pairs) {
        this.str(k);
        f();
      }
      this.op(0x75);
    }
    return this;
  }
  bytes(): Uint8Array {
    return Uint8Array.from(this.chunks);
  }
}

interface View {
  name: string;
  key: string;
  dtype: DType;
  shape: number[];
  offset: number;
  stride: number[];
}

function isStrided(t: HostTensor | StridedTensor): t is StridedTensor {
  return (t as StridedTensor).storage !== undefined;
}

function contiguousStride(shape: number[]): number[] {
  const s = new Array<number>(shape.length);
  for (let d = shape.length - 1, acc = 1; d >= 0; d--) {
    s[d] = acc;
    acc *= shape[d];
  }
  return s;
}

/** Builds a torch.save checkpoint: `{"model": state_dict[, "whole_model": <inert module>]}`. */
export function writePth(stateDict: Map<string, HostTensor | StridedTensor>, opts: WritePthOptions = {}): Uint8Array<ArrayBuffer> {
  const prefix = opts.prefix ?? 'archive';
  // Assign storage keys: contiguous HostTensors get fresh numeric keys, views keep theirs.
  const storages = new Map<string, { dtype: DType; bytes: Uint8Array }>();
  const views: View[] = [];
  let next = 0;
  for (const [name, t] of stateDict) {
    if (!STORAGE_NAMES[t.dtype]) throw new Error(`writePth: tensor "${name}" has dtype ${t.dtype}, which torch storages cannot hold`);
    if (isStrided(t)) {
      const have = storages.get(t.storageKey);
      if (have && (have.bytes !== t.storage || have.dtype !== t.dtype)) throw new Error(`writePth: storage "${t.storageKey}" given twice with different bytes or dtype`);
      storages.set(t.storageKey, { dtype: t.dtype, bytes: t.storage });
      views.push({ name, key: t.storageKey, dtype: t.dtype, shape: t.shape, offset: t.offset, stride: t.stride });
    } else {
      const want = numelOf(t.shape) * DTYPE_SIZE[t.dtype];
      if (t.data.length !== want) throw new Error(`writePth: tensor "${name}" ${t.dtype} [${t.shape.join(', ')}] needs ${want} bytes, has ${t.data.length}`);
      while (storages.has(String(next))) next++;
      const key = String(next++);
      storages.set(key, { dtype: t.dtype, bytes: t.data });
      views.push({ name, key, dtype: t.dtype, shape: t.shape, offset: 0, stride: contiguousStride(t.shape) });
    }
  }

  const w = new PickleWriter();
  const storageMemo = new Map<string, number>();
  const tensorPickle = (v: View) => () => {
    w.global('torch._utils', '_rebuild_tensor_v2');
    w.op(0x28); // MARK (args)
    const m = storageMemo.get(v.key);
    if (m !== undefined) w.get(m);
    else {
      const s = storages.get(v.key)!;
      w.tuple([
        () => w.str('storage'),
        () => w.global('torch', STORAGE_NAMES[s.dtype]!),
        () => w.str(v.key),
        () => w.str('cpu'),
        () => w.int(s.bytes.length / DTYPE_SIZE[s.dtype]),
      ]);
      w.op(0x51); // BINPERSID
      storageMemo.set(v.key, w.put());
    }
    w.int(v.offset);
    w.tuple(v.shape.map((d) => () => w.int(d)));
    w.tuple(v.stride.map((d) => () => w.int(d)));
    w.bool(false);
    w.orderedDict([]);
    w.op(0x74, 0x52); // TUPLE REDUCE
  };
  const stateDictPickle = () => w.orderedDict(views.map((v) => [v.name, tensorPickle(v)]));

  w.op(0x80, 2); // PROTO 2
  if (opts.bare) stateDictPickle();
  else {
    const entries: [string, () => void][] = [['model', stateDictPickle]];
    if (opts.extra === 'whole_model') entries.push(['whole_model', () => wholeModelJunk(w, views, tensorPickle)]);
    w.dict(entries);
  }
  w.op(0x2e); // STOP
  return zipStored(recordsOf(prefix, w.bytes(), storages));
}

function recordsOf(prefix: string, pkl: Uint8Array, storages: Map<string, { bytes: Uint8Array }>): [string, Uint8Array][] {
  const records: [string, Uint8Array][] = [[`${prefix}/data.pkl`, pkl]];
  for (const [key, s] of storages) records.push([`${prefix}/data/${key}`, s.bytes]);
  records.push([`${prefix}/version`, new TextEncoder().encode('3\n')]);
  return records;
}

/** An inert module tree like the authors' `whole_model`: class instances from architecture.* and
 *  torch.nn.*, a set, floats, a parameter sharing the first tensor's storage, and a REDUCE of
 *  os.system that a safe reader must only record. */
function wholeModelJunk(w: PickleWriter, views: View[], tensorPickle: (v: View) => () => void): void {
  const moduleDict = (extra: [string, () => void][]) =>
    w.dict([
      ['training', () => w.bool(false)],
      ['_parameters', () => w.orderedDict([])],
      ['_buffers', () => w.orderedDict([])],
      ['_non_persistent_buffers_set', () => {
        w.global('__builtin__', 'set');
        w.tuple([() => w.op(0x5d)]); // (EMPTY_LIST,)
        w.op(0x52);
      }],
      ['_forward_hooks', () => w.orderedDict([])],
      ...extra,
    ]);
  const linear = () => {
    w.global('torch.nn.modules.linear', 'Linear').op(0x29, 0x81); // EMPTY_TUPLE NEWOBJ
    moduleDict([
      ['in_features', () => w.int(64)],
      ['out_features', () => w.int(40)],
      ['_parameters', () =>
        w.orderedDict(views.length ? [['weight', () => {
          // Parameter(tensor): _rebuild_parameter(tensor, requires_grad, hooks)
          w.global('torch._utils', '_rebuild_parameter');
          w.tuple([tensorPickle(views[0]), () => w.bool(true), () => w.orderedDict([])]);
          w.op(0x52);
        }]] : [])],
    ]);
    w.op(0x62); // BUILD
  };
  w.global('architecture.models', 'CaptionModel').op(0x29, 0x81);
  moduleDict([
    ['_modules', () =>
      w.orderedDict([
        ['vis_enc', () => {
          w.global('architecture.blocks', 'MultiScaleVisionEncoder').op(0x29, 0x81);
          moduleDict([['_modules', () => w.orderedDict([['relu', () => {
            w.global('torch.nn.modules.activation', 'ReLU').op(0x29, 0x81);
            moduleDict([['inplace', () => w.bool(true)]]);
            w.op(0x62);
          }]])]]);
          w.op(0x62);
        }],
        ['gen_logits', () => {
          w.global('torch.nn.modules.container', 'Sequential').op(0x29, 0x81);
          moduleDict([['_modules', () => w.orderedDict([['1', linear]])]]);
          w.op(0x62);
        }],
      ])],
    ['dropout', () => w.float(0.1)],
    ['payload', () => {
      w.global('posix', 'system');
      w.tuple([() => w.str('echo this must never run')]);
      w.op(0x52);
    }],
  ]);
  w.op(0x62); // BUILD
}

/** A zip of stored entries with data aligned to 64 bytes (padding in the local extra field, id
 *  0x4246 "FB", as PyTorch does). Zip32 only: the whole archive must stay under 4 GiB. */
function zipStored(records: [string, Uint8Array][]): Uint8Array<ArrayBuffer> {
  const enc = new TextEncoder();
  const parts: { name: Uint8Array; data: Uint8Array; crc: number; offset: number; pad: number }[] = [];
  let offset = 0;
  for (const [n, data] of records) {
    const name = enc.encode(n);
    const base = offset + 30 + name.length + 4; // header, name, extra field header
    const pad = (64 - (base % 64)) % 64;
    parts.push({ name, data, crc: crc32(data), offset, pad });
    offset = base + pad + data.length;
  }
  const cdStart = offset;
  let cdSize = 0;
  for (const p of parts) cdSize += 46 + p.name.length;
  const total = cdStart + cdSize + 22;
  if (total >= 0xffffffff || parts.length >= 0xffff) throw new Error(`writePth: ${total} bytes / ${parts.length} records exceed the zip32 writer's limits`);
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  for (const p of parts) {
    let o = p.offset;
    dv.setUint32(o, 0x04034b50, true);
    dv.setUint16(o + 4, 20, true); // version needed
    dv.setUint16(o + 6, 0, true); // flags
    dv.setUint16(o + 8, 0, true); // stored
    dv.setUint32(o + 14, p.crc, true);
    dv.setUint32(o + 18, p.data.length, true);
    dv.setUint32(o + 22, p.data.length, true);
    dv.setUint16(o + 26, p.name.length, true);
    dv.setUint16(o + 28, 4 + p.pad, true);
    out.set(p.name, o + 30);
    o += 30 + p.name.length;
    dv.setUint16(o, 0x4246, true);
    dv.setUint16(o + 2, p.pad, true);
    out.fill(0x5a, o + 4, o + 4 + p.pad); // 'Z' padding, like torch
    out.set(p.data, o + 4 + p.pad);
  }
  let o = cdStart;
  for (const p of parts) {
    dv.setUint32(o, 0x02014b50, true);
    dv.setUint16(o + 4, 20, true);
    dv.setUint16(o + 6, 20, true);
    dv.setUint32(o + 16, p.crc, true);
    dv.setUint32(o + 20, p.data.length, true);
    dv.setUint32(o + 24, p.data.length, true);
    dv.setUint16(o + 28, p.name.length, true);
    dv.setUint32(o + 42, p.offset, true);
    out.set(p.name, o + 46);
    o += 46 + p.name.length;
  }
  dv.setUint32(o, 0x06054b50, true);
  dv.setUint16(o + 8, parts.length, true);
  dv.setUint16(o + 10, parts.length, true);
  dv.setUint32(o + 12, cdSize, true);
  dv.setUint32(o + 16, cdStart, true);
  return out;
}
