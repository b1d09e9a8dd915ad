// The precision option: parsing, auto's fallback and f16's refusal on adapters without
// shader-f16, and an f16 model's memory (weights and KV cache half of f32).
import { beforeAll, describe, expect, it } from 'vitest';
import { init, runtime } from '../src/graph/runtime.ts';
import { parsePrecision, resolvePrecision } from '../src/model/precision.ts';
import { presetConfig } from '../src/model/presets.ts';
import { normaliseConfig } from '../src/model/config.ts';
import { Weights } from '../src/model/weights.ts';
import { rng } from './util.ts';

beforeAll(async () => {
  await init();
});

describe('precision option', () => {
  it('parses f32, f16, auto; anything else is an error naming the value', () => {
    expect(parsePrecision('f16')).toBe('f16');
    expect(parsePrecision(undefined)).toBe('f32');
    expect(() => parsePrecision('fp16', '--precision')).toThrow(/--precision: "fp16" is not a precision \(f32, f16 or auto\)/);
  });

  it('auto follows shader-f16 (and says so when it falls back); f16 without it is a clear error', () => {
    const gpu = runtime().gpu;
    const had = gpu.hasF16;
    try {
      gpu.hasF16 = false;
      expect(resolvePrecision('auto')).toEqual({ dtype: 'f32', note: expect.stringMatching(/no shader-f16 feature, running in f32/) });
      expect(() => resolvePrecision('f16')).toThrow(/precision f16: the adapter ".*" has no shader-f16 feature/);
      gpu.hasF16 = true;
      expect(resolvePrecision('auto')).toEqual({ dtype: 'f16', note: null });
    } finally {
      gpu.hasF16 = had;
    }
  });

  it('an f16 model stores parameters and positions in f16, BatchNorm statistics and rotary frequencies in f32', async () => {
    if (!runtime().gpu.hasF16) return;
    const cfg = normaliseConfig({ ...presetConfig('tiny'), vocab_size: 50 }, 'tiny');
    const w32 = Weights.init(cfg, 1), w16 = await Weights.init(cfg, 1, 'f16').ready();
    let b32 = 0, b16 = 0;
    for (const e of w16.spec) {
      if (e.kind === 'bn_count') continue;
      const t16 = w16.chunks(e.name), t32 = w32.chunks(e.name);
      for (const t of t16) expect(t.dtype).toBe(e.kind === 'param' || e.kind === 'pe' ? 'f16' : 'f32');
      b16 += t16.reduce((s, t) => s + t.bytes, 0);
      b32 += t32.reduce((s, t) => s + t.bytes, 0);
    }
    // Everything but the (tiny) statistics halves.
    expect(b16 / b32).toBeGreaterThan(0.5);
    expect(b16 / b32).toBeLessThan(0.51);
  });
});

describe('f16 activations where they are safe', () => {
  it('a deep backbone (ResNet-34, 16 blocks) runs in f32 under f16: its maps equal the f32 model\'s bit for bit on the same f16 weights; a 4-block one runs in f16', async () => {
    if (!runtime().gpu.hasF16) return;
    const { read, fromData } = await import('../src/graph/runtime.ts');
    const { Forward } = await import('../src/model/context.ts');
    const { visionEncoder } = await import('../src/model/vision.ts');
    const { backboneComputeType } = await import('../src/model/precision.ts');
    const R = rng('deep backbone f32');
    for (const [backbone, want] of [['resnet34', 'f32'], ['resnet10', 'f16']] as const) {
      const cfg = normaliseConfig({ ...presetConfig('tiny'), backbone, vocab_size: 50 }, backbone);
      expect(backboneComputeType(cfg, 'f16')).toBe(want);
      expect(backboneComputeType(cfg, 'f32')).toBe('f32');
      // The same f16-valued weights in an f32 model and in an f16 model.
      const sd16 = await Weights.init(cfg, 2).toStateDict({ dtype: 'F16' });
      const w32 = Weights.fromStateDict(cfg, sd16, 'f16 file'), w16 = await Weights.fromStateDict(cfg, sd16, 'f16 file', { dtype: 'f16' }).ready();
      const pixels = R.randn(2 * 3 * 32 * 32);
      const maps = async (w: Weights) => {
        const f = new Forward(w, { capture: true });
        visionEncoder(f, cfg, fromData(pixels, [2, 3, 32, 32]));
        const c5 = f.captures.get('vis_enc.c5')!;
        return { dtype: c5.dtype, values: Array.from(await read(c5)) };
      };
      const [a, b] = [await maps(w32), await maps(w16)];
      expect(b.dtype, backbone).toBe(want);
      // In f32 both models run the same kernels on the same values: equal, not close.
      if (want === 'f32') expect(b.values).toEqual(a.values);
      else expect(b.values).not.toEqual(a.values);
    }
  });
});

describe('f16 weight files', () => {
  it('toStateDict({dtype: F16}) writes half-size parameters; an F16 file loads into an f16 model bit for bit; an F32 file converts on the GPU', async () => {
    if (!runtime().gpu.hasF16) return;
    const { halfToFloat, toHalfBits, read } = await import('../src/graph/runtime.ts');
    const cfg = normaliseConfig({ ...presetConfig('tiny'), vocab_size: 50 }, 'tiny');
    const w32 = Weights.init(cfg, 4);
    const sd32 = await w32.toStateDict(), sd16 = await w32.toStateDict({ dtype: 'F16' });
    let bytes32 = 0, bytes16 = 0;
    for (const [k, t] of sd16) {
      const kind = w32.entry(k).kind;
      expect(t.dtype).toBe(kind === 'param' || kind === 'pe' ? 'F16' : kind === 'bn_count' ? 'I64' : 'F32');
      bytes16 += t.data.length;
      bytes32 += sd32.get(k)!.data.length;
    }
    expect(bytes16 / bytes32).toBeLessThan(0.51);
    // F16 file → f16 model: the stored bits as they are. F32 file → f16 model: rounded on the GPU,
    // equal to round-to-nearest-even on the CPU.
    const fromF16 = await Weights.fromStateDict(cfg, sd16, 'f16 file', { dtype: 'f16' }).ready();
    const fromF32 = await Weights.fromStateDict(cfg, sd32, 'f32 file', { dtype: 'f16' }).ready();
    for (const name of ['proj.1.weight', 'gen_logits.1.weight', 'text_embs.pe.pe']) {
      const want = Float32Array.from(await read(w32.get(name)), (v) => halfToFloat(toHalfBits(v)));
      expect(fromF16.get(name).dtype).toBe('f16');
      expect(Array.from(await read(fromF16.get(name)))).toEqual(Array.from(want));
      expect(Array.from(await read(fromF32.get(name)))).toEqual(Array.from(want));
    }
    expect(fromF32.get('vis_enc.layer1.1.running_var').dtype).toBe('f32');
  });

  it('an f16 model refuses to train (f32 master weights are needed) with a message saying what to do', async () => {
    if (!runtime().gpu.hasF16) return;
    const { trainStep } = await import('../src/train/trainer.ts');
    const cfg = normaliseConfig({ ...presetConfig('tiny'), vocab_size: 50 }, 'tiny');
    const w = Weights.init(cfg, 1, 'f16');
    await expect(trainStep(w, null as never, [], null as never, 0)).rejects.toThrow(/loaded in f16 \(for inference\)/);
  });
});
