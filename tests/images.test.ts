import { describe, expect, it } from 'vitest';
import { encode as encodePngRaw } from 'fast-png';
import { decodeImage, decodePng, encodePng, sniffImageFormat } from '../src/data/images.ts';
import { antialiasWeights, IMAGENET_MEAN, IMAGENET_STD, preprocess, preprocessBatch, resizedSize, resizePil } from '../src/data/preprocess.ts';
import { expectWithin, relL2, rng, U32 } from './util.ts';
import { preprocessRef } from './ref/resize.ts';

// 'float' mode computes in float64 and rounds once into the Float32Array: u·|value|, plus the
// float64 differences between two orders of the same ≤ ~100-term sums of values ≤ 3 in
// magnitude after normalisation (100·2⁻⁵³ each, far below the f32 rounding).
const f32Bound = (ref: ArrayLike<number>) => Float64Array.from(ref, (v) => U32 * Math.abs(v) + 100 * 2 ** -53 * (Math.abs(v) + 3));

describe('preprocess (resize shorter side, antialiased bilinear; centre crop; normalise)', () => {
  const R = rng('preprocess');
  it('matches the float64 reference on random small images (down- and upscaling, odd sizes, padding crop)', () => {
    for (let t = 0; t < 25; t++) {
      const h = R.int(1, 37), w = R.int(1, 37), size = R.int(1, 30);
      const [rh, rw] = resizedSize(h, w, size);
      // mostly crops inside the resized image, sometimes larger (zero padding as torchvision does)
      const crop = R.next() < 0.8 ? R.int(1, Math.min(rh, rw)) : R.int(1, Math.max(rh, rw) + 3);
      const data = Uint8Array.from({ length: h * w * 3 }, () => R.int(0, 255));
      const got = preprocess({ width: w, height: h, data }, { resize: size, crop, mode: 'float' });
      const ref = preprocessRef(data, h, w, size, crop, [...IMAGENET_MEAN], [...IMAGENET_STD]);
      expectWithin(got, ref, f32Bound(ref), `h=${h} w=${w} resize=${size} crop=${crop}`);
    }
  });

  it('the paper sizes: a 300x200 image gives 3x224x224 with a 348x232 intermediate', () => {
    expect(resizedSize(200, 300, 232)).toEqual([232, Math.trunc((232 * 300) / 200)]);
    const h = 20, w = 30, data = Uint8Array.from({ length: h * w * 3 }, () => R.int(0, 255));
    const got = preprocess({ width: w, height: h, data }, { resize: 16, crop: 12, mode: 'float' });
    expect(got.length).toBe(3 * 12 * 12);
    const ref = preprocessRef(data, h, w, 16, 12, [...IMAGENET_MEAN], [...IMAGENET_STD]);
    expectWithin(got, ref, f32Bound(ref), 'paper sizes');
  });

  it('filter weights are normalised and the support scales with the downscale factor', () => {
    for (let t = 0; t < 20; t++) {
      const inSize = R.int(1, 200), outSize = R.int(1, 60);
      const a = antialiasWeights(inSize, outSize);
      for (let i = 0; i < outSize; i++) {
        let s = 0;
        for (let k = 0; k < a.count[i]; k++) s += a.weights[i * a.maxTaps + k];
        expect(Math.abs(s - 1)).toBeLessThan(1e-12);
        expect(a.count[i]).toBeLessThanOrEqual(Math.ceil(Math.max(inSize / outSize, 1)) * 2 + 1);
      }
    }
  });

  it("'pil' mode (8-bit fixed point, two rounded passes) stays within about one level of the float formula", () => {
    for (let t = 0; t < 10; t++) {
      const h = R.int(4, 40), w = R.int(4, 40), size = R.int(2, 30), crop = R.int(1, size);
      const data = Uint8Array.from({ length: h * w * 3 }, () => R.int(0, 255));
      const img = { width: w, height: h, data };
      const id = { resize: size, crop, mean: [0, 0, 0] as const, std: [1, 1, 1] as const };
      const f = preprocess(img, { ...id, mode: 'float' }), p = preprocess(img, id); // 'pil' is the default
      let worst = 0;
      for (let i = 0; i < f.length; i++) worst = Math.max(worst, Math.abs(f[i] - p[i]));
      // each pass rounds to 1/255 (≤ 0.5 level) and the 22-bit coefficients add < 1e-5 level
      expect(worst * 255, `h=${h} w=${w} size=${size}`).toBeLessThanOrEqual(1.0 + 1e-3);
      // and pil output is on the 1/255 grid
      for (let i = 0; i < p.length; i++) expect(Math.abs(p[i] * 255 - Math.round(p[i] * 255))).toBeLessThan(1e-3);
    }
  });

  it('resizePil keeps the image when the size is unchanged and handles one-axis resizes', () => {
    const data = Uint8Array.from({ length: 5 * 7 * 3 }, () => R.int(0, 255));
    expect(resizePil({ width: 7, height: 5, data }, 5, 7).data).toEqual(data);
    const r = resizePil({ width: 7, height: 5, data }, 5, 3);
    expect([r.width, r.height, r.data.length]).toEqual([3, 5, 45]);
  });

  it('preprocessBatch stacks images', () => {
    const imgs = [0, 1, 2].map(() => ({ width: 9, height: 6, data: Uint8Array.from({ length: 9 * 6 * 3 }, () => R.int(0, 255)) }));
    const b = preprocessBatch(imgs, { resize: 8, crop: 7 });
    imgs.forEach((im, i) => expect(Array.from(b.subarray(i * 147, (i + 1) * 147))).toEqual(Array.from(preprocess(im, { resize: 8, crop: 7 }))));
  });
});

describe('image decoding to RGB', () => {
  const R = rng('images');
  const rand = (n: number, max = 255) => Uint8Array.from({ length: n }, () => R.int(0, max));

  it('PNG gray, gray+alpha, RGB, RGBA at 8 bits, and 16 bits (high byte kept)', () => {
    const w = R.int(1, 13), h = R.int(1, 11);
    for (const channels of [1, 2, 3, 4]) {
      const px = rand(w * h * channels);
      const img = decodePng(encodePngRaw({ width: w, height: h, data: px, channels, depth: 8 }), `c${channels}.png`);
      expect([img.width, img.height]).toEqual([w, h]);
      for (let i = 0; i < w * h; i++) {
        const expected = channels <= 2 ? [px[i * channels], px[i * channels], px[i * channels]] : [px[i * channels], px[i * channels + 1], px[i * channels + 2]];
        expect(Array.from(img.data.subarray(i * 3, i * 3 + 3))).toEqual(expected);
      }
      const px16 = Uint16Array.from({ length: w * h * channels }, () => R.int(0, 65535));
      const img16 = decodePng(encodePngRaw({ width: w, height: h, data: px16, channels, depth: 16 }));
      for (let i = 0; i < w * h; i++) expect(img16.data[i * 3]).toBe(px16[i * channels] >> 8);
    }
  });

  it('PNG 1-, 2- and 4-bit grayscale is unpacked and scaled to 0..255', () => {
    for (const depth of [1, 2, 4] as const) {
      const w = R.int(1, 19), h = R.int(1, 7), max = (1 << depth) - 1;
      const vals = rand(w * h, max);
      const rowBytes = Math.ceil((w * depth) / 8), packed = new Uint8Array(rowBytes * h);
      for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) packed[y * rowBytes + ((x * depth) >> 3)] |= vals[y * w + x] << (8 - depth - ((x * depth) & 7));
      const img = decodePng(encodePngRaw({ width: w, height: h, data: packed, channels: 1, depth }));
      for (let i = 0; i < w * h; i++) expect(img.data[i * 3 + 1]).toBe(Math.round((vals[i] * 255) / max));
    }
  });

  it('encodePng round-trips RGB exactly', () => {
    const w = R.int(1, 20), h = R.int(1, 20), data = rand(w * h * 3);
    const img = decodePng(encodePng({ width: w, height: h, data }));
    expect(img.data).toEqual(data);
  });

  it('garbage bytes and truncated files fail with the source named', async () => {
    await expect(decodeImage(new Uint8Array([1, 2, 3, 4]), 'x/bad.bin')).rejects.toThrow(/x\/bad\.bin.*neither PNG nor JPEG/);
    const png = encodePng({ width: 4, height: 4, data: rand(48) });
    await expect(decodeImage(png.subarray(0, 30), 'x/trunc.png')).rejects.toThrow(/x\/trunc\.png/);
    expect(() => decodePng(png.subarray(0, 30), 'x/trunc.png')).toThrow(/x\/trunc\.png/);
    // JPEG: libjpeg-turbo's error, with the file named (the decoder stays usable afterwards).
    const jpg = new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0, 16, 0x4a, 0x46, 0x49, 0x46, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0, 0xff, 0xd9]);
    await expect(decodeImage(jpg, 'x/empty.jpg')).rejects.toThrow(/cannot decode jpeg image x\/empty\.jpg: libjpeg-turbo/);
  });
});
