// Float64 reference for preprocessing, written straight from the definitions (not separably):
// out(y, x) = Σ_{i,j} wy(y, i) · wx(x, j) · in(i, j), where w(o, k) = tri((k + 0.5 − c_o) / f) / Σ_k' tri(…),
// c_o = (o + 0.5)·s, s = in/out, f = max(s, 1), over taps k with trunc(c_o − f + 0.5) ≤ k < trunc(c_o + f + 0.5).

function axisWeight(inSize: number, outSize: number, o: number, k: number): number {
  const s = inSize / outSize, f = Math.max(s, 1), c = (o + 0.5) * s;
  const lo = Math.max(Math.trunc(c - f + 0.5), 0), hi = Math.min(Math.trunc(c + f + 0.5), inSize);
  const tri = (t: number) => Math.max(0, 1 - Math.abs(t));
  if (k < lo || k >= hi) return 0;
  let total = 0;
  for (let j = lo; j < hi; j++) total += tri((j + 0.5 - c) / f);
  return total === 0 ? 0 : tri((k + 0.5 - c) / f) / total;
}

/** Resize interleaved RGB floats (h × w × 3) to (oh × ow × 3). */
export function resizeRef(src: Float64Array, h: number, w: number, oh: number, ow: number): Float64Array {
  const wy = Array.from({ length: oh }, (_, y) => Array.from({ length: h }, (_, i) => axisWeight(h, oh, y, i)));
  const wx = Array.from({ length: ow }, (_, x) => Array.from({ length: w }, (_, j) => axisWeight(w, ow, x, j)));
  const out = new Float64Array(oh * ow * 3);
  for (let y = 0; y < oh; y++)
    for (let x = 0; x < ow; x++)
      for (let c = 0; c < 3; c++) {
        let acc = 0;
        for (let i = 0; i < h; i++) {
          if (wy[y][i] === 0) continue;
          for (let j = 0; j < w; j++) acc += wy[y][i] * wx[x][j] * src[(i * w + j) * 3 + c];
        }
        out[(y * ow + x) * 3 + c] = acc;
      }
  return out;
}

/** Python round(): ties to even. */
function pyRound(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** torchvision Resize(size) + CenterCrop(crop) + ToTensor + Normalize, CHW, float64. */
export function preprocessRef(rgb: Uint8Array, h: number, w: number, size: number, crop: number, mean: number[], std: number[]): Float64Array {
  const [oh, ow] = w <= h ? [Math.floor((size * h) / w), size] : [size, Math.floor((size * w) / h)];
  const src = Float64Array.from(rgb, (v) => v / 255);
  const r = oh === h && ow === w ? src : resizeRef(src, h, w, oh, ow);
  // centre crop; pads with zeros (left/top get floor of the padding) when the crop is larger
  const top = crop > oh ? -Math.floor((crop - oh) / 2) : pyRound((oh - crop) / 2);
  const left = crop > ow ? -Math.floor((crop - ow) / 2) : pyRound((ow - crop) / 2);
  const out = new Float64Array(3 * crop * crop);
  for (let c = 0; c < 3; c++)
    for (let y = 0; y < crop; y++)
      for (let x = 0; x < crop; x++) {
        const sy = y + top, sx = x + left;
        const v = sy >= 0 && sy < oh && sx >= 0 && sx < ow ? r[(sy * ow + sx) * 3 + c] : 0;
        out[c * crop * crop + y * crop + x] = (v - mean[c]) / std[c];
      }
  return out;
}
