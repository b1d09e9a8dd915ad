// Plain greedy decoding by full-prefix recomputation (the authors' procedure; their
// "beam search" reduces to this, SPEC §9). The KV-cached generator supersedes it for speed.
import type { Tensor } from '../graph/tensor.ts';
import { fromData, read, realize } from '../graph/runtime.ts';
import { Forward } from '../model/context.ts';
import { decodeText, decoderMask, encodeImage } from '../model/micar.ts';
import type { Weights } from '../model/weights.ts';

/** Argmax decoding from <sos>; returns generated ids per image (sos excluded). */
export async function greedyDecode(w: Weights, image: Tensor, opts: { maxLen: number; stopAtEos?: boolean }): Promise<number[][]> {
  const cfg = w.cfg;
  const b = image.shape[0];
  const f = new Forward(w, { training: false });
  const img = encodeImage(f, image).out.keep();
  await realize([img]);
  const seqs: number[][] = Array.from({ length: b }, () => [cfg.sos_id]);
  const done = new Array(b).fill(false);
  for (let step = 0; step < opts.maxLen; step++) {
    const t = step + 1;
    const ids = fromData(Int32Array.from(seqs.flat()), [b, t], 'i32');
    const dec = decodeText(new Forward(w, { training: false }), img, ids, decoderMask(new Int32Array(b * t).fill(1), b, t));
    const logits = (await read(dec.logits)) as Float32Array;
    const V = cfg.vocab_size;
    for (let i = 0; i < b; i++) {
      const row = logits.subarray((i * t + t - 1) * V, (i * t + t) * V);
      let best = 0;
      for (let v = 1; v < V; v++) if (row[v] > row[best]) best = v;
      seqs[i].push(best);
      if (best === cfg.eos_id) done[i] = true;
    }
    if (opts.stopAtEos && done.every(Boolean)) break;
  }
  return seqs.map((s) => s.slice(1));
}
