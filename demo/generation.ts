// Report generation in the page with the CLI's code: the image is decoded and preprocessed like
// `micar attention` does it, greedy decoding runs the KV-cached generator with traces (words are
// handed over as each step finishes; every step awaits its GPU read-back, so the page keeps
// handling input between steps), beam search returns the n-best and the chosen hypothesis is
// traced by teacher forcing (viz traceTokens) for its attention maps.
import { dispose, fromData } from '../src/graph/runtime.ts';
import { beamSearch, generate, type Hypothesis } from '../src/generate/decode.ts';
import { decodeImage, type RGBImage, sniffImageFormat } from '../src/data/images.ts';
import { preprocess } from '../src/data/preprocess.ts';
import { type AttentionTrace, inputGeometry, readTrace, traceTokens } from '../src/viz/index.ts';
import type { DemoModel } from './model-loader.ts';

/** One GPU user at a time: a decode and a training step must not interleave (training updates the weights in place). */
export class GpuLock {
  private tail: Promise<void> = Promise.resolve();
  async run<T>(fn: () => Promise<T>): Promise<T> {
    const prev = this.tail;
    let release!: () => void;
    this.tail = new Promise<void>((r) => (release = r));
    await prev;
    try {
      return await fn();
    } finally {
      release();
    }
  }
}
export const gpuLock = new GpuLock();

/** Lets the browser handle input and paint before the next piece of GPU work. */
export function yieldToEventLoop(): Promise<void> {
  const s = (globalThis as { scheduler?: { yield?: () => Promise<void> } }).scheduler;
  if (s?.yield) return s.yield();
  return new Promise((r) => setTimeout(r, 0));
}

export interface LoadedImage {
  name: string;
  /** The image as decoded (8-bit RGB). */
  original: RGBImage;
}

/**
 * Decodes PNG / JPEG with the decoders the CLI uses (fast-png, libjpeg-turbo WASM: identical
 * pixels, so identical reports); other formats the browser can decode go through createImageBitmap.
 */
export async function loadImage(bytes: Uint8Array, name: string): Promise<LoadedImage> {
  const known = sniffImageFormat(bytes) !== undefined;
  return { name, original: await decodeImage(bytes, name, { browser: !known }) };
}

/** The model input [3,S,S] for an image, with the CLI's geometry (resize shorter side, centre crop). */
export function modelPixels(img: RGBImage, m: DemoModel): Float32Array {
  const geo = inputGeometry(m.cfg);
  return preprocess(img, { resize: geo.resize, crop: geo.crop });
}

export interface GreedyResult {
  tokens: number[];
  trace: AttentionTrace;
}

/** Greedy decoding with traces; `onToken(id, step)` runs as each token is chosen. */
export async function generateGreedy(m: DemoModel, pixels: Float32Array, onToken: (id: number, step: number) => void): Promise<GreedyResult> {
  const S = m.cfg.image_size;
  return gpuLock.run(async () => {
    const image = fromData(pixels, [1, 3, S, S], 'f32', 'image');
    try {
      const r = await generate(m.weights, image, { trace: true, stopAtEos: true, onToken: (_i, tok, step) => onToken(tok, step) });
      const trace = await readTrace(r.traces, r.tokens[0], m.cfg);
      return { tokens: r.tokens[0], trace };
    } finally {
      dispose(image);
    }
  });
}

/** Beam search: the n-best hypotheses, best first. */
export async function generateBeam(m: DemoModel, pixels: Float32Array, beamWidth: number, lengthPenalty = 1): Promise<Hypothesis[]> {
  const S = m.cfg.image_size;
  return gpuLock.run(async () => {
    const image = fromData(pixels, [1, 3, S, S], 'f32', 'image');
    try {
      return (await beamSearch(m.weights, image, { beamWidth, nBest: beamWidth, lengthPenalty }))[0];
    } finally {
      dispose(image);
    }
  });
}

/** The attention trace of the decoder reading `tokens` (a beam hypothesis) for the image. */
export async function traceHypothesis(m: DemoModel, pixels: Float32Array, tokens: readonly number[]): Promise<AttentionTrace> {
  const S = m.cfg.image_size;
  return gpuLock.run(async () => {
    const image = fromData(pixels, [1, 3, S, S], 'f32', 'image');
    try {
      return await readTrace(await traceTokens(m.weights, image, tokens), [...tokens], m.cfg);
    } finally {
      dispose(image);
    }
  });
}
