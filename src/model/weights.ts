// The model's named tensors on the GPU: loaded from a state dict (safetensors / .pth) with
// every name, shape and dtype checked, or freshly initialised as the authors do (SPEC §7).
import { kernelOverride } from '../graph/kernels/overrides.ts';
import { Tensor } from '../graph/tensor.ts';
import { dispose, fromData, readMany, realize, runtime, toHalfBitsArray } from '../graph/runtime.ts';
import { cast } from '../graph/ops/cast.ts';
import { mulberry32 } from '../graph/ops/random.ts';
import { type HostTensor, toFloat32, fromFloat32 } from '../io/safetensors.ts';
import type { MicarConfig } from './config.ts';
import { type Entry, stateDictSpec } from './spec.ts';

export class Weights {
  readonly spec: Entry[];
  private byName = new Map<string, Entry>();
  readonly tensors: Map<string, Tensor> = new Map();
  /** BatchNorm num_batches_tracked (kept on the CPU: it only counts). */
  readonly bnCount: Map<string, number> = new Map();

  /**
   * Storage element type of the parameters and the positional table: 'f16' for half-precision
   * inference (half the GPU memory). BatchNorm statistics and the rotary frequencies stay f32
   * in every model (statistics; angles pos·freq).
   */
  readonly dtype: 'f32' | 'f16';
  /** f32 uploads waiting for their GPU conversion to f16 (see `ready`). */
  private pendingCasts: { src: Tensor; dst: Tensor }[] = [];

  private constructor(readonly cfg: MicarConfig, dtype: 'f32' | 'f16' = 'f32') {
    this.dtype = dtype;
    this.spec = stateDictSpec(cfg);
    for (const e of this.spec) this.byName.set(e.name, e);
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  get(name: string): Tensor {
    const t = this.tensors.get(name);
    if (!t) {
      if (this.chunked.has(name)) throw new Error(`model weight "${name}" is stored in ${this.chunked.get(name)!.length} chunks (larger than one GPU binding); use chunks()`);
      throw new Error(`model weight "${name}" is not defined for backbone ${this.cfg.backbone} / this config`);
    }
    return t;
  }

  /**
   * A weight as pieces along axis 0. Tensors larger than half the device's storage-binding
   * limit (the paper's 2048→2048 3×3 fusion conv: 151 MB) are kept in several pieces.
   */
  chunks(name: string): Tensor[] {
    return this.chunked.get(name) ?? [this.get(name)];
  }

  /** Weights kept in pieces (name → pieces along axis 0). */
  readonly chunked: Map<string, Tensor[]> = new Map();

  entry(name: string): Entry {
    const e = this.byName.get(name);
    if (!e) throw new Error(`unknown model weight "${name}"`);
    return e;
  }

  /** Trainable parameters, split into AdamW groups: vision encoder, everything else. */
  trainable(): { vision: Tensor[]; other: Tensor[] } {
    const vision: Tensor[] = [], other: Tensor[] = [];
    for (const e of this.spec) if (e.kind === 'param') (e.vision ? vision : other).push(...this.chunks(e.name));
    return { vision, other };
  }

  /** Frees every tensor's GPU memory (the object is unusable afterwards). */
  dispose(): void {
    for (const t of this.tensors.values()) dispose(t);
    for (const ts of this.chunked.values()) dispose(...ts);
    for (const c of this.pendingCasts) dispose(c.src);
    this.pendingCasts = [];
  }

  /** Name of a parameter tensor (for reports). */
  nameOf(t: Tensor): string | undefined {
    for (const [n, x] of this.tensors) if (x === t) return n;
    for (const [n, xs] of this.chunked) if (xs.includes(t)) return `${n} (piece ${xs.indexOf(t)})`;
    return undefined;
  }

  /** The element type entry `e` is stored in (see `dtype`). */
  storageType(e: Entry): 'f32' | 'f16' {
    return this.dtype === 'f16' && (e.kind === 'param' || e.kind === 'pe') ? 'f16' : 'f32';
  }

  /**
   * Uploads one entry: f32 values, or f16 bits (Uint16Array) straight from an f16 file into an
   * f16 model (no f32 host copy). f32 values for an f16 entry are uploaded as f32 and converted
   * on the GPU (`ready` runs the conversions and frees the f32 copies).
   */
  private set(e: Entry, data: Float32Array | Uint16Array): void {
    const want = this.storageType(e);
    const upload = (part: Float32Array | Uint16Array, shape: number[], name: string): Tensor => {
      if (part instanceof Uint16Array) {
        if (want !== 'f16') throw new Error(`${name}: f16 bits for an f32 entry`);
        return fromData(part, shape, 'f16', name, { resident: true });
      }
      // (an f32 upload converted to f16 is freed once converted: a pooled buffer)
      const t = fromData(part, shape, 'f32', name, { resident: want === 'f32' });
      if (want === 'f32') return t;
      const h = cast(t, 'f16').keep();
      h.name = name;
      this.pendingCasts.push({ src: t, dst: h });
      return h;
    };
    const bytesPer = want === 'f16' ? 2 : 4;
    const limit = kernelOverride('weightBindingLimit') ?? runtime().device.limits.maxStorageBufferBindingSize;
    const rows = e.shape[0] ?? 1, per = data.length / Math.max(1, rows);
    const pieces = e.shape.length ? Math.ceil((data.length * Math.max(bytesPer, data.BYTES_PER_ELEMENT)) / (limit / 2)) : 1;
    if (pieces <= 1) {
      const t = upload(data, e.shape, e.name);
      if (e.kind === 'param') t.requiresGrad = true;
      this.tensors.set(e.name, t);
      return;
    }
    // (pieces of a multiple of 4 rows: a conv's output channels in whole vec4s, which its matmul kind needs)
    const step = rows >= 4 * pieces ? Math.ceil(rows / pieces / 4) * 4 : Math.ceil(rows / pieces), list: Tensor[] = [];
    for (let r = 0; r < rows; r += step) {
      const n = Math.min(step, rows - r);
      const t = upload(data.subarray(r * per, (r + n) * per), [n, ...e.shape.slice(1)], `${e.name}[${r}:${r + n}]`);
      if (e.kind === 'param') t.requiresGrad = true;
      list.push(t);
    }
    this.chunked.set(e.name, list);
  }

  /**
   * Loads a state dict. `file` names the source in errors. Missing, unexpected and
   * mis-shaped entries are all listed in one error. Float tensors of any dtype become `dtype`
   * (f32 by default; 'f16': F16 tensors upload their bits as they are, others convert on the
   * GPU — await `ready()` before measuring memory).
   */
  static fromStateDict(
    cfg: MicarConfig, sd: Map<string, HostTensor>, file: string,
    opts: { allowMissing?: (name: string) => boolean; dtype?: 'f32' | 'f16' } = {},
  ): Weights {
    const w = new Weights(cfg, opts.dtype);
    const missing = checkStateDictFits(cfg, sd, file, opts, w.spec);
    const fresh = missing.length === 0 ? null : Weights.init(cfg, 0, opts.dtype);
    for (const e of w.spec) {
      const h = sd.get(e.name);
      if (e.kind === 'bn_count') {
        w.bnCount.set(e.name.replace(/\.num_batches_tracked$/, ''), h ? Number(toFloat32(h)[0]) : 0);
        continue;
      }
      if (!h) {
        if (fresh!.chunked.has(e.name)) w.chunked.set(e.name, fresh!.chunked.get(e.name)!);
        else w.tensors.set(e.name, fresh!.get(e.name));
        continue;
      }
      w.set(e, h.dtype === 'F16' && w.storageType(e) === 'f16' ? f16Bits(h) : toFloat32(h));
    }
    return w;
  }

  /**
   * Runs the pending f32 → f16 conversions on the GPU (a few tens of MB per submission) and
   * frees the f32 uploads. Lazy casts would also run at first use, but the f32 copies would
   * stay allocated until then.
   */
  async ready(): Promise<this> {
    const LIMIT = 64 * 1024 * 1024;
    while (this.pendingCasts.length) {
      let bytes = 0, n = 0;
      while (n < this.pendingCasts.length && (n === 0 || bytes + this.pendingCasts[n].src.bytes <= LIMIT)) bytes += this.pendingCasts[n++].src.bytes;
      const batch = this.pendingCasts.splice(0, n);
      await realize(batch.map((c) => c.dst), { label: 'weights f32 → f16' });
      for (const c of batch) dispose(c.src);
    }
    return this;
  }

  /** A freshly initialised model (xavier-uniform for ≥2-D decoder-side weights, torchvision init for the backbone). */
  static init(cfg: MicarConfig, seed: number, dtype: 'f32' | 'f16' = 'f32'): Weights {
    const w = new Weights(cfg, dtype);
    const rnd = mulberry32(seed);
    const uniform = (n: number, bound: number) => Float32Array.from({ length: n }, () => (2 * rnd() - 1) * bound);
    const normal = (n: number, std: number) =>
      Float32Array.from({ length: n }, () => std * Math.sqrt(-2 * Math.log(1 - rnd())) * Math.cos(2 * Math.PI * rnd()));
    for (const e of w.spec) {
      const n = e.shape.reduce((a, b) => a * b, 1);
      let data: Float32Array;
      switch (e.init) {
        case 'xavier': {
          const [fo, fi] = e.shape;
          data = uniform(n, Math.sqrt(6 / (fi + fo)));
          break;
        }
        case 'kaiming_conv': data = normal(n, Math.sqrt(2 / e.fanIn!)); break; // fanIn holds fan_out here
        case 'linear_default':
        case 'bias_default': data = uniform(n, 1 / Math.sqrt(e.fanIn!)); break;
        case 'ones': data = new Float32Array(n).fill(1); break;
        case 'zeros': data = new Float32Array(n); break;
        case 'rope': data = ropeFreqs(cfg.qk_rope_dim / 2); break;
        case 'pe': data = sinusoidal(cfg.text_seq_len, cfg.d_model); break;
      }
      if (e.kind === 'bn_count') {
        w.bnCount.set(e.name.replace(/\.num_batches_tracked$/, ''), 0);
        continue;
      }
      // Values made on the host: an f16 entry is converted here (no f32 copy on the GPU).
      w.set(e, w.storageType(e) === 'f16' ? toHalfBitsArray(data) : data);
    }
    return w;
  }

  /**
   * Reads every tensor back into a state dict (num_batches_tracked as I64). Float tensors are
   * written as `dtype` (F32 by default; 'F16' halves a file — BatchNorm statistics and rotary
   * frequencies stay F32, as they are kept in every model).
   */
  async toStateDict(opts: { dtype?: 'F32' | 'F16' } = {}): Promise<Map<string, HostTensor>> {
    const out = new Map<string, HostTensor>();
    // Every chunk of every weight in one read-back.
    const chunkList = this.spec.filter((e) => e.kind !== 'bn_count').flatMap((e) => this.chunks(e.name));
    const host = new Map<Tensor, Float32Array>();
    (await readMany(chunkList)).forEach((d, i) => host.set(chunkList[i], d as Float32Array));
    for (const e of this.spec) {
      if (e.kind === 'bn_count') {
        const v = this.bnCount.get(e.name.replace(/\.num_batches_tracked$/, '')) ?? 0;
        const data = new Uint8Array(8);
        new DataView(data.buffer).setBigInt64(0, BigInt(v), true);
        out.set(e.name, { dtype: 'I64', shape: [], data });
        continue;
      }
      const parts: Float32Array[] = [];
      for (const c of this.chunks(e.name)) parts.push(host.get(c)!);
      let all = parts[0];
      if (parts.length > 1) {
        all = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
        let o = 0;
        for (const p of parts) {
          all.set(p, o);
          o += p.length;
        }
      }
      const f16 = opts.dtype === 'F16' && (e.kind === 'param' || e.kind === 'pe');
      out.set(e.name, fromFloat32(all, e.shape, f16 ? 'F16' : 'F32'));
    }
    return out;
  }
}

/**
 * Throws, listing every missing, unexpected, mis-shaped and wrongly typed entry, unless `sd`
 * fits `cfg`'s state dict (no GPU needed); returns the names allowed to be missing and absent.
 */
export function checkStateDictFits(cfg: MicarConfig, sd: Map<string, HostTensor>, file: string, opts: { allowMissing?: (name: string) => boolean } = {}, spec: Entry[] = stateDictSpec(cfg)): string[] {
  const names = new Set(spec.map((e) => e.name));
  const missing: string[] = [], misShaped: string[] = [], badType: string[] = [];
  for (const e of spec) {
    const h = sd.get(e.name);
    if (!h) {
      if (!opts.allowMissing?.(e.name)) missing.push(e.name);
      continue;
    }
    if (h.shape.join() !== e.shape.join()) misShaped.push(`${e.name}: expected [${e.shape}], file has [${h.shape}]`);
    else if (e.kind === 'bn_count' ? !/^[IU]/.test(h.dtype) : !['F32', 'F16', 'BF16', 'F64'].includes(h.dtype)) badType.push(`${e.name}: dtype ${h.dtype}`);
  }
  const unexpected = [...sd.keys()].filter((k) => !names.has(k));
  if (missing.length || misShaped.length || unexpected.length || badType.length) {
    const parts = [
      missing.length && `missing ${missing.length}: ${missing.slice(0, 20).join(', ')}${missing.length > 20 ? ', …' : ''}`,
      unexpected.length && `unexpected ${unexpected.length}: ${unexpected.slice(0, 20).join(', ')}${unexpected.length > 20 ? ', …' : ''}`,
      misShaped.length && `wrong shape: ${misShaped.slice(0, 20).join('; ')}`,
      badType.length && `wrong dtype: ${badType.join('; ')}`,
    ].filter(Boolean);
    throw new Error(`${file}: state dict does not match config (${cfg.backbone}, d_model ${cfg.d_model}, ${cfg.num_layers} layers, ${cfg.num_experts} experts, vocab ${cfg.vocab_size}): ${parts.join(' | ')}`);
  }
  return spec.filter((e) => !sd.has(e.name)).map((e) => e.name);
}

/** The raw f16 bits of an F16 host tensor (a view when aligned, else a copy). */
function f16Bits(h: HostTensor): Uint16Array {
  const n = h.data.length / 2;
  if (h.data.byteOffset % 2 === 0) return new Uint16Array(h.data.buffer, h.data.byteOffset, n);
  return new Uint16Array(h.data.slice().buffer, 0, n);
}

/** rotary_embedding_torch frequencies 1/10000^(2i/dim), rounded as torch does in f32. */
export function ropeFreqs(dim: number): Float32Array {
  const out = new Float32Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) out[i] = Math.fround(1 / Math.fround(Math.pow(10000, Math.fround((2 * i) / dim))));
  return out;
}

/** pe[n,2i] = sin(n·exp(−2i·ln(10000)/d)), pe[n,2i+1] = cos(…), shape [1, T, d]. */
export function sinusoidal(T: number, d: number): Float32Array {
  const out = new Float32Array(T * d);
  for (let n = 0; n < T; n++)
    for (let i = 0; i < d / 2; i++) {
      const a = n * Math.exp((-2 * i * Math.log(10000)) / d);
      out[n * d + 2 * i] = Math.sin(a);
      out[n * d + 2 * i + 1] = Math.cos(a);
    }
  return out;
}
export type { Tensor };
