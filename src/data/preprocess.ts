// Image preprocessing as the authors ran it (torchvision ResNet101_Weights.IMAGENET1K_V2.transforms()):
// resize the shorter side (bilinear, antialiased), centre crop, scale to [0,1], normalise, CHW.
//
// The antialiased bilinear resize is PIL's / torchvision's (`_upsample_bilinear2d_aa`): for output
// index i, centre c = (i + 0.5)·s with s = in/out, support r = max(s, 1), taps j in
// [trunc(c − r + 0.5), trunc(c + r + 0.5)) ∩ [0, in), weight tri((j − c + 0.5) / max(s, 1)) with
// tri(x) = max(0, 1 − |x|), normalised to sum 1. Applied separably (horizontal, then vertical).
//
// Two arithmetic modes:
//  - 'pil' (default): PIL's 8-bit path, which the authors' pipeline used (torchvision's Resize on
//    PIL images): 22-bit fixed-point coefficients, a horizontal pass rounded and clipped to uint8,
//    then a vertical pass rounded and clipped to uint8. With libjpeg-turbo decoding (images.ts)
//    this gives the authors' input tensors exactly (tests/preprocess-oracle.test.ts).
//  - 'float': the formula in float64 on values in [0,1] — torchvision's Resize on float tensors.
//    Within one level of 'pil'; kept as the reference the 8-bit path is tested against.

import type { RGBImage } from './images.ts';

export const IMAGENET_MEAN: readonly [number, number, number] = [0.485, 0.456, 0.406];
export const IMAGENET_STD: readonly [number, number, number] = [0.229, 0.224, 0.225];

export interface PreprocessOptions {
  /** Shorter side after resizing (232 in the paper). */
  resize: number;
  /** Square centre-crop size (224 in the paper). */
  crop: number;
  mean?: readonly [number, number, number];
  std?: readonly [number, number, number];
  /** 'pil' (default): PIL's 8-bit resize, as the authors' pipeline; 'float': float64 resize. */
  mode?: 'float' | 'pil';
}

/** Python's round(): half to even (torchvision's centre crop uses it). */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x), d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** torchvision's output size for Resize(size: int): shorter side → size, longer side truncated. */
export function resizedSize(height: number, width: number, shorter: number): [number, number] {
  if (!(shorter >= 1) || !Number.isInteger(shorter)) throw new Error(`resizedSize: size must be a positive integer, got ${shorter}`);
  if (width <= height) return [Math.trunc((shorter * height) / width), shorter];
  return [shorter, Math.trunc((shorter * width) / height)];
}

/** Per-output-index taps of the antialiased bilinear filter along one axis. */
export interface AxisWeights {
  inSize: number;
  outSize: number;
  start: Int32Array;
  count: Int32Array;
  /** `outSize × maxTaps`, row i holds the normalised weights of output i. */
  weights: Float64Array;
  maxTaps: number;
}

export function antialiasWeights(inSize: number, outSize: number): AxisWeights {
  if (inSize < 1 || outSize < 1) throw new Error(`antialiasWeights: sizes must be ≥ 1, got in=${inSize} out=${outSize}`);
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filterScale; // bilinear support is 1, scaled when downsampling
  const maxTaps = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize), count = new Int32Array(outSize);
  const weights = new Float64Array(outSize * maxTaps);
  for (let i = 0; i < outSize; i++) {
    const center = (i + 0.5) * scale;
    const lo = Math.max(Math.trunc(center - support + 0.5), 0);
    const hi = Math.min(Math.trunc(center + support + 0.5), inSize);
    const n = hi - lo;
    let total = 0;
    for (let k = 0; k < n; k++) {
      const x = Math.abs((k + lo - center + 0.5) / filterScale);
      const w = x < 1 ? 1 - x : 0;
      weights[i * maxTaps + k] = w;
      total += w;
    }
    if (total !== 0) for (let k = 0; k < n; k++) weights[i * maxTaps + k] /= total;
    start[i] = lo;
    count[i] = n;
  }
  return { inSize, outSize, start, count, weights, maxTaps };
}

/**
 * Antialiased bilinear resize of interleaved float pixels (`channels` per pixel) in float64.
 * Returns `outH × outW × channels`.
 */
export function resizeFloat(src: Float64Array, h: number, w: number, channels: number, outH: number, outW: number): Float64Array {
  if (src.length !== h * w * channels) throw new Error(`resizeFloat: input ${h}x${w}x${channels} needs ${h * w * channels} values, got ${src.length}`);
  const wx = antialiasWeights(w, outW), wy = antialiasWeights(h, outH);
  const tmp = new Float64Array(h * outW * channels);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < outW; x++) {
      const s = wx.start[x], n = wx.count[x], row = x * wx.maxTaps;
      for (let c = 0; c < channels; c++) {
        let acc = 0;
        for (let k = 0; k < n; k++) acc += wx.weights[row + k] * src[(y * w + s + k) * channels + c];
        tmp[(y * outW + x) * channels + c] = acc;
      }
    }
  }
  const out = new Float64Array(outH * outW * channels);
  for (let y = 0; y < outH; y++) {
    const s = wy.start[y], n = wy.count[y], row = y * wy.maxTaps;
    for (let x = 0; x < outW; x++) {
      for (let c = 0; c < channels; c++) {
        let acc = 0;
        for (let k = 0; k < n; k++) acc += wy.weights[row + k] * tmp[((s + k) * outW + x) * channels + c];
        out[(y * outW + x) * channels + c] = acc;
      }
    }
  }
  return out;
}

const PIL_PRECISION_BITS = 32 - 8 - 2;

/** PIL's fixed-point coefficients: each normalised weight rounded half away from zero at 2^22. */
function pilFixedWeights(a: AxisWeights): Int32Array {
  const out = new Int32Array(a.weights.length);
  const one = 1 << PIL_PRECISION_BITS;
  for (let i = 0; i < a.weights.length; i++) {
    const k = a.weights[i];
    out[i] = k < 0 ? Math.trunc(-0.5 + k * one) : Math.trunc(0.5 + k * one);
  }
  return out;
}

function pilClip8(acc: number): number {
  const v = Math.floor(acc / (1 << PIL_PRECISION_BITS)); // arithmetic shift right
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/**
 * PIL's `Image.resize(size, BILINEAR)` on an 8-bit RGB image: horizontal pass to uint8, then vertical
 * pass to uint8; a pass is skipped where that side keeps its size (as in PIL).
 */
export function resizePil(img: RGBImage, outH: number, outW: number): RGBImage {
  let { width: w, height: h, data } = img;
  if (outW !== w) {
    const a = antialiasWeights(w, outW), kk = pilFixedWeights(a);
    const next = new Uint8Array(h * outW * 3);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < outW; x++) {
        const s = a.start[x], n = a.count[x], row = x * a.maxTaps;
        for (let c = 0; c < 3; c++) {
          let acc = 1 << (PIL_PRECISION_BITS - 1);
          for (let k = 0; k < n; k++) acc += data[(y * w + s + k) * 3 + c] * kk[row + k];
          next[(y * outW + x) * 3 + c] = pilClip8(acc);
        }
      }
    }
    data = next;
    w = outW;
  }
  if (outH !== h) {
    const a = antialiasWeights(h, outH), kk = pilFixedWeights(a);
    const next = new Uint8Array(outH * w * 3);
    for (let y = 0; y < outH; y++) {
      const s = a.start[y], n = a.count[y], row = y * a.maxTaps;
      for (let x = 0; x < w; x++) {
        for (let c = 0; c < 3; c++) {
          let acc = 1 << (PIL_PRECISION_BITS - 1);
          for (let k = 0; k < n; k++) acc += data[((s + k) * w + x) * 3 + c] * kk[row + k];
          next[(y * w + x) * 3 + c] = pilClip8(acc);
        }
      }
    }
    data = next;
    h = outH;
  }
  return { width: w, height: h, data };
}

/** Top-left offset of torchvision's centre crop along one axis (negative = zero padding). */
export function centerCropOffset(size: number, crop: number): number {
  if (crop > size) return -Math.floor((crop - size) / 2);
  return roundHalfEven((size - crop) / 2);
}

/**
 * Resize (shorter side), centre crop, scale to [0,1], normalise; writes CHW float32 into `out` at
 * `offset` (3·crop·crop values) and returns `out`.
 */
export function preprocessInto(img: RGBImage, opts: PreprocessOptions, out: Float32Array, offset = 0): Float32Array {
  const { resize, crop } = opts;
  const mean = opts.mean ?? IMAGENET_MEAN, std = opts.std ?? IMAGENET_STD;
  if (!(crop >= 1) || !Number.isInteger(crop)) throw new Error(`preprocess: crop must be a positive integer, got ${crop}`);
  if (img.data.length !== img.width * img.height * 3) throw new Error(`preprocess: ${img.width}x${img.height} RGB image needs ${img.width * img.height * 3} bytes, got ${img.data.length}`);
  if (out.length < offset + 3 * crop * crop) throw new Error(`preprocess: output holds ${out.length - offset} values after offset ${offset}, needs ${3 * crop * crop}`);
  const [rh, rw] = resizedSize(img.height, img.width, resize);
  let pixels: ArrayLike<number>;
  let scaleTo01: number;
  if ((opts.mode ?? 'pil') === 'pil') {
    pixels = rh === img.height && rw === img.width ? img.data : resizePil(img, rh, rw).data;
    scaleTo01 = 1 / 255;
  } else {
    const src = new Float64Array(img.data.length);
    for (let i = 0; i < src.length; i++) src[i] = img.data[i] / 255;
    pixels = rh === img.height && rw === img.width ? src : resizeFloat(src, img.height, img.width, 3, rh, rw);
    scaleTo01 = 1;
  }
  const top = centerCropOffset(rh, crop), left = centerCropOffset(rw, crop);
  const plane = crop * crop;
  for (let c = 0; c < 3; c++) {
    const m = mean[c], s = std[c];
    for (let y = 0; y < crop; y++) {
      const sy = y + top;
      for (let x = 0; x < crop; x++) {
        const sx = x + left;
        const inside = sy >= 0 && sy < rh && sx >= 0 && sx < rw;
        const v = inside ? pixels[(sy * rw + sx) * 3 + c] * scaleTo01 : 0;
        out[offset + c * plane + y * crop + x] = (v - m) / s;
      }
    }
  }
  return out;
}

/** One image → Float32Array [3, crop, crop]. */
export function preprocess(img: RGBImage, opts: PreprocessOptions): Float32Array {
  return preprocessInto(img, opts, new Float32Array(3 * opts.crop * opts.crop));
}

/** Several images → Float32Array [b, 3, crop, crop]. */
export function preprocessBatch(images: readonly RGBImage[], opts: PreprocessOptions): Float32Array {
  const per = 3 * opts.crop * opts.crop;
  const out = new Float32Array(images.length * per);
  images.forEach((img, i) => preprocessInto(img, opts, out, i * per));
  return out;
}
