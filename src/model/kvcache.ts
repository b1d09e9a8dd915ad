// The key/value cache of cached decoding (one position per step): preallocated per-layer
// self-attention caches [B, H, T, dh] that each step writes one position of in place, and the
// nodes that move rows between steps. Attention runs over all T cache slots with a key mask
// (slots past the current position are masked, so their −1e9 scores weigh exactly 0): a
// step's cost does not grow with the position.
import { dtypeBytes, makeNode, type Tensor } from '../graph/tensor.ts';
import { rotary } from '../graph/ops/rotary.ts';
import { reshape, stridedCopy } from '../graph/ops/shape.ts';

/** out[r] = x[rows[r]] along axis 0 (whole contiguous slabs, buffer copies only). */
export function gatherSlabs(x: Tensor, rows: number[], label: string): Tensor {
  const slab = x.size / x.shape[0];
  for (const r of rows) if (!Number.isInteger(r) || r < 0 || r >= x.shape[0]) throw new Error(`${label}: row ${r} out of range for ${x}`);
  const [y] = makeNode(label, [x], [{ shape: [rows.length, ...x.shape.slice(1)], dtype: x.dtype }], {
    encode(ctx) {
      const bytes = slab * dtypeBytes(x.dtype);
      rows.forEach((src, r) => ctx.copy(x, y, bytes, src * bytes, r * bytes));
    },
  });
  return y;
}

/** A view of the first elements of `x` with a smaller shape (same storage, no copy). */
function prefixView(x: Tensor, shape: number[]): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  if (n > x.size) throw new Error(`prefixView: [${shape}] is larger than ${x}`);
  const [y] = makeNode('prefix_view', [x], [{ shape, dtype: x.dtype }], { view: true });
  return y;
}

/** Self-attention q and k of one position from qkv [B,1,3·dl] as [2, B, H, 1, dh] (q first). */
function qkHeads(qkv: Tensor, H: number): Tensor {
  const [B, , dl3] = qkv.shape;
  const dl = dl3 / 3, dh = dl / H;
  const [y] = makeNode('qk_heads', [qkv], [{ shape: [2, B, H, 1, dh] }], {
    encode(ctx) {
      // Feature f = d·H + h within each of q, k (head is the inner factor, SPEC §3).
      stridedCopy(ctx, qkv, y, [2, B, H, dh], [dl, dl3, 1, H], [B * H * dh, H * dh, dh, 1]);
    },
  });
  return y;
}

/**
 * Writes this position's rotated key (from qkr [2·B·H,1,dh], k half) and value (from qkv,
 * head-split on the fly) into the caches [B,H,T,dh] in place, and returns the key mask
 * [1,1,T] for this position (1 for slots ≤ pos). Attention reads the mask, so it runs after
 * the write in the same submission.
 */
function appendKV(kc: Tensor, vc: Tensor, qkr: Tensor, qkv: Tensor, maskTable: Tensor, pos: number): Tensor {
  const [B, H, T, dh] = kc.shape;
  const dl = H * dh;
  const [mask] = makeNode('kv_append', [kc, vc, qkr, qkv, maskTable], [{ shape: [1, 1, T], dtype: maskTable.dtype }], {
    encode(ctx) {
      const dst = [H * T * dh, T * dh, 1];
      stridedCopy(ctx, qkr, kc, [B, H, dh], [H * dh, dh, 1], dst, B * H * dh, pos * dh);
      stridedCopy(ctx, qkv, vc, [B, H, dh], [3 * dl, 1, H], dst, 2 * dl, pos * dh);
      ctx.copy(maskTable, mask, T * 4, pos * T * 4, 0);
    },
  });
  return mask;
}

/** Rotated query of this position and the keys/values (with key mask) it attends over. */
export interface CachedAttentionInputs {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  mask: Tensor;
}

/** One layer's self-attention cache at position `pos` (the step feeds one token per row). */
export class SelfAttentionCache {
  /**
   * kc, vc [B, H, T, dh] (written in place); maskTable [T, T] f32 with row i = (j ≤ i).
   */
  constructor(readonly kc: Tensor, readonly vc: Tensor, readonly maskTable: Tensor, readonly pos: number) {}

  /**
   * Splits this step's qkv [B,1,3·dl] into heads, rotates q and k at position `pos`, appends k
   * and v to the caches and returns what attention reads.
   */
  append(qkv: Tensor, freqs: Tensor, ropeStart: number): CachedAttentionInputs {
    const [B, H, , dh] = this.kc.shape;
    if (qkv.rank !== 3 || qkv.shape[0] !== B || qkv.shape[1] !== 1 || qkv.shape[2] !== 3 * H * dh)
      throw new Error(`SelfAttentionCache.append: qkv ${qkv} must be [${B},1,${3 * H * dh}] (one position per row)`);
    const qkr = rotary(reshape(qkHeads(qkv, H), [2 * B * H, 1, dh]), freqs, ropeStart, this.pos);
    const mask = appendKV(this.kc, this.vc, qkr, qkv, this.maskTable, this.pos);
    return { q: prefixView(qkr, [B, H, 1, dh]), k: this.kc, v: this.vc, mask };
  }
}
