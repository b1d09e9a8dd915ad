// Perceptual colour maps as 256-entry RGB lookup tables, built by linear interpolation (in sRGB)
// between 11 evenly spaced stops of matplotlib's viridis / inferno (the stops d3-scale-chromatic
// publishes; between stops the interpolation differs from matplotlib's 256-entry table by a few
// levels at most). Both have monotonically increasing lightness, so brighter always means more.

export type ColormapName = 'viridis' | 'inferno';

const STOPS: Record<ColormapName, string[]> = {
  viridis: ['440154', '482475', '414487', '355f8d', '2a788e', '21918c', '22a884', '44bf70', '7ad151', 'bddf26', 'fde725'],
  inferno: ['000004', '160b39', '420a68', '6a176e', '932667', 'bc3754', 'dd513a', 'f37819', 'fca50a', 'f6d746', 'fcffa4'],
};

/** The stops of a map as [r, g, b] in 0..255. */
export function colormapStops(name: ColormapName): [number, number, number][] {
  const s = STOPS[name];
  if (!s) throw new Error(`colormap: unknown name ${JSON.stringify(name)} (have ${Object.keys(STOPS).join(', ')})`);
  return s.map((h) => [parseInt(h.slice(0, 2), 16), parseInt(h.slice(2, 4), 16), parseInt(h.slice(4, 6), 16)]);
}

const cache = new Map<ColormapName, Uint8Array>();

/** 256 × RGB lookup table: entry i is the colour at t = i / 255. */
export function colormapLUT(name: ColormapName = 'viridis'): Uint8Array {
  const hit = cache.get(name);
  if (hit) return hit;
  const stops = colormapStops(name);
  const n = stops.length - 1;
  const lut = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) {
    const x = (i / 255) * n;
    const j = Math.min(Math.floor(x), n - 1), f = x - j;
    for (let c = 0; c < 3; c++) lut[3 * i + c] = Math.round(stops[j][c] + f * (stops[j + 1][c] - stops[j][c]));
  }
  cache.set(name, lut);
  return lut;
}

/** LUT index for value v on the scale [lo, hi] (clamped; a flat scale maps to the bottom). */
export function lutIndex(v: number, lo: number, hi: number): number {
  if (!(hi > lo)) return 0;
  const t = (v - lo) / (hi - lo);
  return Math.max(0, Math.min(255, Math.round(t * 255)));
}

/** sRGB relative luminance (WCAG), 0..1: used to check the maps' lightness is monotonic. */
export function luminance(r: number, g: number, b: number): number {
  const lin = (u: number) => {
    const s = u / 255;
    return s <= 0.04045 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  };
  return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
}
