// JPEG decoding with libjpeg-turbo — the library PIL uses, so pixels match the authors' loader
// exactly (ISLOW IDCT, fancy chroma upsampling). The build is @cornerstonejs/codec-libjpeg-turbo-8bit
// (WASM, TurboJPEG API, 8-bit): grey stays one channel, colour comes out RGB.
//
// Where the .wasm comes from: in Deno and Node the module reads the file beside its JS; in a
// browser call `setJpegWasm(url)` first (a bundler gives the URL, e.g. Vite's
// `import url from '@cornerstonejs/codec-libjpeg-turbo-8bit/decodewasm?url'`) or pass the bytes.
import createLibJpegTurbo, { type LibJpegTurbo, type ModuleOptions } from '@cornerstonejs/codec-libjpeg-turbo-8bit/decodewasmjs';

export interface DecodedJpeg {
  width: number;
  height: number;
  /** 1 (grey) or 3 (RGB), interleaved. */
  channels: 1 | 3;
  data: Uint8Array;
}

let wasmSource: string | URL | ArrayBuffer | Uint8Array | undefined;
let codec: Promise<LibJpegTurbo> | undefined;

/** Where the libjpeg-turbo .wasm is (URL) or its bytes; needed in browsers, before the first JPEG. */
export function setJpegWasm(source: string | URL | ArrayBuffer | Uint8Array): void {
  wasmSource = source;
  codec = undefined;
}

function moduleOptions(): ModuleOptions {
  if (wasmSource === undefined) return {};
  if (wasmSource instanceof ArrayBuffer || wasmSource instanceof Uint8Array) return { wasmBinary: wasmSource };
  const url = String(wasmSource);
  return { locateFile: (p) => (p.endsWith('.wasm') ? url : p) };
}

/** The libjpeg-turbo module, instantiated once. */
export function jpegCodec(): Promise<LibJpegTurbo> {
  codec ??= createLibJpegTurbo(moduleOptions()).catch((e: unknown) => {
    codec = undefined;
    const where = wasmSource === undefined ? 'beside its JS (in a browser, call setJpegWasm(url) first)' : `from ${wasmSource instanceof ArrayBuffer || wasmSource instanceof Uint8Array ? 'the given bytes' : String(wasmSource)}`;
    throw new Error(`JPEG decoder: cannot load the libjpeg-turbo WASM ${where}: ${(e as Error)?.message ?? e}`);
  });
  return codec;
}

/** Decodes a baseline or progressive 8-bit JPEG; throws on anything libjpeg-turbo rejects. */
export async function decodeJpeg(bytes: Uint8Array): Promise<DecodedJpeg> {
  const lib = await jpegCodec();
  const dec = new lib.JPEGDecoder();
  try {
    dec.getEncodedBuffer(bytes.length).set(bytes);
    try {
      dec.decode();
    } catch (e) {
      // embind throws the C++ string (or a pointer to it): say what failed in words.
      throw new Error(`libjpeg-turbo: ${typeof e === 'string' ? e.trim() : 'corrupt or unsupported JPEG data'}`);
    }
    const info = dec.getFrameInfo();
    const channels = info.componentCount === 1 ? 1 : 3;
    // A copy: the decoder's buffer lives in WASM memory and is freed with it.
    const data = dec.getDecodedBuffer().slice();
    if (data.length !== info.width * info.height * channels) throw new Error(`libjpeg-turbo: decoded ${data.length} bytes for ${info.width}x${info.height}x${channels}`);
    return { width: info.width, height: info.height, channels, data };
  } finally {
    dec.delete();
  }
}
