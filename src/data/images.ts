// Image decoding to 8-bit RGB, the way the authors' loader sees images (PIL `Image.open(p).convert("RGB")`):
// grayscale is replicated to 3 channels, alpha is dropped (PIL's RGBA→RGB drops it, no compositing),
// palettes are expanded. PNG with fast-png; JPEG with libjpeg-turbo (WASM, ./jpeg.ts), the decoder
// PIL uses, so Deno and browsers both get PIL's pixels exactly (checked on
// ../shared/golden/preprocess). Other formats only in a browser, with its own decoder, on request.

import { convertIndexedToRgb, decode as decodePngRaw, encode as encodePngRaw } from 'fast-png';
import { decodeJpeg } from './jpeg.ts';

/** An 8-bit RGB image, row-major, interleaved (`data.length = width * height * 3`). */
export interface RGBImage {
  width: number;
  height: number;
  data: Uint8Array;
}

export type ImageFormat = 'png' | 'jpeg';

/** Sniffs the container format from the magic bytes, or undefined. */
export function sniffImageFormat(bytes: Uint8Array): ImageFormat | undefined {
  if (bytes.length >= 8 && bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47) return 'png';
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  return undefined;
}

/**
 * Converts interleaved pixels with `channels` (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA) and 8- or 16-bit
 * samples to 8-bit RGB. 16-bit samples keep their high byte (PIL does the same for 16-bit RGB PNGs).
 */
export function toRGB(width: number, height: number, channels: number, data: ArrayLike<number>, bitDepth: 8 | 16 = 8): RGBImage {
  const n = width * height;
  if (data.length < n * channels) throw new Error(`toRGB: ${width}x${height}x${channels} needs ${n * channels} samples, got ${data.length}`);
  if (channels < 1 || channels > 4) throw new Error(`toRGB: unsupported channel count ${channels}`);
  const shift = bitDepth === 16 ? 8 : 0;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const s = i * channels;
    if (channels <= 2) {
      const g = data[s] >> shift;
      out[3 * i] = g;
      out[3 * i + 1] = g;
      out[3 * i + 2] = g;
    } else {
      out[3 * i] = data[s] >> shift;
      out[3 * i + 1] = data[s + 1] >> shift;
      out[3 * i + 2] = data[s + 2] >> shift;
    }
  }
  return { width, height, data: out };
}

/** Decodes PNG bytes to 8-bit RGB (synchronously). `source` names the file in errors. */
export function decodePng(bytes: Uint8Array, source = '<bytes>'): RGBImage {
  if (sniffImageFormat(bytes) !== 'png') throw new Error(`decodePng: ${source} is not a PNG (${describeHead(bytes)})`);
  try {
    const png = decodePngRaw(bytes);
    if (png.palette) {
      const expanded = convertIndexedToRgb(png);
      return toRGB(png.width, png.height, png.palette[0]?.length ?? 3, expanded);
    }
    const depth = png.depth === 16 ? 16 : 8;
    if (png.depth !== 8 && png.depth !== 16) {
      // fast-png leaves 1/2/4-bit grayscale packed (MSB first, rows byte-aligned): unpack and scale
      // 0..2^d-1 to 0..255 like PIL's "L" conversion.
      const d = png.depth, perRow = png.width * png.channels, rowBytes = Math.ceil((d * perRow) / 8);
      const scale = 255 / ((1 << d) - 1), mask = (1 << d) - 1, packed = png.data as Uint8Array;
      const unpacked = new Uint8Array(perRow * png.height);
      for (let y = 0; y < png.height; y++) {
        for (let k = 0; k < perRow; k++) {
          const bit = k * d, byte = packed[y * rowBytes + (bit >> 3)];
          unpacked[y * perRow + k] = Math.round(((byte >> (8 - d - (bit & 7))) & mask) * scale);
        }
      }
      return toRGB(png.width, png.height, png.channels, unpacked);
    }
    return toRGB(png.width, png.height, png.channels, png.data, depth);
  } catch (e) {
    throw new Error(`decodeImage: cannot decode png image ${source}: ${(e as Error).message}`);
  }
}

function describeHead(bytes: Uint8Array): string {
  const head = Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, '0')).join(' ');
  return `first bytes ${head || 'none'}, ${bytes.length} bytes`;
}

/**
 * Decodes PNG or JPEG bytes to 8-bit RGB as PIL does. `source` names the file in errors. With
 * `{ browser: true }` in a browser, other formats (WebP, BMP, GIF…) go through createImageBitmap
 * and a canvas (not PIL-exact: colour management may differ).
 */
export async function decodeImage(bytes: Uint8Array, source = '<bytes>', opts: { browser?: boolean } = {}): Promise<RGBImage> {
  const format = sniffImageFormat(bytes);
  if (format === 'png') return decodePng(bytes, source);
  if (format === 'jpeg') {
    let img;
    try {
      img = await decodeJpeg(bytes);
    } catch (e) {
      throw new Error(`decodeImage: cannot decode jpeg image ${source}: ${(e as Error).message}`);
    }
    return img.channels === 3 ? { width: img.width, height: img.height, data: img.data } : toRGB(img.width, img.height, 1, img.data);
  }
  const g = globalThis as unknown as { createImageBitmap?: typeof createImageBitmap; OffscreenCanvas?: typeof OffscreenCanvas };
  if (!opts.browser || !g.createImageBitmap || !g.OffscreenCanvas) throw new Error(`decodeImage: ${source} is neither PNG nor JPEG (${describeHead(bytes)})`);
  let bitmap: ImageBitmap;
  try {
    bitmap = await g.createImageBitmap(new Blob([bytes as BlobPart]), { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  } catch (e) {
    throw new Error(`decodeImage: cannot decode image ${source}: ${(e as Error).message}`);
  }
  const canvas = new g.OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext('2d');
  if (!ctx) throw new Error(`decodeImage: no 2d context for ${source}`);
  ctx.drawImage(bitmap, 0, 0);
  const rgba = ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
  bitmap.close();
  return toRGB(canvas.width, canvas.height, 4, rgba);
}

/** Encodes 8-bit RGB as PNG (used to write the built-in dataset). */
export function encodePng(img: RGBImage): Uint8Array {
  if (img.data.length !== img.width * img.height * 3) throw new Error(`encodePng: ${img.width}x${img.height} RGB needs ${img.width * img.height * 3} bytes, got ${img.data.length}`);
  return encodePngRaw({ width: img.width, height: img.height, data: img.data, channels: 3, depth: 8 });
}
