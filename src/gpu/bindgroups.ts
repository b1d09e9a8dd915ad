// Bind groups kept across realizes. Creating one costs tens of microseconds of CPU (Deno's
// wgpu: ~40 µs; a tiny-config training step makes ~1100), which is most of a step's encoding
// time and, on a real GPU, more than the kernels themselves. A training or decoding step binds
// the same pipelines to the same pooled buffers at the same offsets of the same uniform arena
// step after step, so a group made once is looked up again by exactly what it binds: the
// pipeline, and each entry's buffer, offset and size. A hit therefore binds the very buffers
// asked for, all alive; a destroyed buffer's groups are never hit again (a new buffer is a new
// object) and age out. Entries not used for `keepRealizes` realizes are dropped, and the cache
// holds at most `maxEntries`: on Mesa's lavapipe each group is a memory mapping until collected,
// so 8192 kept plus the 16384 the runtime lets wait for a collection stay far below the
// process's 65530.

const ids = new WeakMap<object, number>();
let nextId = 1;
function idOf(o: object): number {
  let id = ids.get(o);
  if (id === undefined) ids.set(o, (id = nextId++));
  return id;
}

/** One buffer binding (the only kind the runtime makes). */
export interface BufferEntry {
  binding: number;
  resource: { buffer: GPUBuffer; offset?: number; size?: number };
}

export class BindGroupCache {
  private groups = new Map<string, { group: GPUBindGroup; used: number }>();
  private layouts = new WeakMap<GPUComputePipeline, GPUBindGroupLayout>();
  private realizes = 0;
  /** Groups created / found since the cache was made. */
  created = 0;
  reused = 0;

  constructor(private device: GPUDevice, private keepRealizes = 8, private maxEntries = 8192) {}

  get size(): number {
    return this.groups.size;
  }

  /**
   * The group binding `entries` to group 0 of `pipeline` (`label` names a group made now;
   * `making` wraps its creation, e.g. in error scopes naming the op).
   */
  get(pipeline: GPUComputePipeline, entries: BufferEntry[], label: string, making?: (make: () => GPUBindGroup) => GPUBindGroup): GPUBindGroup {
    let key = String(idOf(pipeline));
    for (const e of entries) key += `|${e.binding}:${idOf(e.resource.buffer)}:${e.resource.offset ?? 0}:${e.resource.size ?? 'all'}`;
    const hit = this.groups.get(key);
    if (hit) {
      hit.used = this.realizes;
      this.reused++;
      return hit.group;
    }
    const make = () => {
      let layout = this.layouts.get(pipeline);
      if (!layout) this.layouts.set(pipeline, (layout = pipeline.getBindGroupLayout(0)));
      return this.device.createBindGroup({ layout, entries, label });
    };
    const group = making ? making(make) : make();
    this.groups.set(key, { group, used: this.realizes });
    this.created++;
    return group;
  }

  /** Ends a realize: drops groups unused for `keepRealizes` realizes, then the oldest beyond `maxEntries`. */
  endRealize(): void {
    this.realizes++;
    const oldest = this.realizes - this.keepRealizes;
    for (const [k, v] of this.groups) if (v.used < oldest) this.groups.delete(k);
    if (this.groups.size > this.maxEntries) {
      const byAge = [...this.groups].sort((a, b) => a[1].used - b[1].used);
      for (const [k] of byAge.slice(0, this.groups.size - this.maxEntries)) this.groups.delete(k);
    }
  }

  clear(): void {
    this.groups.clear();
  }
}
