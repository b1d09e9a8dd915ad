// Attention visualisation: upsampling (vs a per-pixel float64 bilinear formula and the GPU
// resize op), unit mass of the maps, the traces (vs a full teacher-forced forward), figures and
// their legends (decoded back from PNG), the self-contained page (its inline drawing code vs the
// TypeScript), expert usage, and the `micar attention` command end to end. Tiny random models.
import { beforeAll, describe, expect, it } from 'vitest';
import { attentionCommand } from '../src/cli/viz.ts';
import { fromData, init, read, realize } from '../src/graph/runtime.ts';
import { resizeBilinear } from '../src/graph/ops/resize.ts';
import { normaliseConfig, type MicarConfig } from '../src/model/config.ts';
import { Weights } from '../src/model/weights.ts';
import { forward } from '../src/model/micar.ts';
import { beamSearch, generate } from '../src/generate/decode.ts';
import { Tokenizer } from '../src/data/tokenizer.ts';
import { generatePhantom } from '../src/data/phantom.ts';
import { decodePng, encodePng, type RGBImage } from '../src/data/images.ts';
import { preprocess } from '../src/data/preprocess.ts';
import { writeSafetensors } from '../src/io/safetensors.ts';
import {
  areaWeights, attentionDensity, attentionForPixels, type AttentionTrace, bilinearWeights, buildAttentionPageData,
  colormapLUT, colormapStops, crossRow, drawColorbar, expertUsage, formatValue, GRID, headLayerGridFigure, heatmapFigure, inputGeometry,
  loadModelCheckpoint, luminance, matrixFigure, minMax, overlayHeatmap, PAGE_CORE_JS, pageCrossRow, Raster, readTrace, renderAttentionPage,
  routingPerWord, selfRow, textWidth, traceTokens, upsample, usageShares,
} from '../src/viz/index.ts';
import { relL2, type Rng, rng } from './util.ts';
import { launchChromium, openPage, Pace, waitForState } from './browser-harness.ts';

declare const Deno: { makeTempDir(): Promise<string>; readFile(p: string): Promise<Uint8Array>; readDir(p: string): AsyncIterable<{ name: string }>; remove(p: string, o: { recursive: boolean }): Promise<void> };

beforeAll(async () => {
  await init();
});

const R = rng('viz');

/** PyTorch bilinear (align_corners=False), written per output pixel in float64. */
function bilinearRef(map: ArrayLike<number>, inH: number, inW: number, outH: number, outW: number): Float64Array {
  const out = new Float64Array(outH * outW);
  const coord = (o: number, inS: number, outS: number) => {
    const s = Math.max(0, ((o + 0.5) * inS) / outS - 0.5);
    const i0 = Math.min(Math.floor(s), inS - 1);
    return [i0, Math.min(i0 + 1, inS - 1), s - i0] as const;
  };
  for (let y = 0; y < outH; y++)
    for (let x = 0; x < outW; x++) {
      const [y0, y1, ly] = coord(y, inH, outH), [x0, x1, lx] = coord(x, inW, outW);
      const m = (r: number, c: number) => map[r * inW + c];
      out[y * outW + x] = (1 - ly) * ((1 - lx) * m(y0, x0) + lx * m(y0, x1)) + ly * ((1 - lx) * m(y1, x0) + lx * m(y1, x1));
    }
  return out;
}

function softmaxRow(R: Rng, n: number, temp = 1.5): Float64Array {
  const z = R.randn(n, temp), m = Math.max(...z);
  const e = z.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

const sum = (a: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i];
  return s;
};

describe('colour maps', () => {
  it('LUT passes through the 11 stops and lightness rises monotonically', () => {
    for (const name of ['viridis', 'inferno'] as const) {
      const lut = colormapLUT(name), stops = colormapStops(name);
      expect(Array.from(lut.subarray(0, 3))).toEqual(stops[0]);
      expect(Array.from(lut.subarray(255 * 3))).toEqual(stops[10]);
      // t = 0.5 falls between LUT entries 127 and 128: the stop lies between their values
      for (let c = 0; c < 3; c++) expect(Math.abs(lut[127 * 3 + c] - stops[5][c])).toBeLessThanOrEqual(2);
      let prev = -1;
      for (let i = 0; i < 256; i += 5) {
        const Y = luminance(lut[3 * i], lut[3 * i + 1], lut[3 * i + 2]);
        expect(Y).toBeGreaterThan(prev);
        prev = Y;
      }
    }
  });
});

describe('upsampling the 7×7 grid', () => {
  it('bilinear weights: the PyTorch formula per pixel, and the GPU resize op', async () => {
    expect(Array.from(bilinearWeights(2, 4))).toEqual([1, 0, 0.75, 0.25, 0.25, 0.75, 0, 1]);
    for (let trial = 0; trial < 4; trial++) {
      const S = R.int(8, 61), g = trial === 0 ? GRID : R.int(2, 9);
      const map = R.uniform(g * g, 0, 1);
      const up = upsample(map, g, g, S, S, 'bilinear');
      expect(relL2(up, bilinearRef(map, g, g, S, S))).toBeLessThan(1e-14);
      const w = bilinearWeights(g, S);
      for (let o = 0; o < S; o++) expect(Math.abs(sum(w.subarray(o * g, (o + 1) * g)) - 1)).toBeLessThan(1e-14);
      const gpu = (await read(resizeBilinear(fromData(Float32Array.from(map), [1, 1, g, g]), S, S))) as Float32Array;
      // f32 GPU kernel vs float64: the sample coordinate is computed in f32 (~1e-7 relative)
      expect(relL2(gpu, up)).toBeLessThan(1e-5);
    }
  });

  it('the 7×7 map upsampled to 7×7 is the row itself, bit for bit', () => {
    const row = Float32Array.from(softmaxRow(R, 49));
    const same = upsample(row, 7, 7, 7, 7);
    expect(Array.from(same)).toEqual(Array.from(row));
  });

  it('densities integrate to the row mass (1 for a softmax row), both modes, random sizes', () => {
    for (let trial = 0; trial < 6; trial++) {
      const S = R.int(7, 97), W = trial % 2 ? S : R.int(7, 97);
      const row = softmaxRow(R, 49);
      for (const mode of ['bilinear', 'area'] as const) {
        const d = attentionDensity(row, S, W, mode);
        expect(d.length).toBe(S * W);
        expect(Math.abs(sum(d) - 1)).toBeLessThan(1e-12);
        expect(Math.min(...d)).toBeGreaterThanOrEqual(0);
      }
      // bilinear density is the displayed map times one constant
      const disp = upsample(row, 7, 7, S, W), d = attentionDensity(row, S, W);
      const k = d[0] / disp[0];
      expect(relL2(d, disp.map((v) => v * k))).toBeLessThan(1e-14);
    }
  });

  it('area mode puts each cell\'s mass on its footprint [c·S/7, (c+1)·S/7)', () => {
    const S = R.int(8, 70), r = R.int(0, 6), c = R.int(0, 6);
    const row = new Float64Array(49);
    row[r * 7 + c] = 1;
    const d = attentionDensity(row, S, S, 'area');
    const cover = (p: number, i: number) => Math.max(0, Math.min(p + 1, ((i + 1) * S) / 7) - Math.max(p, (i * S) / 7));
    const cell = (S / 7) * (S / 7);
    for (let y = 0; y < S; y++) for (let x = 0; x < S; x++) expect(Math.abs(d[y * S + x] - (cover(y, r) * cover(x, c)) / cell)).toBeLessThan(1e-12);
    const wa = areaWeights(7, S);
    for (let i = 0; i < 7; i++) expect(Math.abs(Array.from({ length: S }, (_, o) => wa[o * 7 + i]).reduce((a, b) => a + b) - 1)).toBeLessThan(1e-12);
  });
});

// ---------------------------------------------------------------------------------------------
// A tiny random model with a phantom-report vocabulary.

function tinyModel(seed: number): { cfg: MicarConfig; tok: Tokenizer; w: Weights } {
  const reports = generatePhantom({ count: 60, seed: 7, size: 16 }).map((s) => s.report);
  const tok = Tokenizer.build(reports, 1, 'whitespace');
  const cfg = normaliseConfig({
    backbone: 'resnet10', image_size: 32, resize_size: 36, d_v: 16, d_model: 32, d_latent: 48, num_heads: 4, qk_nope_dim: 4, qk_rope_dim: 8,
    d_ff: 64, num_layers: 2, num_experts: 4, k: 2, act_fn: 'silu', moe_mode: 'weighted', text_seq_len: 10, vocab_size: tok.vocabSize,
    dropout: 0, attention_dropout: 0,
  }, 'viz test config');
  return { cfg, tok, w: Weights.init(cfg, seed) };
}

function randomPicture(R: Rng, w: number, h: number): RGBImage {
  const data = new Uint8Array(w * h * 3);
  const fx = 1 + R.next() * 3, fy = 1 + R.next() * 3;
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let c = 0; c < 3; c++) data[3 * (y * w + x) + c] = Math.round(127 + 120 * Math.sin(fx * x / w * 6 + c) * Math.cos(fy * y / h * 6));
  return { width: w, height: h, data };
}

describe('traces of a tiny model', () => {
  let cfg: MicarConfig, tok: Tokenizer, w: Weights, S: number, L: number, H: number, pixels: Float32Array, tr: AttentionTrace;
  beforeAll(() => {
    ({ cfg, tok, w } = tinyModel(R.int(1, 1 << 30)));
    [S, L, H] = [cfg.image_size, cfg.num_layers, cfg.num_heads];
    pixels = Float32Array.from(R.randn(3 * S * S));
  });

  it('greedy trace equals a full teacher-forced forward: cross rows, self rows, expert routing', async () => {
    const image = fromData(pixels, [1, 3, S, S]);
    const r = await generate(w, image, { trace: true, maxLen: 7 });
    tr = await readTrace(r.traces, r.tokens[0], cfg);
    const T = tr.tokens.length;
    expect(T).toBeGreaterThan(0);
    const input = Int32Array.from([cfg.sos_id, ...tr.tokens.slice(0, T - 1)]);
    const out = forward(w, { image, inputIds: fromData(input, [1, T], 'i32'), labelIds: fromData(new Int32Array(T), [1, T], 'i32'), padMask: new Int32Array(T).fill(1) }, { keepAttention: true });
    let crossErr = 0, selfErr = 0;
    await realize(out.dec.layers.flatMap((d) => [d.cross!, d.self!, d.moe.indices, d.moe.weights]));
    for (let l = 0; l < L; l++) {
      const cross = (await read(out.dec.layers[l].cross!)) as Float32Array; // [1,H,T,49]
      const self = (await read(out.dec.layers[l].self!)) as Float32Array; // [1,H,T,T]
      const idx = (await read(out.dec.layers[l].moe.indices)) as Int32Array; // [T,k]
      const wts = (await read(out.dec.layers[l].moe.weights)) as Float32Array;
      for (let t = 0; t < T; t++) {
        for (let h = 0; h < H; h++) {
          const refC = cross.subarray((h * T + t) * 49, (h * T + t + 1) * 49);
          crossErr = Math.max(crossErr, relL2(crossRow(tr, t, l, h), refC));
          const refS = self.subarray((h * T + t) * T, (h * T + t) * T + t + 1);
          selfErr = Math.max(selfErr, relL2(selfRow(tr, t, l, h), refS));
          // masked (future) positions of the full forward hold no mass
          expect(sum(self.subarray((h * T + t) * T + t + 1, (h * T + t + 1) * T))).toBeLessThan(1e-6);
        }
        expect(tr.experts[t][l].indices).toEqual(Array.from(idx.subarray(t * cfg.k, (t + 1) * cfg.k)));
        expect(relL2(tr.experts[t][l].weights, wts.subarray(t * cfg.k, (t + 1) * cfg.k))).toBeLessThan(1e-5);
      }
    }
    console.log(`trace vs full forward over ${T} steps: cross relL2 ≤ ${crossErr.toExponential(2)}, self ≤ ${selfErr.toExponential(2)}`);
    // different kernels (cached single-row vs full attention): f32 rounding only
    expect(crossErr).toBeLessThan(1e-5);
    expect(selfErr).toBeLessThan(1e-5);
  });

  it('each (layer, head) row is a distribution; its upsampled density integrates to 1; averages are exact means', () => {
    const T = tr.tokens.length;
    for (let t = 0; t < T; t++) {
      for (let l = 0; l < L; l++)
        for (let h = 0; h < H; h++) {
          const row = crossRow(tr, t, l, h);
          // crossRow of one (layer, head) is the stored f32 row itself
          expect(Array.from(row)).toEqual(Array.from(tr.cross[t][l].subarray(h * 49, (h + 1) * 49)));
          expect(Math.abs(sum(row) - 1)).toBeLessThan(1e-6);
          const S2 = 3 + ((t * 7 + l * 3 + h) % 50);
          for (const mode of ['bilinear', 'area'] as const) expect(Math.abs(sum(attentionDensity(row, S2, S2, mode)) - sum(row))).toBeLessThan(1e-12);
        }
      const avg = crossRow(tr, t);
      const manual = new Float64Array(49);
      for (let l = 0; l < L; l++) for (let h = 0; h < H; h++) for (let i = 0; i < 49; i++) manual[i] += tr.cross[t][l][h * 49 + i] / (L * H);
      expect(relL2(avg, manual)).toBeLessThan(1e-15);
      const layer0 = crossRow(tr, t, 0, 'avg'), head1 = crossRow(tr, t, 'avg', 1);
      expect(relL2(layer0, Float64Array.from({ length: 49 }, (_, i) => Array.from({ length: H }, (_, h) => tr.cross[t][0][h * 49 + i]).reduce((a, b) => a + b) / H))).toBeLessThan(1e-15);
      expect(relL2(head1, Float64Array.from({ length: 49 }, (_, i) => Array.from({ length: L }, (_, l) => tr.cross[t][l][49 + i]).reduce((a, b) => a + b) / L))).toBeLessThan(1e-15);
    }
  });

  it('teacher-forced traceTokens reproduces the generation trace; beam path re-traces the best hypothesis', async () => {
    const image = fromData(pixels, [1, 3, S, S]);
    const tf = await readTrace(await traceTokens(w, image, tr.tokens), tr.tokens, cfg);
    for (let t = 0; t < tr.tokens.length; t++)
      for (let l = 0; l < L; l++) {
        expect(relL2(tf.cross[t][l], tr.cross[t][l])).toBeLessThan(1e-6);
        expect(relL2(tf.self[t][l], tr.self[t][l])).toBeLessThan(1e-6);
        expect(tf.experts[t][l].indices).toEqual(tr.experts[t][l].indices);
      }
    const [best] = (await beamSearch(w, image, { beamWidth: 2, maxLen: 5, nBest: 1 }))[0];
    const bt = await attentionForPixels(w, pixels, { beam: 2, maxLen: 5 });
    expect(bt.tokens).toEqual(best.tokens);
    expect(bt.cross.length).toBe(best.tokens.length);
  });

  it('expert usage counts every routing slot; routingPerWord lists them per word', () => {
    const u = expertUsage([tr, tr]);
    const T = tr.tokens.length;
    expect(u.tokens).toBe(2 * T);
    for (let l = 0; l < L; l++) {
      expect(u.counts[l].reduce((a, b) => a + b)).toBe(2 * T * cfg.k);
      for (let e = 0; e < cfg.num_experts; e++) {
        let n = 0, ws = 0;
        for (let t = 0; t < T; t++) tr.experts[t][l].indices.forEach((x, j) => { if (x === e) { n += 2; ws += 2 * tr.experts[t][l].weights[j]; } });
        expect(u.counts[l][e]).toBe(n);
        expect(Math.abs(u.weightSums[l][e] - ws)).toBeLessThan(1e-9);
      }
      expect(Math.abs(usageShares(u)[l].reduce((a, b) => a + b) - 1)).toBeLessThan(1e-12);
    }
    // stop at the first <eos> when asked
    const withEos: AttentionTrace = { ...tr, tokens: tr.tokens.map((x, t) => (t === 1 ? cfg.eos_id : x)) };
    if (T > 2) expect(expertUsage([withEos], { eosId: cfg.eos_id }).tokens).toBe(2);
    const r = routingPerWord(tr);
    expect(r.length).toBe(T);
    expect(r[T - 1].layers[L - 1].experts).toEqual(tr.experts[T - 1][L - 1].indices);
  });

  it('figures: overlay colours, colour bar and its min/max labels, head grid, self-attention matrix (decoded from PNG)', () => {
    const D = R.int(40, 90);
    const base = randomPicture(R, D, D);
    const row = crossRow(tr, 0);
    const fig = heatmapFigure(base, row, { title: 'x' });
    const png = decodePng(encodePng(fig.image));
    expect(png.width).toBe(fig.image.width);
    const map = upsample(row, 7, 7, D, D), [lo, hi] = minMax(map);
    expect(fig.range).toEqual([lo, hi]);
    const lut = colormapLUT('viridis');
    const pad = 6, titleH = 7 + pad; // scale 1 below 160 px
    for (let k = 0; k < 20; k++) {
      const x = R.int(0, D - 1), y = R.int(0, D - 1);
      const li = 3 * Math.max(0, Math.min(255, Math.round(((map[y * D + x] - lo) / (hi - lo)) * 255)));
      for (let c = 0; c < 3; c++) {
        const want = Math.round(0.4 * base.data[3 * (y * D + x) + c] + 0.6 * lut[li + c]);
        expect(png.data[3 * ((y + pad + titleH) * png.width + x + pad) + c]).toBe(want);
      }
    }
    // colour bar: top row is the top of the map, bottom row the bottom; labels drawn beside it
    const bx = 2 * pad + D, by = pad + titleH;
    expect(Array.from(png.data.subarray(3 * (by * png.width + bx), 3 * (by * png.width + bx) + 3))).toEqual(Array.from(lut.subarray(765)));
    const yb = by + D - 1;
    expect(Array.from(png.data.subarray(3 * (yb * png.width + bx), 3 * (yb * png.width + bx) + 3))).toEqual(Array.from(lut.subarray(0, 3)));
    // the max label is the text formatValue(hi): render it alone and compare the pixels
    const label = new Raster(textWidth(formatValue(hi)), 7);
    label.text(formatValue(hi), 0, 0);
    const lx = bx + 12 + 4;
    for (let yy = 0; yy < 7; yy++)
      for (let xx = 0; xx < label.width; xx++) expect(png.data[3 * ((by + yy) * png.width + lx + xx)]).toBe(label.data[3 * (yy * label.width + xx)]);
    expect(label.data.some((v) => v === 0)).toBe(true);

    const tile = randomPicture(R, 20, 20);
    const maps = tr.cross[0].map((a) => Array.from({ length: H }, (_, h) => a.subarray(h * 49, (h + 1) * 49)));
    const grid = headLayerGridFigure(tile, maps);
    expect(grid.width).toBeGreaterThan((H + 1) * 20);
    expect(grid.height).toBeGreaterThan((L + 1) * 20);

    const T = tr.tokens.length, words = tr.tokens.map((id) => tok.tokens[id]);
    const rows = Array.from({ length: T }, (_, t) => selfRow(tr, t));
    const m = matrixFigure(rows, words, ['<sos>', ...words.slice(0, -1)], { cell: 10 });
    const mhi = Math.max(...rows.flatMap((r) => Array.from(r)));
    const rowW = Math.max(...words.map((s) => textWidth(s))) + 8, colH = Math.max(...['<sos>', ...words.slice(0, -1)].map((s) => textWidth(s))) + 8;
    for (let i = 0; i < T; i++)
      for (let j = 0; j <= i; j++) {
        const px = 3 * ((colH + i * 10 + 3) * m.width + rowW + j * 10 + 3);
        const li = 3 * Math.round((rows[i][j] / mhi) * 255);
        expect(Array.from(m.data.subarray(px, px + 3))).toEqual(Array.from(lut.subarray(li, li + 3)));
      }
  });

  it('overlay and colour bar are plain functions of the inputs', () => {
    const base = randomPicture(R, 9, 5);
    const vals = R.uniform(45, 0, 1);
    const o = overlayHeatmap(base, vals, { alpha: 0.25, colormap: 'inferno', range: [0.2, 0.8] });
    const lut = colormapLUT('inferno');
    for (let i = 0; i < 45; i++) {
      const k = 3 * Math.max(0, Math.min(255, Math.round(((vals[i] - 0.2) / 0.6) * 255)));
      for (let c = 0; c < 3; c++) expect(o.data[3 * i + c]).toBe(Math.round(0.75 * base.data[3 * i + c] + 0.25 * lut[k + c]));
    }
    const r = new Raster(60, 40);
    const used = drawColorbar(r, 2, 2, 30, 0.125, 0.5, 'inferno');
    expect(used).toBe(12 + 4 + Math.max(textWidth('0.5'), textWidth('0.125')));
    expect(formatValue(0.000123)).toBe('1.23e-4');
    expect(formatValue(0.0421234)).toBe('0.0421');
  });

  it('page: self-contained HTML whose inline drawing code matches heatmap.ts and whose data is the trace', () => {
    const D = 50;
    const display = randomPicture(R, D, D);
    const data = buildAttentionPageData(tr, tok.tokens, display, { usage: expertUsage([tr]) });
    const html = renderAttentionPage(data);
    expect(html).not.toMatch(/<link\b|src="(?!data:)|href="http|@import|url\(http/);
    expect(html).toContain('id="micar-data"');
    const json = JSON.parse(/<script type="application\/json" id="micar-data">([\s\S]*?)<\/script>/.exec(html)![1]);
    expect(json.words).toEqual(tr.tokens.map((id) => tok.tokens[id]));
    for (let t = 0; t < tr.tokens.length; t++)
      for (let l = 0; l < L; l++)
        for (let h = 0; h < H; h++) expect(Float32Array.from(json.cross[t][l][h])).toEqual(tr.cross[t][l].subarray(h * 49, (h + 1) * 49));
    expect(json.image.startsWith('data:image/png;base64,')).toBe(true);
    // the inlined base image decodes to the display picture
    const bytes = Uint8Array.from(atob(json.image.slice(22)), (ch) => ch.charCodeAt(0));
    expect(decodePng(bytes).data).toEqual(display.data);
    // evaluate the page's drawing core exactly as the browser gets it
    const core = new Function(PAGE_CORE_JS + '\nreturn micarVizCore();')() as {
      upsample(m: ArrayLike<number>, g: number, n: number): Float64Array;
      colorize(base: Uint8ClampedArray, v: ArrayLike<number>, lut: number[], lo: number, hi: number, a: number): Uint8ClampedArray;
      meanRow(p: number[][][], l: number | 'avg', h: number | 'avg'): number[];
    };
    const t = tr.tokens.length - 1;
    for (const [l, h] of [['avg', 'avg'], [0, 'avg'], ['avg', H - 1], [L - 1, 0]] as const) {
      const row = core.meanRow(json.cross[t], l, h);
      // the page stores each f32 with 9 significant digits (the same f32, checked above), so its
      // float64 means differ from those of the exact f32 values only by that printing (< 1e-8)
      expect(relL2(row, crossRow(tr, t, l, h))).toBeLessThan(1e-8);
      expect(relL2(pageCrossRow(data, t, l, h), row)).toBeLessThan(1e-15);
      const up = core.upsample(row, 7, D);
      expect(relL2(up, upsample(row, 7, 7, D, D))).toBeLessThan(1e-15);
      const rgba = new Uint8ClampedArray(D * D * 4);
      for (let i = 0; i < D * D; i++) for (let c = 0; c < 4; c++) rgba[4 * i + c] = c < 3 ? display.data[3 * i + c] : 255;
      const [lo, hi] = minMax(up);
      const px = core.colorize(rgba, up, json.lut, lo, hi, 0.6);
      const ts = overlayHeatmap(display, up, { alpha: 0.6 });
      for (let i = 0; i < D * D; i++) for (let c = 0; c < 3; c++) expect(px[4 * i + c]).toBe(ts.data[3 * i + c]);
    }
    expect(json.usage.counts).toEqual(expertUsage([tr]).counts);
    expect(json.figures[0].name).toBe('self-attention');
  });

  it('micar attention: checkpoint + image → PNGs and one page; numbers match a direct run', async () => {
    const dir = await Deno.makeTempDir();
    try {
      const sd = await w.toStateDict();
      const ckpt = writeSafetensors(sd, { format: 'micar-checkpoint/1', config: JSON.stringify(cfg), tokenizer: JSON.stringify(tok.toJSON()) });
      const { writeFileAtomic } = await import('../src/io/files.ts');
      await writeFileAtomic(`${dir}/ck.safetensors`, ckpt);
      const picture = randomPicture(R, R.int(40, 64), R.int(40, 64));
      await writeFileAtomic(`${dir}/img.png`, encodePng(picture));
      const loaded = await loadModelCheckpoint(`${dir}/ck.safetensors`);
      expect(loaded.tokenizer.tokens).toEqual(tok.tokens);
      await attentionCommand(['--checkpoint', `${dir}/ck.safetensors`, '--image', `${dir}/img.png`, '--out', `${dir}/out`, '--max-len', '4', '--size', '64']);
      const names: string[] = [];
      for await (const e of Deno.readDir(`${dir}/out`)) names.push(e.name);
      const routing = JSON.parse(new TextDecoder().decode(await Deno.readFile(`${dir}/out/routing.json`)));
      const T = routing.words.length;
      expect(T).toBeGreaterThan(0);
      expect(names.filter((n) => /^word_\d+_.*(?<!_heads)\.png$/.test(n)).length).toBe(T);
      expect(names.filter((n) => /_heads\.png$/.test(n)).length).toBe(T);
      for (const n of ['image.png', 'self_attention.png', 'attention.html', 'routing.json']) expect(names).toContain(n);
      const img = decodePng(await Deno.readFile(`${dir}/out/image.png`));
      expect([img.width, img.height]).toEqual([64, 64]);
      // same image through the API gives the same report and routing
      const direct = await attentionForPixels(loaded.weights, preprocess(picture, inputGeometry(cfg)), { maxLen: 4 });
      expect(routing.words).toEqual(direct.tokens.map((id) => tok.tokens[id]));
      expect(routing.routing.map((r: { layers: { experts: number[] }[] }) => r.layers.map((x) => x.experts))).toEqual(direct.experts.map((ls) => ls.map((e) => e.indices)));
      const html = new TextDecoder().decode(await Deno.readFile(`${dir}/out/attention.html`));
      const json = JSON.parse(/<script type="application\/json" id="micar-data">([\s\S]*?)<\/script>/.exec(html)![1]);
      expect(relL2(json.cross[0][0][0], direct.cross[0][0].subarray(0, 49))).toBeLessThan(1e-6);
      await expect(attentionCommand(['--checkpoint', `${dir}/ck.safetensors`, '--out', `${dir}/o2`])).rejects.toThrow(/micar attention: missing --image/);

      // the page in Chromium: no errors; hovering the last word with layer 0 / head 1 selected
      // draws exactly the overlay heatmap.ts computes for that row
      const chrome = await launchChromium();
      try {
        const { page, problems, loadMs } = await openPage(chrome.browser, `file://${dir}/out/attention.html`, 'attention page');
        // (a static page: its script draws once the image has decoded; 20 load times, at least 10 s)
        await waitForState(page, 'the page to draw its first map (#hi filled in)', new Pace(loadMs, 'the page\'s load').budget(20), () => document.getElementById('hi')!.textContent !== '');
        await page.select('#layer', '0');
        await page.select('#head', '1');
        await page.hover(`#words .w:nth-child(${T})`);
        const got = await page.evaluate(() => {
          const c = document.getElementById('map') as HTMLCanvasElement;
          return { caption: document.getElementById('caption')!.textContent, hi: document.getElementById('hi')!.textContent, px: Array.from(c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data) };
        });
        expect(problems).toEqual([]);
        const t = T - 1, row = crossRow(direct, t, 0, 1), up = upsample(row, 7, 7, 64, 64);
        expect(got.caption).toBe(`word ${t}: "${routing.words[t]}" (layer 0, head 1)`);
        expect(got.hi).toBe(formatValue(minMax(up)[1]));
        const want = overlayHeatmap(img, up, { alpha: 0.6 });
        let maxDiff = 0;
        for (let i = 0; i < 64 * 64; i++) for (let c = 0; c < 3; c++) maxDiff = Math.max(maxDiff, Math.abs(got.px[4 * i + c] - want.data[3 * i + c]));
        // the page's weights are the f32 values printed to 9 digits: a LUT index can flip at a boundary
        expect(maxDiff).toBeLessThanOrEqual(1);
      } finally {
        await chrome.close();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});
