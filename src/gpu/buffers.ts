// Storage buffers pooled by size class so that a training step reuses memory instead
// of allocating: sizes round up to 1/4-octave classes (≤ 19% waste).
import { scopedOom } from './errors.ts';

const USAGE = GPUBufferUsageFlags();
function GPUBufferUsageFlags(): number {
  // GPUBufferUsage is a global in browsers and Deno; constants inlined for other hosts.
  const u = (globalThis as unknown as { GPUBufferUsage?: Record<string, number> }).GPUBufferUsage;
  const STORAGE = u?.STORAGE ?? 0x80, COPY_SRC = u?.COPY_SRC ?? 0x04, COPY_DST = u?.COPY_DST ?? 0x08, UNIFORM = u?.UNIFORM ?? 0x40;
  // UNIFORM: matmul's window kernel reads 64 KiB windows of a weight matrix as uniform buffers
  // (uniform loads are broadcast once per workgroup on CPU adapters; storage loads are per lane).
  return STORAGE | COPY_SRC | COPY_DST | UNIFORM;
}

export function sizeClass(bytes: number): number {
  const b = Math.max(256, Math.ceil(bytes / 256) * 256);
  if (b <= 4096) return b;
  const e = Math.floor(Math.log2(b));
  const step = 2 ** (e - 2);
  return Math.ceil(b / step) * step;
}

export class BufferPool {
  /**
   * Free buffers by size class, each list in descending creation order: acquire hands out the
   * oldest free buffer of its class. A step that allocates in the same order as the last one
   * then gets the same buffers in the same places, so its bind groups are found again
   * (src/gpu/bindgroups.ts); handing out the most recently released one instead permuted them
   * from step to step (a tiny-config training step found 2–16% of its groups).
   */
  private free = new Map<number, GPUBuffer[]>();
  private order = new WeakMap<GPUBuffer, number>();
  private created = 0;
  /** Bytes held by buffers currently handed out. */
  liveBytes = 0;
  /** Highest `liveBytes` seen since the last `resetPeak`. */
  peakBytes = 0;
  /** Bytes of all buffers this pool created (live or free). */
  totalBytes = 0;

  constructor(private device: GPUDevice) {}

  /**
   * A buffer of `bytes`' size class: the oldest free one not in `avoid` (buffers the caller means
   * to take by name later: see Runtime.slotBuffers), else the oldest free one (a preference never
   * costs memory), else a new one.
   */
  acquire(bytes: number, label = '', avoid?: ReadonlySet<GPUBuffer>): GPUBuffer {
    // The size class may round past the limit: the limit itself is then the class.
    const size = Math.min(sizeClass(bytes), this.checkLimit(bytes, label));
    const list = this.free.get(size);
    let buf: GPUBuffer | undefined;
    if (list?.length) {
      let i = list.length - 1;
      if (avoid?.size) while (i >= 0 && avoid.has(list[i])) i--;
      buf = list.splice(i >= 0 ? i : list.length - 1, 1)[0];
    }
    buf ??= this.create(size, label);
    this.addLive(size);
    return buf;
  }

  /**
   * A buffer of `bytes` rounded up to 256 only, for a tensor that lives as long as the model
   * (weights, optimiser state): a size class's rounding (up to 19%) would be held for the whole
   * run. Released, it is destroyed unless its size is a class of its own.
   */
  acquireResident(bytes: number, label = ''): GPUBuffer {
    const size = Math.min(Math.max(256, Math.ceil(bytes / 256) * 256), this.checkLimit(bytes, label));
    const buf = this.create(size, label);
    this.addLive(size);
    return buf;
  }

  /** The largest buffer size the adapter allows (a multiple of 4); throws, naming `label`, past it. */
  private checkLimit(bytes: number, label: string): number {
    const limit = this.device.limits.maxBufferSize;
    if (bytes > limit) throw new Error(`${label || 'buffer'}: ${bytes} bytes exceed the adapter's largest buffer (maxBufferSize ${limit} bytes)`);
    return limit - (limit % 4);
  }

  private create(size: number, label: string): GPUBuffer {
    const buf = scopedOom(this.device, `allocating ${label || 'a buffer'} (${size} bytes; ${this.totalBytes} bytes already allocated)`, () =>
      this.device.createBuffer({ size, usage: USAGE, label }));
    this.totalBytes += size;
    this.order.set(buf, this.created++);
    return buf;
  }

  private addLive(size: number): void {
    this.liveBytes += size;
    if (this.liveBytes > this.peakBytes) this.peakBytes = this.liveBytes;
  }

  release(buf: GPUBuffer): void {
    this.liveBytes -= buf.size;
    if (sizeClass(buf.size) !== buf.size) {
      // (a resident buffer: no size class would hand it out again)
      this.totalBytes -= buf.size;
      buf.destroy();
      return;
    }
    let list = this.free.get(buf.size);
    if (!list) this.free.set(buf.size, (list = []));
    // (binary search for its place: the list is in descending creation order, oldest last)
    const id = this.order.get(buf) ?? -1;
    let lo = 0, hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((this.order.get(list[mid]) ?? -1) > id) lo = mid + 1;
      else hi = mid;
    }
    list.splice(lo, 0, buf);
  }

  /** Takes the oldest free buffer of class `size` in none of `exclude`; null (nothing created) if there is none. */
  takeOldestFree(size: number, ...exclude: ReadonlySet<GPUBuffer>[]): GPUBuffer | null {
    const list = this.free.get(size);
    if (!list) return null;
    for (let i = list.length - 1; i >= 0; i--) {
      if (exclude.some((x) => x.has(list[i]))) continue;
      const buf = list.splice(i, 1)[0];
      this.addLive(size);
      return buf;
    }
    return null;
  }

  /** Takes `buf` if it is free (a buffer the caller held before and prefers); false if it is not. */
  takeIfFree(buf: GPUBuffer): boolean {
    const list = this.free.get(buf.size);
    const i = list ? list.lastIndexOf(buf) : -1;
    if (i < 0) return false;
    list!.splice(i, 1);
    this.addLive(buf.size);
    return true;
  }

  /** Takes back a buffer released earlier that is still in the free list (the scheduler reuses it). */
  take(buf: GPUBuffer): GPUBuffer {
    const list = this.free.get(buf.size);
    const i = list ? list.lastIndexOf(buf) : -1;
    if (i < 0) throw new Error(`BufferPool.take: buffer ${buf.label} (${buf.size} bytes) is not free`);
    list!.splice(i, 1);
    this.addLive(buf.size);
    return buf;
  }

  resetPeak(): void {
    this.peakBytes = this.liveBytes;
  }

  /** Destroys pooled free buffers (live ones stay). */
  trim(): void {
    for (const list of this.free.values()) for (const b of list) { this.totalBytes -= b.size; b.destroy(); }
    this.free.clear();
  }
}
