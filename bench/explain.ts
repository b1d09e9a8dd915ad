// `npm run bench -- explain --checkpoint C [--data-dir runs/phantom] [--images 48]`
// What carries the finding's location in a trained model, and what explaining costs.
//  1. Location words under path swaps: the true reports are read teacher-forced on the test
//     images; for every position whose true word is a location word (upper/middle/lower,
//     left/centre/right) the argmax accuracy and the mean probability of the true word, with
//     the gated fusion's cross-attention or its global vector (mean + max over image tokens)
//     reading ANOTHER image's tokens (Forward.swapImagePath). If location survives swapping the
//     cross-attention but not the global vector, the global vector carries it — and no map over
//     the cross-attention can point at the lesion.
//     Then the cross-attention barred from the image tokens whose pooling bins overlap a
//     finding's box (for every word), against barring as many random tokens outside the boxes:
//     if location survives losing the lesion's own tokens, it is readable from other tokens
//     (the backbone's receptive field spans the image; the encoder's self-attention mixes
//     tokens), so attention has no need to rest on the lesion.
//     'bar-*-enc' also bars those tokens from every other token in the encoder's self-attention,
//     so what remains is what the backbone put into the other tokens' own features; '-global'
//     also swaps the global vector (which pools every token, the barred ones included).
//  2. Seconds per image: one explainSteps pass (all five methods, the finding words of one
//     report) against a plain batch-1 forward, measured in the same run.
import { dispose, fromData, init, read } from '../src/graph/runtime.ts';
import { readModel } from '../src/model/load.ts';
import { Forward } from '../src/model/context.ts';
import { decodeText, decoderMask, encodeImage } from '../src/model/micar.ts';
import { loadDataset, loadSampleImage } from '../src/data/datasets.ts';
import { preprocess } from '../src/data/preprocess.ts';
import { EXPLAIN_METHODS, explainSteps } from '../src/viz/explain.ts';
import { COLS, ROWS } from '../src/data/findings.ts';

function arg(args: string[], name: string, def?: string): string {
  const i = args.indexOf(`--${name}`);
  if (i >= 0 && args[i + 1] !== undefined) return args[i + 1];
  if (def === undefined) throw new Error(`bench explain: missing --${name}`);
  return def;
}

export async function main(args: string[]): Promise<void> {
  await init();
  const { cfg, tokenizer: tok, weights: w } = await readModel(arg(args, 'checkpoint'));
  const n = Number(arg(args, 'images', '48'));
  const S = cfg.image_size, T = cfg.text_seq_len, V = cfg.vocab_size;
  const splits = await loadDataset('phantom', arg(args, 'data-dir', 'runs/phantom'), { phantom: { count: Number(arg(args, 'phantom-count', '3000')), seed: 7, size: S } });
  const test = splits.test.slice(0, n);
  const pixels = await Promise.all(test.map(async (s) => preprocess(await loadSampleImage(s), { resize: S, crop: S })));
  const locIds = new Set([...ROWS, ...COLS].map((x) => tok.id(x)));
  const enc = test.map((s) => tok.encode(s.report, T));
  const B = 16;
  const result: Record<string, { accuracy: number; prob: number; n: number }> = {};
  // Tokens whose adaptive-pool bins (on the fused stride-4 map) overlap a box of the image.
  const fusedSide = Math.ceil(S / 4);
  const bins = Array.from({ length: 7 }, (_, i) => [Math.floor((i * fusedSide) / 7), Math.ceil(((i + 1) * fusedSide) / 7)]);
  const boxTokens = test.map((s) => {
    const set = new Set<number>();
    for (const f of s.meta?.findings ?? []) {
      const [x0, y0, x1, y1] = f.box.map((v) => v / 4);
      for (let r = 0; r < 7; r++) for (let c = 0; c < 7; c++) if (bins[r][0] < y1 && bins[r][1] > y0 && bins[c][0] < x1 && bins[c][1] > x0) set.add(r * 7 + c);
    }
    return set;
  });
  let seed = 12345;
  const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const randomTokens = boxTokens.map((box) => {
    const outside = Array.from({ length: 49 }, (_, i) => i).filter((i) => !box.has(i));
    for (let i = outside.length - 1; i > 0; i--) {
      const j = Math.floor(rnd() * (i + 1));
      [outside[i], outside[j]] = [outside[j], outside[i]];
    }
    return new Set(outside.slice(0, box.size));
  });
  const tokensBarred = boxTokens.reduce((a, b) => a + b.size, 0) / boxTokens.length;
  for (const mode of ['none', 'cross', 'global', 'bar-box', 'bar-random', 'bar-box-enc', 'bar-random-enc', 'bar-box-enc-global', 'bar-random-enc-global'] as const) {
    let hit = 0, prob = 0, count = 0;
    for (let i = 0; i < test.length; i += B) {
      const rows = enc.slice(i, i + B), b = rows.length;
      if (b < 2 && mode !== 'none') continue;
      const px = new Float32Array(b * 3 * S * S);
      rows.forEach((_, j) => px.set(pixels[i + j], j * 3 * S * S));
      const ids = new Int32Array(b * T), pad = new Float32Array(b * T);
      rows.forEach((e, j) => {
        ids.set(e.input, j * T);
        for (let t = 0; t < T; t++) pad[j * T + t] = e.padMask[t];
      });
      const image = fromData(px, [b, 3, S, S]), idsT = fromData(ids, [b, T], 'i32'), mask = decoderMask(pad, b, T);
      let crossMask: ReturnType<typeof fromData> | undefined;
      let encoderMask: ReturnType<typeof fromData> | undefined;
      if (mode.startsWith('bar-')) {
        const barred = (mode.startsWith('bar-box') ? boxTokens : randomTokens).slice(i, i + b);
        const m = new Float32Array(b * T * 49).fill(1);
        for (let j = 0; j < b; j++) for (const k of barred[j]) for (let t = 0; t < T; t++) m[(j * T + t) * 49 + k] = 0;
        crossMask = fromData(m, [b, T, 49]);
        if (mode.includes('-enc')) {
          // No image token reads a barred token in the encoder either (a barred token still reads itself).
          const e = new Float32Array(b * 49 * 49).fill(1);
          for (let j = 0; j < b; j++) for (const k of barred[j]) for (let q = 0; q < 49; q++) if (q !== k) e[(j * 49 + q) * 49 + k] = 0;
          encoderMask = fromData(e, [b, 49, 49]);
        }
      }
      const swap = mode === 'cross' || mode === 'global' ? mode : mode.endsWith('-global') ? 'global' : undefined;
      const f = new Forward(w, { swapImagePath: swap, crossMask, encoderMask });
      const dec = decodeText(f, encodeImage(f, image).out, idsT, mask);
      const logits = (await read(dec.logits)) as Float32Array;
      dispose(dec.logits, image, idsT, mask, crossMask, encoderMask);
      rows.forEach((e, j) => {
        for (let t = 0; t < T; t++) {
          const y = e.labels[t];
          if (!locIds.has(y)) continue;
          const row = logits.subarray((j * T + t) * V, (j * T + t + 1) * V);
          let m = -Infinity, arg = 0, z = 0;
          row.forEach((v, k) => v > m && ((m = v), (arg = k)));
          for (const v of row) z += Math.exp(v - m);
          hit += arg === y ? 1 : 0;
          prob += Math.exp(row[y] - m) / z;
          count++;
        }
      });
    }
    result[mode] = { accuracy: hit / count, prob: prob / count, n: count };
    console.log(`location words, ${mode.padEnd(10)}: accuracy ${(hit / count).toFixed(3)}, mean p(true word) ${(prob / count).toFixed(3)} (${count} words)`);
  }
  // Cost: explaining the words of one report vs a plain forward, same image.
  const tokens = Array.from(enc[0].labels.slice(0, Math.min(T - 1, 12)));
  const steps = tokens.map((_, i) => i).filter((i) => i >= 4 && i < 10);
  const time = async (f: () => Promise<unknown>, reps = 3) => {
    await f();
    const t0 = performance.now();
    for (let r = 0; r < reps; r++) await f();
    return (performance.now() - t0) / reps / 1000;
  };
  const fwd = await time(async () => {
    const image = fromData(pixels[0], [1, 3, S, S]), idsT = fromData(Int32Array.from(enc[0].input.slice(0, 12)), [1, 12], 'i32'), mask = decoderMask(new Float32Array(12).fill(1), 1, 12);
    const f = new Forward(w);
    const dec = decodeText(f, encodeImage(f, image).out, idsT, mask);
    await read(dec.logits);
    dispose(dec.logits, image, idsT, mask);
  });
  const ex = await time(() => explainSteps(w, pixels[0], tokens, steps, EXPLAIN_METHODS));
  console.log(`seconds: forward (batch 1) ${fwd.toFixed(3)}, explainSteps (${steps.length} words, all methods) ${ex.toFixed(3)} = ${(ex / fwd).toFixed(1)}× a forward`);
  console.log(`(bar-box / bar-random: ${tokensBarred.toFixed(1)} of 49 tokens barred per image on average)`);
  console.log(JSON.stringify({ bench: 'explain', images: test.length, location_words: result, tokens_barred: tokensBarred, seconds: { forward: fwd, explain: ex, ratio: ex / fwd, words: steps.length } }));
}
