// Attention maps over the image grid: upsampling a grid×grid attention row (row-major, token
// index r·grid + c) to image pixels, as a display map and as a probability density, and the
// colour overlay on the image. Plain numbers, no GPU and no runtime APIs (the web app reuses it).
import type { RGBImage } from '../data/images.ts';
import { colormapLUT, type ColormapName, lutIndex } from './colormap.ts';

/** Side of the image-token grid (MSVE pools to 7×7 = 49 tokens). */
export const GRID = 7;

/**
 * Bilinear interpolation weights along one axis, PyTorch `interpolate(mode='bilinear',
 * align_corners=False)`: output o samples source coordinate max(0, (o + 0.5)·in/out − 0.5),
 * between floor and floor + 1 (clamped to in − 1). Returns [outSize × inSize], rows sum to 1.
 */
export function bilinearWeights(inSize: number, outSize: number): Float64Array {
  if (!(inSize >= 1 && outSize >= 1) || !Number.isInteger(inSize) || !Number.isInteger(outSize))
    throw new Error(`bilinearWeights: sizes must be positive integers, got in=${inSize} out=${outSize}`);
  const w = new Float64Array(outSize * inSize);
  const scale = inSize / outSize;
  for (let o = 0; o < outSize; o++) {
    const src = Math.max(0, (o + 0.5) * scale - 0.5);
    const i0 = Math.min(Math.floor(src), inSize - 1);
    const i1 = Math.min(i0 + 1, inSize - 1);
    const l1 = src - i0;
    w[o * inSize + i0] += 1 - l1;
    w[o * inSize + i1] += l1;
  }
  return w;
}

/**
 * Area (footprint) weights along one axis: source cell i covers output pixels
 * [i·out/in, (i+1)·out/in) and spreads its value uniformly over them. Returns [outSize × inSize];
 * each column sums to 1, so mass is preserved cell by cell.
 */
export function areaWeights(inSize: number, outSize: number): Float64Array {
  if (!(inSize >= 1 && outSize >= 1) || !Number.isInteger(inSize) || !Number.isInteger(outSize))
    throw new Error(`areaWeights: sizes must be positive integers, got in=${inSize} out=${outSize}`);
  const w = new Float64Array(outSize * inSize);
  const s = outSize / inSize;
  for (let i = 0; i < inSize; i++) {
    const a = i * s, b = (i + 1) * s;
    for (let o = Math.floor(a); o < Math.min(outSize, Math.ceil(b)); o++) {
      const overlap = Math.min(b, o + 1) - Math.max(a, o);
      if (overlap > 0) w[o * inSize + i] = overlap / s;
    }
  }
  return w;
}

/** out = Wy · map · Wxᵀ for a row-major [inH × inW] map and axis weights [outH × inH], [outW × inW]. */
function separable(map: ArrayLike<number>, inH: number, inW: number, wy: Float64Array, outH: number, wx: Float64Array, outW: number): Float64Array {
  if (map.length !== inH * inW) throw new Error(`upsample: map has ${map.length} values, expected ${inH}×${inW}`);
  const tmp = new Float64Array(inH * outW); // rows interpolated along x
  for (let r = 0; r < inH; r++)
    for (let x = 0; x < outW; x++) {
      let s = 0;
      for (let c = 0; c < inW; c++) s += wx[x * inW + c] * map[r * inW + c];
      tmp[r * outW + x] = s;
    }
  const out = new Float64Array(outH * outW);
  for (let y = 0; y < outH; y++)
    for (let r = 0; r < inH; r++) {
      const wyr = wy[y * inH + r];
      if (wyr === 0) continue;
      for (let x = 0; x < outW; x++) out[y * outW + x] += wyr * tmp[r * outW + x];
    }
  return out;
}

export type UpsampleMode = 'bilinear' | 'area';

/** Bilinear (align_corners=false) or area upsampling of a row-major [inH × inW] map to [outH × outW]. */
export function upsample(map: ArrayLike<number>, inH: number, inW: number, outH: number, outW: number, mode: UpsampleMode = 'bilinear'): Float64Array {
  const f = mode === 'area' ? areaWeights : bilinearWeights;
  return separable(map, inH, inW, f(inH, outH), outH, f(inW, outW), outW);
}

function sum(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i];
  return s;
}

/**
 * The attention row (grid² probabilities) as a probability density over [height × width] pixels:
 * its values sum to the row's sum (1 for a softmax row). 'bilinear' is the displayed map rescaled
 * by one constant (bilinear weights do not conserve mass when the image side is not a multiple
 * of the grid); 'area' spreads each cell's mass uniformly over its footprint.
 */
export function attentionDensity(row: ArrayLike<number>, height: number, width = height, mode: UpsampleMode = 'bilinear', grid = GRID): Float64Array {
  if (row.length !== grid * grid) throw new Error(`attentionDensity: attention row has ${row.length} values, expected ${grid}×${grid} = ${grid * grid}`);
  const up = upsample(row, grid, grid, height, width, mode);
  if (mode === 'area') return up;
  const s = sum(up), target = sum(row);
  if (s === 0) return up;
  const k = target / s;
  for (let i = 0; i < up.length; i++) up[i] *= k;
  return up;
}

/** Elementwise mean of equally long maps. */
export function meanMaps(maps: readonly ArrayLike<number>[]): Float64Array {
  if (maps.length === 0) throw new Error('meanMaps: no maps');
  const n = maps[0].length, out = new Float64Array(n);
  for (const m of maps) {
    if (m.length !== n) throw new Error(`meanMaps: maps of ${n} and ${m.length} values`);
    for (let i = 0; i < n; i++) out[i] += m[i];
  }
  for (let i = 0; i < n; i++) out[i] /= maps.length;
  return out;
}

export function minMax(a: ArrayLike<number>): [number, number] {
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < a.length; i++) {
    if (a[i] < lo) lo = a[i];
    if (a[i] > hi) hi = a[i];
  }
  return [lo, hi];
}

export interface OverlayOptions {
  colormap?: ColormapName;
  /** Colour scale; default the map's own [min, max]. */
  range?: [number, number];
  /** Opacity of the heat map over the image (default 0.6). */
  alpha?: number;
}

/** Blends `values` (one per pixel of `base`, row-major) as colours over `base`. */
export function overlayHeatmap(base: RGBImage, values: ArrayLike<number>, opts: OverlayOptions = {}): RGBImage {
  const n = base.width * base.height;
  if (values.length !== n) throw new Error(`overlayHeatmap: ${values.length} values for a ${base.width}×${base.height} image`);
  const lut = colormapLUT(opts.colormap ?? 'viridis');
  const [lo, hi] = opts.range ?? minMax(values);
  const a = opts.alpha ?? 0.6;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const k = 3 * lutIndex(values[i], lo, hi);
    for (let c = 0; c < 3; c++) out[3 * i + c] = Math.round((1 - a) * base.data[3 * i + c] + a * lut[k + c]);
  }
  return { width: base.width, height: base.height, data: out };
}

/** Share of a density's mass inside the pixel box [x0, x1) × [y0, y1) (fractional edges allowed). */
export function massInBox(density: ArrayLike<number>, width: number, height: number, box: readonly [number, number, number, number]): number {
  const [x0, y0, x1, y1] = box;
  let inside = 0;
  for (let y = Math.max(0, Math.floor(y0)); y < Math.min(height, Math.ceil(y1)); y++) {
    const fy = Math.min(y + 1, y1) - Math.max(y, y0);
    if (fy <= 0) continue;
    for (let x = Math.max(0, Math.floor(x0)); x < Math.min(width, Math.ceil(x1)); x++) {
      const fx = Math.min(x + 1, x1) - Math.max(x, x0);
      if (fx > 0) inside += fx * fy * density[y * width + x];
    }
  }
  return inside;
}

/**
 * Everything recorded while generating one report, on the CPU. Step t fed the token at position t
 * (<sos>, then the words generated so far) and produced `tokens[t]`; its maps are "where the model
 * looked while writing word t".
 */
export interface AttentionTrace {
  layers: number;
  heads: number;
  /** Side of the image-token grid (7). */
  grid: number;
  numExperts: number;
  /** Generated token ids, one per step (<eos> included when emitted). */
  tokens: number[];
  /** cross[t][l]: heads × grid² weights, head-major (the [H, 1, grid²] attention rows of step t). */
  cross: Float32Array[][];
  /** self[t][l]: heads × (t + 1) weights over positions 0..t. */
  self: Float32Array[][];
  /** experts[t][l]: the k experts of step t's token in layer l, with their gate weights. */
  experts: { indices: number[]; weights: number[] }[][];
}

export type LayerSel = number | 'avg';
export type HeadSel = number | 'avg';

/** The cross-attention row (grid² weights) of step t for one layer/head or their average. */
export function crossRow(tr: AttentionTrace, t: number, layer: LayerSel = 'avg', head: HeadSel = 'avg'): Float64Array {
  if (t < 0 || t >= tr.cross.length) throw new Error(`crossRow: step ${t} outside 0..${tr.cross.length - 1}`);
  return selectRow(tr.cross[t], tr.layers, tr.heads, tr.grid * tr.grid, layer, head, 'crossRow');
}

/** The self-attention row of step t over positions 0..t. */
export function selfRow(tr: AttentionTrace, t: number, layer: LayerSel = 'avg', head: HeadSel = 'avg'): Float64Array {
  if (t < 0 || t >= tr.self.length) throw new Error(`selfRow: step ${t} outside 0..${tr.self.length - 1}`);
  return selectRow(tr.self[t], tr.layers, tr.heads, t + 1, layer, head, 'selfRow');
}

function selectRow(perLayer: Float32Array[], L: number, H: number, n: number, layer: LayerSel, head: HeadSel, op: string): Float64Array {
  const ls = layer === 'avg' ? Array.from({ length: L }, (_, l) => l) : [layer];
  const hs = head === 'avg' ? Array.from({ length: H }, (_, h) => h) : [head];
  for (const l of ls) if (!(l >= 0 && l < L)) throw new Error(`${op}: layer ${l} outside 0..${L - 1}`);
  for (const h of hs) if (!(h >= 0 && h < H)) throw new Error(`${op}: head ${h} outside 0..${H - 1}`);
  const out = new Float64Array(n);
  for (const l of ls) {
    const a = perLayer[l];
    if (a.length !== H * n) throw new Error(`${op}: layer ${l} holds ${a.length} weights, expected ${H}×${n}`);
    for (const h of hs) for (let i = 0; i < n; i++) out[i] += a[h * n + i];
  }
  const k = 1 / (ls.length * hs.length);
  for (let i = 0; i < n; i++) out[i] *= k;
  return out;
}
