// Cross-runtime file helpers for weights files, and the error type every weights reader throws.
// Deno reads/writes paths; in a browser the caller passes File / Blob / ArrayBuffer bytes directly.

/** A malformed or unsupported weights file. The message names the file, the byte offset and,
 *  where one is involved, the tensor. */
export class WeightsFileError extends Error {
  constructor(
    readonly file: string,
    readonly offset: number | undefined,
    readonly detail: string,
    readonly tensor?: string,
  ) {
    super(`${file}: ${tensor !== undefined ? `tensor "${tensor}": ` : ''}${detail} (${offset !== undefined ? `byte offset ${offset}` : 'offset unknown'})`);
    this.name = 'WeightsFileError';
  }
}

interface DenoFile {
  write(p: Uint8Array): Promise<number>;
  syncData?(): Promise<void>;
  close(): void;
}
interface DenoLike {
  readFile(path: string): Promise<Uint8Array>;
  open(path: string, opts: { write: boolean; create: boolean; truncate: boolean }): Promise<DenoFile>;
  rename(from: string, to: string): Promise<void>;
  remove(path: string): Promise<void>;
}
function denoApi(): DenoLike | undefined {
  return (globalThis as { Deno?: DenoLike }).Deno;
}

/** The bytes of a file (Deno), or of a browser File / Blob / ArrayBuffer / Uint8Array passed in. */
export async function readFileBytes(source: string | Blob | ArrayBuffer | Uint8Array): Promise<Uint8Array> {
  if (source instanceof Uint8Array) return source;
  if (source instanceof ArrayBuffer) return new Uint8Array(source);
  if (typeof source !== 'string') return new Uint8Array(await source.arrayBuffer());
  const deno = denoApi();
  if (!deno) throw new Error(`readFileBytes("${source}"): no file system in this runtime; pass the File / ArrayBuffer instead`);
  return deno.readFile(source);
}

/** A display name for error messages: the path, or a browser File's name. */
export function sourceName(source: string | Blob | ArrayBuffer | Uint8Array): string {
  if (typeof source === 'string') return source;
  const name = (source as { name?: unknown }).name;
  return typeof name === 'string' ? name : '<memory>';
}

/** Fault injection for tests: called after the first chunk of a write reached the temporary
 *  file; throwing from it acts as a failed write (disk full, I/O error) at that point. */
export const writeFaults: { afterFirstChunk?: (path: string) => void } = {};

/** Writes `bytes` to `path.tmp-<random>`, syncs it where the runtime can, then renames it over
 *  `path`, so a crash never leaves a half-written weights file under the real name. */
export async function writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
  const deno = denoApi();
  if (!deno) throw new Error(`writeFileAtomic("${path}"): no file system in this runtime`);
  const tmp = `${path}.tmp-${Math.random().toString(36).slice(2, 10)}`;
  const file = await deno.open(tmp, { write: true, create: true, truncate: true });
  try {
    try {
      let done = 0;
      while (done < bytes.length) {
        const first = done === 0;
        done += await file.write(bytes.subarray(done));
        if (first) writeFaults.afterFirstChunk?.(path);
      }
      if (file.syncData) await file.syncData();
    } finally {
      file.close();
    }
    await deno.rename(tmp, path);
  } catch (e) {
    await deno.remove(tmp).catch(() => {});
    throw e;
  }
}

let crcTable: Int32Array | undefined;
/** CRC-32 (IEEE, as zip uses). */
export function crc32(data: Uint8Array, crc = 0): number {
  if (!crcTable) {
    crcTable = new Int32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c;
    }
  }
  const t = crcTable;
  let c = ~crc;
  for (let i = 0; i < data.length; i++) c = t[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}
