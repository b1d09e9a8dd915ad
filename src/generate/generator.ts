// Report generation with a key/value cache: the image is encoded once, every decoder layer's
// image context (cross-attention keys/values, global image vector) is computed once per image,
// and each step runs the model's own decoder (`decodeText` with a `DecoderCache`: one position
// per row, self-attention keys/values appended to preallocated caches, see model/kvcache.ts),
// so a new token costs one position, not the whole prefix. A step is one submission; beam
// reorders are folded into the next one.
import { noGrad, Tensor } from '../graph/tensor.ts';
import { dispose, fromData, read, realize } from '../graph/runtime.ts';
import { argmax } from '../graph/ops/reduce.ts';
import type { StackedExperts } from '../graph/ops/matvec.ts';
import { reshape, slice } from '../graph/ops/shape.ts';
import { Forward } from '../model/context.ts';
import { type DecoderCache, decodeText, encodeImage } from '../model/micar.ts';
import { imageContext, stackedExperts } from '../model/blocks.ts';
import { gatherSlabs, SelfAttentionCache } from '../model/kvcache.ts';
import type { Weights } from '../model/weights.ts';

const isTensor = (t: unknown): t is Tensor => t instanceof Tensor;

export interface StepTrace {
  /** Cross-attention per layer [B, H, 1, 49] (when tracing). */
  cross: Tensor[];
  /** Self-attention per layer [B, H, 1, t+1]. */
  self: Tensor[];
  /** MoE routing per layer: indices [B, k], weights [B, k]. */
  experts: { indices: Tensor; weights: Tensor }[];
}

/** Frees a step's trace tensors (the generator's greedy loop drops those of steps run past the end; viz frees read ones). */
export function disposeStepTrace(t: StepTrace): void {
  dispose(...t.cross, ...t.self, ...t.experts.flatMap((e) => [e.indices, e.weights]));
}

/** Every decoder layer's image context (model/blocks.ts `ImageContext`), one row per image or per decoded row. */
interface ImageContext {
  crossK: Tensor[]; // per layer [n, H, 49, dh] (rotated)
  crossV: Tensor[];
  g: Tensor[]; // per layer [n, 1, d] global image vector
}

/** Incremental decoder over B rows (images × hypotheses); rows may be regrouped between steps. */
export class CachedDecoder {
  /** Decode steps run by every decoder in this process (lets tests and benches check streaming). */
  static totalSteps = 0;
  /** Time every dispatch of each step (runtime's `lastProfile`), for profiling. */
  static profile = false;
  pos = 0;
  private img: ImageContext | null = null;
  /** Per-row copies of the image context (the per-image one when rows = images). */
  private rowCtx: ImageContext | null = null;
  /** Row → image index. */
  private rowImage: number[] = [];
  private kc: Tensor[] = [];
  private vc: Tensor[] = [];
  /** Parent row of each row for the next step (beam reorders, folded into the next step). */
  private pending: number[] | null = null;
  private maskTable: Tensor | null = null;
  private stacked: StackedExperts[] = [];

  constructor(readonly w: Weights, readonly trace = false) {}

  /** Rows currently decoded. */
  get rows(): number {
    return this.pending ? this.pending.length : this.rowImage.length;
  }

  /** Encodes the images and precomputes each layer's image context (and stacks the experts once). */
  async encode(image: Tensor): Promise<Tensor> {
    const cfg = this.w.cfg;
    const ctx: ImageContext = { crossK: [], crossV: [], g: [] };
    this.stacked = [];
    // Inference graphs (noGrad): few-row products (the global vectors) take the few-row kernel.
    const enc = noGrad(() => {
      const f = new Forward(this.w, { training: false });
      const enc = encodeImage(f, image).out;
      for (let l = 0; l < cfg.num_layers; l++) {
        const ic = imageContext(f, cfg, enc, l);
        ctx.crossK.push(ic.cross.k.keep());
        ctx.crossV.push(ic.cross.v.keep());
        ctx.g.push(ic.global.keep());
        const st = stackedExperts(f, cfg, l);
        this.stacked.push({ W1: st.W1.keep(), W3: st.W3.keep(), W2: st.W2.keep() });
      }
      return enc.keep();
    });
    const st = this.stacked.flatMap((s) => [s.W1, s.W3, s.W2]);
    await realize([enc, ...ctx.crossK, ...ctx.crossV, ...ctx.g, ...st], { label: 'encode image + cross K/V' });
    this.img = ctx;
    return enc;
  }

  /** Starts decoding with `rowsPerImage` rows per image (1 for greedy; beam search regroups later). */
  start(images: number, rowsPerImage: number): void {
    if (!this.img) throw new Error('CachedDecoder.start: call encode() first');
    if (images !== this.img.g[0].shape[0]) throw new Error(`CachedDecoder.start: ${images} images, but ${this.img.g[0].shape[0]} were encoded`);
    const cfg = this.w.cfg;
    this.disposeRows();
    this.rowImage = [];
    for (let i = 0; i < images; i++) for (let r = 0; r < rowsPerImage; r++) this.rowImage.push(i);
    const B = this.rowImage.length, H = cfg.num_heads, T = cfg.text_seq_len, dh = cfg.d_latent / H;
    // Zeroed caches: masked slots must hold finite values (0·NaN would poison P·V).
    // The caches hold keys/values in the model's element type (f16 models: half the memory).
    const dt = this.w.dtype, zeros = () => (dt === 'f16' ? new Uint16Array(B * H * T * dh) : new Float32Array(B * H * T * dh));
    this.kc = Array.from({ length: cfg.num_layers }, () => fromData(zeros(), [B, H, T, dh], dt, 'k_cache'));
    this.vc = Array.from({ length: cfg.num_layers }, () => fromData(zeros(), [B, H, T, dh], dt, 'v_cache'));
    if (!this.maskTable) {
      const m = new Float32Array(T * T);
      for (let i = 0; i < T; i++) for (let j = 0; j <= i; j++) m[i * T + j] = 1;
      this.maskTable = fromData(m, [T, T], 'f32', 'causal_rows');
    }
    this.rowCtx = this.gatherContext(this.rowImage);
    this.pending = null;
    this.pos = 0;
  }

  /** The per-row image context (lazy gathers, kept; realized by the next step). */
  private gatherContext(rowImage: number[]): ImageContext {
    const img = this.img!;
    const n = img.g[0].shape[0];
    if (rowImage.length === n && rowImage.every((im, r) => im === r)) return img;
    const g = (t: Tensor) => gatherSlabs(t, rowImage, 'rows_of_image').keep();
    return { crossK: img.crossK.map(g), crossV: img.crossV.map(g), g: img.g.map(g) };
  }

  private disposeRows(): void {
    for (const t of [...this.kc, ...this.vc]) dispose(t);
    this.kc = [];
    this.vc = [];
    if (this.rowCtx && this.rowCtx !== this.img) dispose(...this.rowCtx.crossK, ...this.rowCtx.crossV, ...this.rowCtx.g);
    this.rowCtx = null;
  }

  /**
   * Feeds one token per row (position `pos`) and returns the next-token logits [B, V]
   * (row-major) — one submission, plus the read-back. `tokens`: numbers, or an i32 [B, 1]
   * tensor already on the GPU (a previous step's `next`).
   */
  async step(tokens: ArrayLike<number> | Tensor): Promise<{ logits: Float32Array; trace: StepTrace | null }> {
    const { logits, trace } = await this.submit(tokens, false);
    const out = (await read(logits)) as Float32Array;
    dispose(logits);
    return { logits: out, trace };
  }

  /**
   * The step without a read-back: the logits [B, V] and the greedy choice `next` (i32 [B, 1],
   * torch.argmax's first maximum), both kept on the GPU for the caller to read and dispose.
   * `next` can feed the following step directly, so steps can be submitted ahead of the
   * read-back (each read-back waits a fixed time beyond the GPU work: Deno ≥ 10 ms, Firefox
   * ~100 ms).
   */
  async stepOnDevice(tokens: ArrayLike<number> | Tensor): Promise<{ logits: Tensor; next: Tensor; trace: StepTrace | null }> {
    const { logits, next, trace } = await this.submit(tokens, true);
    return { logits, next: next!, trace };
  }

  private async submit(tokens: ArrayLike<number> | Tensor, greedy: boolean): Promise<{ logits: Tensor; next: Tensor | null; trace: StepTrace | null }> {
    if (!this.img || !this.rowCtx) throw new Error('CachedDecoder: call encode() and start() first');
    const w = this.w, cfg = w.cfg;
    const B = this.rows;
    const given = isTensor(tokens) ? tokens : null;
    if (given ? given.shape.join() !== `${B},1` || given.dtype !== 'i32' : (tokens as ArrayLike<number>).length !== B)
      throw new Error(`CachedDecoder.step: ${given ? `tokens ${given}` : `${(tokens as ArrayLike<number>).length} tokens`} for ${B} rows (want ${B} numbers or an i32 [${B}, 1] tensor)`);
    if (this.pos >= cfg.text_seq_len) throw new Error(`CachedDecoder.step: position ${this.pos} exceeds text_seq_len ${cfg.text_seq_len}`);
    const pos = this.pos;
    const old: Tensor[] = [];
    if (this.pending) {
      const parents = this.pending;
      old.push(...this.kc, ...this.vc);
      this.kc = this.kc.map((t) => gatherSlabs(t, parents, 'reorder_k_cache').keep());
      this.vc = this.vc.map((t) => gatherSlabs(t, parents, 'reorder_v_cache').keep());
      const rowImage = parents.map((p) => this.rowImage[p]);
      if (rowImage.join() !== this.rowImage.join()) {
        if (this.rowCtx !== this.img) old.push(...this.rowCtx.crossK, ...this.rowCtx.crossV, ...this.rowCtx.g);
        this.rowCtx = this.gatherContext(rowImage);
        this.rowImage = rowImage;
      }
      this.pending = null;
    }
    const rc = this.rowCtx;
    const ids = given ?? fromData(Int32Array.from(tokens as ArrayLike<number>), [B, 1], 'i32');
    // The model's decoder, one position per row against the caches; an inference graph, so its
    // few-row products take the few-row kernel.
    const { logits, next, trace } = noGrad(() => {
      const f = new Forward(w, { training: false, keepAttention: this.trace });
      const cache: DecoderCache = {
        pos,
        layers: this.kc.map((kc, l) => ({
          self: new SelfAttentionCache(kc, this.vc[l], this.maskTable!, pos),
          image: { cross: { k: rc.crossK[l], v: rc.crossV[l] }, global: rc.g[l] },
          experts: this.stacked[l],
        })),
      };
      const dec = decodeText(f, null, ids, null, cache);
      const trace: StepTrace | null = this.trace
        ? {
          self: dec.layers.map((r) => slice(r.self!, 3, 0, pos + 1)),
          cross: dec.layers.map((r) => r.cross!),
          experts: dec.layers.map((r) => ({ indices: r.moe.indices, weights: r.moe.weights })),
        }
        : null;
      const logits = reshape(dec.logits, [B, cfg.vocab_size]).keep();
      return { logits, next: greedy ? argmax(logits, 1, true).keep() : null, trace };
    });
    const keepers = [logits, ...(next ? [next] : []), ...this.kc, ...this.vc, ...rc.crossK, ...rc.crossV, ...rc.g];
    if (trace) keepers.push(...trace.self, ...trace.cross, ...trace.experts.flatMap((e) => [e.indices, e.weights]));
    await realize(keepers, { label: `decode step ${pos}`, profile: CachedDecoder.profile });
    dispose(...old);
    if (!given) dispose(ids);
    this.pos++;
    CachedDecoder.totalSteps++;
    return { logits, next, trace };
  }

  /**
   * Regroups rows (beam search): row r of the next step continues old row `parents[r]`;
   * the number of rows may change. Applied inside the next step's submission.
   */
  reorder(parents: number[]): Promise<void> {
    const n = this.rows;
    for (const p of parents) if (!Number.isInteger(p) || p < 0 || p >= n) throw new Error(`CachedDecoder.reorder: parent ${p} out of range (${n} rows)`);
    const composed = this.pending ? parents.map((p) => this.pending![p]) : parents;
    const identity = composed.length === this.rowImage.length && composed.every((p, r) => p === r);
    this.pending = identity ? null : composed;
    return Promise.resolve();
  }

  dispose(): void {
    this.disposeRows();
    if (this.img) dispose(...this.img.crossK, ...this.img.crossV, ...this.img.g);
    for (const s of this.stacked) dispose(s.W1, s.W3, s.W2);
    dispose(this.maskTable);
    this.maskTable = null;
    this.stacked = [];
    this.img = null;
  }
}
