// Reader for PyTorch's zip checkpoint format (torch.save since 1.6), as the MicarVLMoE authors
// save snapshots: torch.save({"model": state_dict, "whole_model": module}). The zip holds
// `<prefix>/data.pkl` (the pickled object), `<prefix>/data/<key>` (one raw little-endian file per
// storage), `<prefix>/version` and sometimes `<prefix>/byteorder`. Only the state_dict is
// turned into tensors; everything else (the pickled module and its classes) is parsed inertly by
// src/io/pickle.ts and dropped — nothing is executed or imported.

import { inflateSync } from 'fflate';
import { crc32, WeightsFileError } from './files.ts';
import { DTYPE_SIZE, type DType, type HostTensor, numelOf } from './safetensors.ts';
import { describe, PyGlobal, PyObject, type PyValue, unpickle } from './pickle.ts';

// ---------------- zip ----------------

export interface ZipEntry {
  name: string;
  method: number;
  flags: number;
  crc: number;
  compressedSize: number;
  size: number;
  /** Offset of the local file header. */
  headerOffset: number;
}

export interface ZipArchive {
  entries: Map<string, ZipEntry>;
  /** Names in central-directory order. */
  names: string[];
  /** The entry's bytes (a view into the file when stored), CRC-checked. */
  read(name: string): Uint8Array;
  /** File offset of the entry's data. */
  dataOffset(name: string): number;
}

export function readZip(bytes: Uint8Array, fileName = '<memory>', opts: { verifyCrc?: boolean } = {}): ZipArchive {
  const verifyCrc = opts.verifyCrc ?? true;
  const fail = (offset: number, detail: string, tensor?: string): never => {
    throw new WeightsFileError(fileName, offset, detail, tensor);
  };
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u16 = (o: number) => dv.getUint16(o, true);
  const u32 = (o: number) => dv.getUint32(o, true);
  const u64 = (o: number): number => {
    const v = u32(o + 4) * 2 ** 32 + u32(o);
    if (!Number.isSafeInteger(v)) fail(o, `zip: 64-bit field ${v} too large`);
    return v;
  };
  if (bytes.length < 22) fail(0, `not a zip archive: only ${bytes.length} bytes (truncated?)`);
  // End of central directory: the last "PK\x05\x06" within comment range of the end.
  let eocd = -1;
  for (let o = bytes.length - 22; o >= Math.max(0, bytes.length - 22 - 65535); o--) {
    if (u32(o) === 0x06054b50 && o + 22 + u16(o + 20) === bytes.length) {
      eocd = o;
      break;
    }
  }
  if (eocd < 0) {
    if (bytes[0] === 0x80 && bytes[1] === 0x02) {
      fail(0, 'legacy (pre-1.6, non-zip) torch.save format is not supported; re-save it with a current PyTorch');
    }
    fail(Math.max(0, bytes.length - 22), 'zip: end-of-central-directory record not found (not a zip archive, or truncated)');
  }
  let count = u16(eocd + 10);
  let cdSize = u32(eocd + 12);
  let cdOffset = u32(eocd + 16);
  const loc = eocd - 20;
  if (loc >= 0 && u32(loc) === 0x07064b50) {
    const z64 = u64(loc + 8);
    if (z64 + 56 > bytes.length || u32(z64) !== 0x06064b50) fail(loc, `zip: ZIP64 locator points to ${z64}, where there is no ZIP64 end record`);
    count = u64(z64 + 32);
    cdSize = u64(z64 + 40);
    cdOffset = u64(z64 + 48);
  }
  if (cdOffset + cdSize > bytes.length) fail(eocd, `zip: central directory [${cdOffset}, ${cdOffset + cdSize}) lies outside the ${bytes.length}-byte file (truncated?)`);

  const entries = new Map<string, ZipEntry>();
  const names: string[] = [];
  let p = cdOffset;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cdOffset + cdSize || u32(p) !== 0x02014b50) fail(p, `zip: central directory entry ${i} of ${count} is malformed`);
    const flags = u16(p + 8), method = u16(p + 10), crc = u32(p + 16);
    let compressedSize = u32(p + 20), size = u32(p + 24);
    const nameLen = u16(p + 28), extraLen = u16(p + 30), commentLen = u16(p + 32);
    let headerOffset = u32(p + 42);
    if (p + 46 + nameLen + extraLen + commentLen > cdOffset + cdSize) fail(p, `zip: central directory entry ${i} runs past the directory`);
    const name = new TextDecoder().decode(bytes.subarray(p + 46, p + 46 + nameLen));
    // ZIP64 extended information: the 0xFFFFFFFF fields, in order size, compressed, offset.
    for (let e = p + 46 + nameLen; e + 4 <= p + 46 + nameLen + extraLen;) {
      const id = u16(e), len = u16(e + 2);
      if (id === 0x0001) {
        let q = e + 4;
        if (size === 0xffffffff) (size = u64(q)), (q += 8);
        if (compressedSize === 0xffffffff) (compressedSize = u64(q)), (q += 8);
        if (headerOffset === 0xffffffff) headerOffset = u64(q);
      }
      e += 4 + len;
    }
    if (entries.has(name)) fail(p, `zip: duplicate entry "${name}"`);
    entries.set(name, { name, method, flags, crc, compressedSize, size, headerOffset });
    names.push(name);
    p += 46 + nameLen + extraLen + commentLen;
  }

  const dataOffset = (name: string): number => {
    const e = entries.get(name);
    if (!e) return fail(cdOffset, `zip: no entry "${name}"`);
    const h = e.headerOffset;
    if (h + 30 > bytes.length || u32(h) !== 0x04034b50) fail(h, `zip: local header of "${name}" is missing or corrupt`);
    return h + 30 + u16(h + 26) + u16(h + 28);
  };
  const read = (name: string): Uint8Array => {
    const e = entries.get(name)!;
    const start = dataOffset(name);
    if (start + e.compressedSize > bytes.length) {
      fail(start, `zip: data of "${name}" (${e.compressedSize} bytes) runs past the end of the ${bytes.length}-byte file (truncated?)`);
    }
    const raw = bytes.subarray(start, start + e.compressedSize);
    let out: Uint8Array;
    if (e.method === 0) {
      if (e.compressedSize !== e.size) fail(start, `zip: stored entry "${name}" has sizes ${e.compressedSize} / ${e.size}`);
      out = raw;
    } else if (e.method === 8) {
      try {
        out = inflateSync(raw, { out: new Uint8Array(e.size) });
      } catch (err) {
        return fail(start, `zip: cannot inflate "${name}": ${(err as Error).message}`);
      }
      if (out.length !== e.size) fail(start, `zip: "${name}" inflated to ${out.length} bytes, expected ${e.size}`);
    } else {
      return fail(e.headerOffset, `zip: "${name}" uses unsupported compression method ${e.method}`);
    }
    if (verifyCrc && crc32(out) !== e.crc) fail(start, `zip: CRC-32 mismatch in "${name}" (file corrupt)`);
    return out;
  };
  return { entries, names, read, dataOffset };
}

// ---------------- torch ----------------

const STORAGE_DTYPES: Record<string, DType> = {
  FloatStorage: 'F32', DoubleStorage: 'F64', HalfStorage: 'F16', BFloat16Storage: 'BF16',
  LongStorage: 'I64', IntStorage: 'I32', ShortStorage: 'I16', CharStorage: 'I8', ByteStorage: 'U8',
  BoolStorage: 'BOOL', UntypedStorage: 'U8',
};

/** A `torch.*Storage` named by a persistent id; its bytes are the archive entry `data/<key>`. */
export class StorageRef {
  constructor(readonly key: string, readonly dtype: DType, readonly numel: number, readonly location: string, readonly pickleOffset: number) {}
}

/** `_rebuild_tensor_v2(storage, storage_offset, size, stride, …)`: a view, materialised on demand. */
export class TensorRef {
  pyState?: PyValue;
  constructor(readonly storage: StorageRef, readonly offset: number, readonly size: number[], readonly stride: number[], readonly pickleOffset: number) {}
}

export interface PthFile {
  /** The state_dict: the top-level `"model"` (or `"state_dict"`) entry, or the top-level dict itself. */
  stateDict: Map<string, HostTensor>;
  /** The other top-level keys (e.g. `"whole_model"`), parsed inertly and dropped. */
  otherKeys: string[];
  /** State-dict entries that are not tensors (e.g. `_extra_state`), skipped. */
  nonTensorKeys: string[];
}

function isIntList(v: PyValue): v is number[] {
  return Array.isArray(v) && v.every((d) => Number.isSafeInteger(d) && (d as number) >= 0);
}

/** Reads a torch.save zip checkpoint and returns its state_dict as host tensors (contiguous). */
export function readPth(bytes: Uint8Array, fileName = '<memory>'): PthFile {
  const zip = readZip(bytes, fileName);
  const pklName = zip.names.find((n) => n === 'data.pkl' || n.endsWith('/data.pkl'));
  if (!pklName) throw new WeightsFileError(fileName, 0, `zip has no data.pkl record (entries: ${zip.names.slice(0, 5).join(', ')}${zip.names.length > 5 ? ', …' : ''}); not a torch.save checkpoint`);
  const prefix = pklName.slice(0, pklName.length - 'data.pkl'.length);
  const byteorderName = `${prefix}byteorder`;
  if (zip.entries.has(byteorderName)) {
    const order = new TextDecoder().decode(zip.read(byteorderName)).trim();
    if (order !== 'little') throw new WeightsFileError(fileName, zip.dataOffset(byteorderName), `byteorder is "${order}"; only little-endian checkpoints are supported`);
  }
  const pklEntry = zip.entries.get(pklName)!;
  const pkl = zip.read(pklName);
  const stored = pklEntry.method === 0;
  // Offsets inside a stored pickle are file offsets; inside a deflated one, name the record.
  const pickleFile = stored ? fileName : `${fileName}:${pklName}`;
  const pickleBase = stored ? zip.dataOffset(pklName) : 0;
  const pfail = (offset: number, detail: string, tensor?: string): never => {
    throw new WeightsFileError(pickleFile, offset, detail, tensor);
  };

  const storages = new Map<string, StorageRef>();
  const persistentLoad = (pid: PyValue, offset: number): PyValue => {
    if (!Array.isArray(pid) || pid.length < 5 || pid[0] !== 'storage') {
      return pfail(offset, `unsupported persistent id ${describe(pid)} (expected ('storage', type, key, location, numel))`);
    }
    const [, type, key, location, numel] = pid as PyValue[];
    if (!(type instanceof PyGlobal) || !type.module.startsWith('torch')) return pfail(offset, `persistent id storage type is a ${describe(type)}`);
    const dtype = STORAGE_DTYPES[type.name];
    if (!dtype) return pfail(offset, `unsupported storage type ${type.qualified}`);
    if (typeof key !== 'string' || !Number.isSafeInteger(numel) || (numel as number) < 0) return pfail(offset, `bad persistent id for storage "${String(key)}"`);
    let s = storages.get(key);
    if (!s) storages.set(key, (s = new StorageRef(key, dtype, numel as number, String(location), offset)));
    return s;
  };
  const reduce = (fn: PyValue, args: PyValue[], offset: number): PyValue | undefined => {
    if (!(fn instanceof PyGlobal)) return undefined;
    switch (fn.qualified) {
      case 'collections.OrderedDict': {
        const m = new Map<PyValue, PyValue>();
        if (args.length > 0 && Array.isArray(args[0])) {
          for (const kv of args[0] as PyValue[]) if (Array.isArray(kv) && kv.length === 2) m.set(kv[0], kv[1]);
        }
        return m;
      }
      case 'torch._utils._rebuild_tensor':
      case 'torch._utils._rebuild_tensor_v2': {
        const [storage, off, size, stride] = args;
        if (!(storage instanceof StorageRef)) return pfail(offset, `${fn.name}: first argument is a ${describe(storage)}, not a storage`);
        if (!Number.isSafeInteger(off) || (off as number) < 0 || !isIntList(size) || !isIntList(stride) || size.length !== stride.length) {
          return pfail(offset, `${fn.name}: bad offset/size/stride for storage "${storage.key}"`);
        }
        return new TensorRef(storage, off as number, [...size], [...stride], offset);
      }
      case 'torch._utils._rebuild_parameter':
      case 'torch._utils._rebuild_parameter_with_state':
        return args[0] instanceof TensorRef ? args[0] : undefined;
      case 'torch._tensor._rebuild_from_type_v2':
      case 'torch._tensor._rebuild_from_type': {
        // (func, new_type, args, state): a Tensor subclass around an ordinary rebuild.
        const inner = args[2];
        return Array.isArray(inner) ? reduce(args[0], inner as PyValue[], offset) : undefined;
      }
      default:
        return undefined; // inert placeholder (architecture.*, torch.nn.*, os.system, …)
    }
  };

  const top = unpickle(pkl, { fileName: pickleFile, baseOffset: pickleBase, persistentLoad, reduce });

  let sd: Map<PyValue, PyValue> | undefined;
  const otherKeys: string[] = [];
  if (top instanceof Map) {
    const pick = top.has('model') ? 'model' : top.has('state_dict') ? 'state_dict' : undefined;
    if (pick !== undefined) {
      const v = top.get(pick);
      if (!(v instanceof Map)) {
        return pfail(pickleBase, `top-level "${pick}" is a ${describe(v)}, not a state_dict` +
          (v instanceof PyObject ? ' (a pickled module; save module.state_dict() instead)' : ''));
      }
      sd = v;
      for (const k of top.keys()) if (k !== pick) otherKeys.push(String(k));
    } else if ([...top.values()].some((v) => v instanceof TensorRef)) {
      sd = top;
    }
  }
  if (!sd) {
    const keys = top instanceof Map ? [...top.keys()].map(String).join(', ') : describe(top);
    return pfail(pickleBase, `no state_dict found: top-level object is ${top instanceof Map ? `a dict with keys [${keys}] and no "model"/"state_dict" entry` : `a ${keys}`}`);
  }

  const stateDict = new Map<string, HostTensor>();
  const nonTensorKeys: string[] = [];
  const storageBytes = new Map<string, Uint8Array>();
  for (const [k, v] of sd) {
    if (typeof k !== 'string') return pfail(pickleBase, `state_dict key ${describe(k)} is not a string`);
    if (!(v instanceof TensorRef)) {
      nonTensorKeys.push(k);
      continue;
    }
    const s = v.storage;
    let raw = storageBytes.get(s.key);
    if (!raw) {
      const rec = `${prefix}data/${s.key}`;
      if (!zip.entries.has(rec)) throw new WeightsFileError(fileName, v.pickleOffset, `storage record "${rec}" is missing from the archive`, k);
      raw = zip.read(rec);
      const esz = DTYPE_SIZE[s.dtype];
      if (raw.length < s.numel * esz) {
        throw new WeightsFileError(fileName, zip.dataOffset(rec), `storage "${s.key}" has ${raw.length} bytes, its ${s.numel} ${s.dtype} elements need ${s.numel * esz}`, k);
      }
      storageBytes.set(s.key, raw);
    }
    stateDict.set(k, materialize(v, raw, fileName, k));
  }
  return { stateDict, otherKeys, nonTensorKeys };
}

/** Copies a (possibly strided) view of a storage into a contiguous HostTensor. */
function materialize(t: TensorRef, storage: Uint8Array, fileName: string, name: string): HostTensor {
  const esz = DTYPE_SIZE[t.storage.dtype];
  const numel = numelOf(t.size);
  const storageNumel = Math.floor(storage.length / esz);
  let maxIndex = t.offset;
  for (let d = 0; d < t.size.length; d++) maxIndex += (t.size[d] - 1) * t.stride[d];
  if (numel > 0 && maxIndex >= storageNumel) {
    throw new WeightsFileError(fileName, t.pickleOffset,
      `view (offset ${t.offset}, size [${t.size.join(', ')}], stride [${t.stride.join(', ')}]) reaches element ${maxIndex} of a ${storageNumel}-element storage "${t.storage.key}"`, name);
  }
  let contiguous = true;
  for (let d = t.size.length - 1, expect = 1; d >= 0; d--) {
    if (t.size[d] !== 1 && t.stride[d] !== expect) contiguous = false;
    expect *= t.size[d];
  }
  if (contiguous) {
    return { dtype: t.storage.dtype, shape: t.size.slice(), data: storage.subarray(t.offset * esz, (t.offset + numel) * esz) };
  }
  const out = new Uint8Array(numel * esz);
  const rank = t.size.length;
  const idx = new Array<number>(rank).fill(0);
  let src = t.offset;
  for (let i = 0; i < numel; i++) {
    out.set(storage.subarray(src * esz, src * esz + esz), i * esz);
    for (let d = rank - 1; d >= 0; d--) {
      idx[d]++;
      src += t.stride[d];
      if (idx[d] < t.size[d]) break;
      src -= t.stride[d] * t.size[d];
      idx[d] = 0;
    }
  }
  return { dtype: t.storage.dtype, shape: t.size.slice(), data: out };
}
