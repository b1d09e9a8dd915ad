// RGB rasters for the attention figures: a 5×7 bitmap font for labels, heat-map figures with a
// colour bar (min/max), head×layer grids, the labelled self-attention matrix, PNG encoding and
// data URLs. Pure JS (fast-png through data/images.ts): Deno and browsers alike.
import { encodePng, type RGBImage } from '../data/images.ts';
import { centerCropOffset, resizedSize, resizePil } from '../data/preprocess.ts';
import { colormapLUT, type ColormapName, lutIndex } from './colormap.ts';
import { GRID, minMax, overlayHeatmap, upsample } from './heatmap.ts';

export type RGB = readonly [number, number, number];

// 5×7 glyphs, rows top to bottom; upper case draws as lower case.
const GLYPHS: Record<string, string> = {
  '0': '.###.|#...#|#..##|#.#.#|##..#|#...#|.###.', '1': '..#..|.##..|..#..|..#..|..#..|..#..|.###.',
  '2': '.###.|#...#|....#|...#.|..#..|.#...|#####', '3': '#####|...#.|..#..|...#.|....#|#...#|.###.',
  '4': '...#.|..##.|.#.#.|#..#.|#####|...#.|...#.', '5': '#####|#....|####.|....#|....#|#...#|.###.',
  '6': '..##.|.#...|#....|####.|#...#|#...#|.###.', '7': '#####|....#|...#.|..#..|.#...|.#...|.#...',
  '8': '.###.|#...#|#...#|.###.|#...#|#...#|.###.', '9': '.###.|#...#|#...#|.####|....#|...#.|.##..',
  a: '.....|.....|.###.|....#|.####|#...#|.####', b: '#....|#....|#.##.|##..#|#...#|#...#|####.',
  c: '.....|.....|.###.|#....|#....|#...#|.###.', d: '....#|....#|.##.#|#..##|#...#|#...#|.####',
  e: '.....|.....|.###.|#...#|#####|#....|.###.', f: '..##.|.#..#|.#...|###..|.#...|.#...|.#...',
  g: '.....|.####|#...#|#...#|.####|....#|.###.', h: '#....|#....|#.##.|##..#|#...#|#...#|#...#',
  i: '..#..|.....|.##..|..#..|..#..|..#..|.###.', j: '...#.|.....|..##.|...#.|...#.|#..#.|.##..',
  k: '#....|#....|#..#.|#.#..|##...|#.#..|#..#.', l: '.##..|..#..|..#..|..#..|..#..|..#..|.###.',
  m: '.....|.....|##.#.|#.#.#|#.#.#|#...#|#...#', n: '.....|.....|#.##.|##..#|#...#|#...#|#...#',
  o: '.....|.....|.###.|#...#|#...#|#...#|.###.', p: '.....|.....|####.|#...#|####.|#....|#....',
  q: '.....|.....|.##.#|#..##|.####|....#|....#', r: '.....|.....|#.##.|##..#|#....|#....|#....',
  s: '.....|.....|.###.|#....|.###.|....#|####.', t: '.#...|.#...|###..|.#...|.#...|.#..#|..##.',
  u: '.....|.....|#...#|#...#|#...#|#..##|.##.#', v: '.....|.....|#...#|#...#|#...#|.#.#.|..#..',
  w: '.....|.....|#...#|#...#|#.#.#|#.#.#|.#.#.', x: '.....|.....|#...#|.#.#.|..#..|.#.#.|#...#',
  y: '.....|.....|#...#|#...#|.####|....#|.###.', z: '.....|.....|#####|...#.|..#..|.#...|#####',
  '.': '.....|.....|.....|.....|.....|.##..|.##..', ',': '.....|.....|.....|.....|.##..|..#..|.#...',
  '-': '.....|.....|.....|#####|.....|.....|.....', '+': '.....|..#..|..#..|#####|..#..|..#..|.....',
  ':': '.....|.##..|.##..|.....|.##..|.##..|.....', '/': '.....|....#|...#.|..#..|.#...|#....|.....',
  '<': '...#.|..#..|.#...|#....|.#...|..#..|...#.', '>': '.#...|..#..|...#.|....#|...#.|..#..|.#...',
  _: '.....|.....|.....|.....|.....|.....|#####', '(': '...#.|..#..|.#...|.#...|.#...|..#..|...#.',
  ')': '.#...|..#..|...#.|...#.|...#.|..#..|.#...', '=': '.....|.....|#####|.....|#####|.....|.....',
  "'": '..#..|..#..|.#...|.....|.....|.....|.....', '%': '##...|##..#|...#.|..#..|.#...|#..##|...##',
  '[': '.###.|.#...|.#...|.#...|.#...|.#...|.###.', ']': '.###.|...#.|...#.|...#.|...#.|...#.|.###.',
  '?': '.###.|#...#|....#|...#.|..#..|.....|..#..', '#': '.#.#.|.#.#.|#####|.#.#.|#####|.#.#.|.#.#.',
  '!': '..#..|..#..|..#..|..#..|..#..|.....|..#..', '*': '.....|..#..|#.#.#|.###.|#.#.#|..#..|.....',
  ' ': '.....|.....|.....|.....|.....|.....|.....',
};
const UNKNOWN = '#####|#...#|#...#|#...#|#...#|#...#|#####';
const GLYPH_W = 5, GLYPH_H = 7, ADVANCE = 6;
const glyphBits = new Map<string, boolean[]>();
function glyph(ch: string): boolean[] {
  const key = ch.toLowerCase();
  let g = glyphBits.get(key);
  if (!g) {
    g = (GLYPHS[key] ?? UNKNOWN).replace(/\|/g, '').split('').map((c) => c === '#');
    glyphBits.set(key, g);
  }
  return g;
}

export const WHITE: RGB = [255, 255, 255], BLACK: RGB = [0, 0, 0], GREY: RGB = [110, 110, 110];

export class Raster {
  readonly data: Uint8Array;
  constructor(readonly width: number, readonly height: number, bg: RGB = WHITE) {
    if (!(width >= 1 && height >= 1) || !Number.isInteger(width) || !Number.isInteger(height)) throw new Error(`Raster: bad size ${width}×${height}`);
    this.data = new Uint8Array(width * height * 3);
    this.fillRect(0, 0, width, height, bg);
  }

  setPixel(x: number, y: number, c: RGB): void {
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return;
    const i = 3 * (y * this.width + x);
    this.data[i] = c[0];
    this.data[i + 1] = c[1];
    this.data[i + 2] = c[2];
  }

  fillRect(x: number, y: number, w: number, h: number, c: RGB): void {
    for (let yy = Math.max(0, y); yy < Math.min(this.height, y + h); yy++)
      for (let xx = Math.max(0, x); xx < Math.min(this.width, x + w); xx++) this.setPixel(xx, yy, c);
  }

  strokeRect(x: number, y: number, w: number, h: number, c: RGB): void {
    this.fillRect(x, y, w, 1, c);
    this.fillRect(x, y + h - 1, w, 1, c);
    this.fillRect(x, y, 1, h, c);
    this.fillRect(x + w - 1, y, 1, h, c);
  }

  blit(img: RGBImage, x: number, y: number): void {
    for (let yy = 0; yy < img.height; yy++)
      for (let xx = 0; xx < img.width; xx++) {
        const i = 3 * (yy * img.width + xx);
        this.setPixel(x + xx, y + yy, [img.data[i], img.data[i + 1], img.data[i + 2]]);
      }
  }

  /** Draws text with its top-left at (x, y); returns the width drawn. */
  text(s: string, x: number, y: number, c: RGB = BLACK, scale = 1): number {
    let cx = x;
    for (const ch of s) {
      const g = glyph(ch);
      for (let gy = 0; gy < GLYPH_H; gy++)
        for (let gx = 0; gx < GLYPH_W; gx++) if (g[gy * GLYPH_W + gx]) this.fillRect(cx + gx * scale, y + gy * scale, scale, scale, c);
      cx += ADVANCE * scale;
    }
    return cx - x;
  }

  /** Text rotated 90° counter-clockwise (reads bottom to top), its bounding box's top-left at (x, y). */
  textUp(s: string, x: number, y: number, c: RGB = BLACK, scale = 1): void {
    const w = textWidth(s, scale), h = textHeight(scale);
    const tmp = new Raster(Math.max(1, w), h, WHITE);
    tmp.text(s, 0, 0, BLACK, scale);
    for (let ty = 0; ty < h; ty++)
      for (let tx = 0; tx < w; tx++) if (tmp.data[3 * (ty * w + tx)] === 0) this.setPixel(x + ty, y + (w - 1 - tx), c);
  }

  toImage(): RGBImage {
    return { width: this.width, height: this.height, data: this.data };
  }

  toPng(): Uint8Array {
    return encodePng(this.toImage());
  }
}

export function textWidth(s: string, scale = 1): number {
  return [...s].length * ADVANCE * scale;
}
export function textHeight(scale = 1): number {
  return GLYPH_H * scale;
}

/** Short number for legends: 3 significant digits, exponent form when small. */
export function formatValue(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 0.001 && a < 1000) return Number(v.toPrecision(3)).toString();
  return v.toExponential(2);
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
export function base64(bytes: Uint8Array): string {
  let out = '';
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out += B64[n >> 18] + B64[(n >> 12) & 63] + B64[(n >> 6) & 63] + B64[n & 63];
  }
  if (i < bytes.length) {
    const n = (bytes[i] << 16) | ((bytes[i + 1] ?? 0) << 8);
    out += B64[n >> 18] + B64[(n >> 12) & 63] + (i + 1 < bytes.length ? B64[(n >> 6) & 63] : '=') + '=';
  }
  return out;
}

export function pngDataUrl(png: Uint8Array): string {
  return 'data:image/png;base64,' + base64(png);
}

/** Bilinear (PIL, antialiased) resize of an RGB image. */
export function resizeRGB(img: RGBImage, width: number, height: number): RGBImage {
  if (img.width === width && img.height === height) return img;
  return resizePil(img, height, width);
}

/**
 * What the model sees, at `displaySize` pixels: the original image resized (shorter side →
 * resize·k) and centre-cropped (crop·k) like preprocessing with k = displaySize / crop, so display
 * pixel (x, y) is model-input pixel (x / k, y / k). Zero padding where the crop exceeds the image.
 */
export function modelView(img: RGBImage, resize: number, crop: number, displaySize: number): RGBImage {
  const [rh, rw] = resizedSize(img.height, img.width, resize);
  const k = displaySize / crop;
  const H = Math.max(1, Math.round(rh * k)), W = Math.max(1, Math.round(rw * k));
  const big = resizeRGB(img, W, H);
  const top = Math.round(centerCropOffset(rh, crop) * k), left = Math.round(centerCropOffset(rw, crop) * k);
  const out = new Uint8Array(displaySize * displaySize * 3);
  for (let y = 0; y < displaySize; y++)
    for (let x = 0; x < displaySize; x++) {
      const sy = y + top, sx = x + left;
      if (sy < 0 || sx < 0 || sy >= H || sx >= W) continue;
      for (let c = 0; c < 3; c++) out[3 * (y * displaySize + x) + c] = big.data[3 * (sy * W + sx) + c];
    }
  return { width: displaySize, height: displaySize, data: out };
}

/** Draws a vertical colour bar (top = hi) with its min/max labels to the right. Returns the width used. */
export function drawColorbar(r: Raster, x: number, y: number, h: number, lo: number, hi: number, colormap: ColormapName = 'viridis', scale = 1): number {
  const lut = colormapLUT(colormap), barW = 12 * scale;
  for (let yy = 0; yy < h; yy++) {
    const k = 3 * Math.round(((h - 1 - yy) / Math.max(1, h - 1)) * 255);
    r.fillRect(x, y + yy, barW, 1, [lut[k], lut[k + 1], lut[k + 2]]);
  }
  r.strokeRect(x - 1, y - 1, barW + 2, h + 2, GREY);
  const hiS = formatValue(hi), loS = formatValue(lo);
  r.text(hiS, x + barW + 4, y, BLACK, scale);
  r.text(loS, x + barW + 4, y + h - textHeight(scale), BLACK, scale);
  return barW + 4 + Math.max(textWidth(hiS, scale), textWidth(loS, scale));
}

export interface HeatmapFigureOptions {
  colormap?: ColormapName;
  alpha?: number;
  title?: string;
  /** Colour scale (default: the displayed map's min/max). */
  range?: [number, number];
  grid?: number;
}

/**
 * The attention row (grid² weights) bilinearly upsampled to `base` and overlaid, with a title and
 * a colour bar labelled with the displayed map's min and max (attention weight per grid cell).
 */
export function heatmapFigure(base: RGBImage, row: ArrayLike<number>, opts: HeatmapFigureOptions = {}): { image: RGBImage; range: [number, number] } {
  const g = opts.grid ?? GRID;
  const map = upsample(row, g, g, base.height, base.width, 'bilinear');
  const range = opts.range ?? minMax(map);
  const over = overlayHeatmap(base, map, { colormap: opts.colormap, alpha: opts.alpha, range });
  const s = base.width >= 160 ? 2 : 1, pad = 6 * s, titleH = opts.title ? textHeight(s) + pad : 0;
  const legendW = 12 * s + 4 + textWidth('0.000e-00', s) + pad;
  const r = new Raster(Math.max(base.width + 2 * pad + legendW, opts.title ? textWidth(opts.title, s) + 2 * pad : 0), base.height + 2 * pad + titleH);
  if (opts.title) r.text(opts.title, pad, pad, BLACK, s);
  r.blit(over, pad, pad + titleH);
  drawColorbar(r, pad * 2 + base.width, pad + titleH, base.height, range[0], range[1], opts.colormap, s);
  return { image: r.toImage(), range };
}

/**
 * Grid of overlays: rows = layers then "avg", columns = heads then "avg" (maps[l][h] are rows of
 * grid² weights; the averages are computed here), one shared colour scale and colour bar.
 */
export function headLayerGridFigure(base: RGBImage, maps: ArrayLike<number>[][], opts: HeatmapFigureOptions = {}): RGBImage {
  const g = opts.grid ?? GRID;
  const L = maps.length, H = maps[0]?.length ?? 0;
  if (!L || !H) throw new Error('headLayerGridFigure: no maps');
  const avgRow = (rows: ArrayLike<number>[]) => Float64Array.from({ length: g * g }, (_, i) => rows.reduce((s, m) => s + m[i], 0) / rows.length);
  const cells: ArrayLike<number>[][] = maps.map((hs) => [...hs, avgRow(hs)]);
  cells.push([...Array.from({ length: H }, (_, h) => avgRow(maps.map((hs) => hs[h]))), avgRow(maps.flat())]);
  const ups = cells.map((row) => row.map((m) => upsample(m, g, g, base.height, base.width, 'bilinear')));
  let lo = Infinity, hi = -Infinity;
  for (const row of ups) for (const m of row) {
    const [a, b] = minMax(m);
    lo = Math.min(lo, a);
    hi = Math.max(hi, b);
  }
  const range = opts.range ?? [lo, hi];
  const pad = 4, labelW = textWidth('layer 00') + pad, headH = textHeight() + 2 * pad, titleH = opts.title ? textHeight() + pad : 0;
  const tw = base.width, th = base.height;
  const width = labelW + (H + 1) * (tw + pad) + pad + 12 + 4 + textWidth('0.000e-00') + pad;
  const height = titleH + headH + (L + 1) * (th + pad) + pad;
  const r = new Raster(Math.max(width, opts.title ? textWidth(opts.title) + 2 * pad : 0), height);
  if (opts.title) r.text(opts.title, pad, pad);
  for (let h = 0; h <= H; h++) r.text(h < H ? `head ${h}` : 'avg', labelW + h * (tw + pad), titleH + pad);
  for (let l = 0; l <= L; l++) {
    const y = titleH + headH + l * (th + pad);
    r.text(l < L ? `layer ${l}` : 'avg', pad, y + (th >> 1) - 3);
    for (let h = 0; h <= H; h++) r.blit(overlayHeatmap(base, ups[l][h], { colormap: opts.colormap, alpha: opts.alpha, range }), labelW + h * (tw + pad), y);
  }
  drawColorbar(r, labelW + (H + 1) * (tw + pad) + pad, titleH + headH, (L + 1) * (th + pad) - pad, range[0], range[1], opts.colormap);
  return r.toImage();
}

/**
 * A lower-triangular (ragged) matrix as coloured cells with row labels on the left and column
 * labels (rotated) on top; rows[i] has the weights of row i over columns 0..rows[i].length−1.
 */
export function matrixFigure(rows: readonly ArrayLike<number>[], rowLabels: readonly string[], colLabels: readonly string[], opts: { colormap?: ColormapName; title?: string; cell?: number } = {}): RGBImage {
  const n = rows.length, m = colLabels.length, cell = opts.cell ?? 14, pad = 4;
  if (rowLabels.length !== n) throw new Error(`matrixFigure: ${rowLabels.length} row labels for ${n} rows`);
  let hi = 0;
  for (const r of rows) {
    if (r.length > m) throw new Error(`matrixFigure: a row has ${r.length} columns but there are ${m} column labels`);
    for (let j = 0; j < r.length; j++) hi = Math.max(hi, r[j]);
  }
  const lut = colormapLUT(opts.colormap ?? 'viridis');
  const rowW = Math.max(...rowLabels.map((s) => textWidth(s)), 0) + pad * 2;
  const colH = Math.max(...colLabels.map((s) => textWidth(s)), 0) + pad * 2;
  const titleH = opts.title ? textHeight() + pad * 2 : 0;
  const gridW = m * cell, gridH = n * cell;
  const legendW = pad * 2 + 12 + 4 + textWidth('0.000e-00');
  const r = new Raster(Math.max(rowW + gridW + legendW + pad, opts.title ? textWidth(opts.title) + 2 * pad : 0), titleH + colH + gridH + pad);
  if (opts.title) r.text(opts.title, pad, pad);
  colLabels.forEach((s, j) => r.textUp(s, rowW + j * cell + ((cell - 7) >> 1), titleH + colH - pad - textWidth(s)));
  rowLabels.forEach((s, i) => r.text(s, rowW - pad - textWidth(s), titleH + colH + i * cell + ((cell - 7) >> 1)));
  r.fillRect(rowW, titleH + colH, gridW, gridH, [235, 235, 235]);
  rows.forEach((row, i) => {
    for (let j = 0; j < row.length; j++) {
      const k = 3 * lutIndex(row[j], 0, hi);
      r.fillRect(rowW + j * cell, titleH + colH + i * cell, cell - 1, cell - 1, [lut[k], lut[k + 1], lut[k + 2]]);
    }
  });
  drawColorbar(r, rowW + gridW + pad * 2, titleH + colH, gridH, 0, hi, opts.colormap);
  return r.toImage();
}
