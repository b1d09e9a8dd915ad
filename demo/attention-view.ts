// Drawing one word's cross-attention map onto the page's canvas with src/viz (the same row
// selection, bilinear upsampling, colour map and overlay as the CLI's PNG figures and the
// standalone attention page), its colour bar, and the word's expert routing.
import type { RGBImage } from '../src/data/images.ts';
import { type AttentionTrace, colormapLUT, type ColormapName, crossRow, type HeadSel, type LayerSel, minMax, modelView, overlayHeatmap, routingPerWord, upsample } from '../src/viz/index.ts';
import type { MicarConfig } from '../src/model/config.ts';
import { type ExplainMap, type ExplainMethod, inputGeometry } from '../src/viz/index.ts';

/** What the canvas shows right now (tests read it back). */
export interface RenderedMap {
  step: number;
  /** 'attention' (the trace's cross-attention) or an explanation method. */
  method: ExplainMethod;
  layer: LayerSel;
  head: HeadSel;
  /** The grid² attention row drawn. */
  row: number[];
  /** Colour scale: the upsampled map's min and max. */
  range: [number, number];
  alpha: number;
  size: number;
  colormap: ColormapName;
}

/** The image as the model sees it (resize + centre crop), scaled to `size` pixels for display. */
export function displayImage(original: RGBImage, cfg: MicarConfig, size: number): RGBImage {
  const geo = inputGeometry(cfg);
  return modelView(original, geo.resize, geo.crop, size);
}

function rgbToRgba(img: RGBImage): Uint8ClampedArray<ArrayBuffer> {
  const n = img.width * img.height, out = new Uint8ClampedArray(n * 4);
  for (let i = 0; i < n; i++) {
    out[4 * i] = img.data[3 * i];
    out[4 * i + 1] = img.data[3 * i + 1];
    out[4 * i + 2] = img.data[3 * i + 2];
    out[4 * i + 3] = 255;
  }
  return out;
}

/** Draws the plain display image (before any word is chosen). */
export function drawImage(canvas: HTMLCanvasElement, display: RGBImage): void {
  canvas.width = display.width;
  canvas.height = display.height;
  canvas.getContext('2d')!.putImageData(new ImageData(rgbToRgba(display) as Uint8ClampedArray<ArrayBuffer>, display.width, display.height), 0, 0);
}

/** Draws word `step`'s map for (layer, head) over the display image. */
export function drawAttention(canvas: HTMLCanvasElement, display: RGBImage, tr: AttentionTrace, step: number, layer: LayerSel, head: HeadSel, alpha: number, colormap: ColormapName): RenderedMap {
  const row = crossRow(tr, step, layer, head);
  const S = display.width;
  const map = upsample(row, tr.grid, tr.grid, S, S, 'bilinear');
  const range = minMax(map);
  const over = overlayHeatmap(display, map, { colormap, alpha, range });
  drawImage(canvas, over);
  return { step, method: 'attention', layer, head, row: Array.from(row), range, alpha, size: S, colormap };
}

/**
 * Draws an explanation map (src/viz/explain.ts) of word `step`: grad-attention per (layer, head)
 * or averaged; gradcam and saliency at their finer resolution; rollout on the grid.
 */
export function drawExplanation(canvas: HTMLCanvasElement, display: RGBImage, m: ExplainMap, layer: LayerSel, head: HeadSel, alpha: number, colormap: ColormapName): RenderedMap {
  const S = display.width;
  let row: ArrayLike<number> = m.grid, g = Math.round(Math.sqrt(m.grid.length)), vals: ArrayLike<number> = m.grid;
  if (m.perHead) {
    const ls = layer === 'avg' ? m.perHead.map((_, l) => l) : [layer], hs = head === 'avg' ? m.perHead[0].map((_, h) => h) : [head];
    const out = new Float64Array(m.grid.length);
    for (const l of ls) for (const h of hs) m.perHead[l][h].forEach((v, i) => (out[i] += v / (ls.length * hs.length)));
    row = vals = out;
  } else if (m.fine && m.fine.height === m.fine.width) {
    vals = m.fine.values;
    g = m.fine.height;
  }
  const map = upsample(vals, g, g, S, S, 'bilinear');
  const range = minMax(map);
  drawImage(canvas, overlayHeatmap(display, map, { colormap, alpha, range }));
  return { step: m.step, method: m.method, layer, head, row: Array.from(row), range, alpha, size: S, colormap };
}

/** A vertical colour bar (top = high) into a small canvas. */
export function drawLegend(canvas: HTMLCanvasElement, colormap: ColormapName): void {
  const lut = colormapLUT(colormap);
  const h = canvas.height, w = canvas.width, ctx = canvas.getContext('2d')!;
  for (let y = 0; y < h; y++) {
    const k = 3 * Math.round(((h - 1 - y) / Math.max(1, h - 1)) * 255);
    ctx.fillStyle = `rgb(${lut[k]},${lut[k + 1]},${lut[k + 2]})`;
    ctx.fillRect(0, y, w, 1);
  }
}

export function formatWeight(v: number): string {
  return v === 0 ? '0' : Math.abs(v) >= 0.001 && Math.abs(v) < 1000 ? String(Number(v.toPrecision(3))) : v.toExponential(2);
}

/** Rows "layer l: E3 (0.612), E0 (0.388)" for word `step`. */
export function routingRows(tr: AttentionTrace, step: number): { layer: number; text: string; experts: number[]; weights: number[] }[] {
  const r = routingPerWord(tr)[step];
  return r.layers.map((l, layer) => ({
    layer,
    experts: l.experts,
    weights: l.weights,
    text: l.experts.map((e, j) => `E${e} (${l.weights[j].toFixed(3)})`).join(', '),
  }));
}
