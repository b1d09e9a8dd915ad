// Training end to end on a micro model: the loss falls; a run killed with SIGKILL and resumed
// ends with exactly the weights of an uninterrupted run; a non-finite loss skips the update
// and writes no checkpoint.
import { beforeAll, describe, expect, it } from 'vitest';
import { fromData, init, read, runtime, writeData } from '../src/graph/runtime.ts';
import { normaliseConfig } from '../src/model/config.ts';
import { Weights } from '../src/model/weights.ts';
import { AdamW } from '../src/graph/ops/optim.ts';
import { NonFiniteError, train, trainStep } from '../src/train/trainer.ts';
import { checkpointBytes, type KernelChoicesState, loadCheckpoint, parseCheckpoint } from '../src/train/checkpoint.ts';
import { HAND_PICK, kernelChoices } from '../src/graph/kernels/catalogue.ts';
import { prepareExamples, THUMB } from '../src/train/data.ts';
import { pixelsOf } from '../src/train/batches.ts';
import { nearestNeighbourReports, nearestNeighbourSpace } from '../src/train/evaluate.ts';
import { phantomSamples } from '../src/data/datasets.ts';
import { Tokenizer } from '../src/data/tokenizer.ts';
import { fromFloat32, readSafetensors, writeSafetensors } from '../src/io/safetensors.ts';

declare const Deno: {
  readTextFile(p: string | URL): Promise<string>;
  readFile(p: string): Promise<Uint8Array>;
  writeFile(p: string, data: Uint8Array): Promise<void>;
  makeTempDir(): Promise<string>;
  stat(p: string): Promise<unknown>;
  execPath(): string;
  Command: new (cmd: string, o: { args: string[]; cwd?: string; stdout?: 'piped' | 'null'; stderr?: 'piped' | 'null' }) => {
    spawn(): { pid: number; kill(sig: string): void; status: Promise<{ code: number; signal: string | null }>; output(): Promise<{ code: number; stdout: Uint8Array; stderr: Uint8Array }> };
    output(): Promise<{ code: number; stdout: Uint8Array; stderr: Uint8Array }>;
  };
};

const repo = decodeURIComponent(new URL('..', import.meta.url).pathname);
const microPath = `${repo}tests/fixtures/micro.json`;

beforeAll(async () => {
  await init();
});

async function microData(count: number) {
  const raw = JSON.parse(await Deno.readTextFile(microPath));
  const samples = phantomSamples({ count, seed: 3, size: 32 });
  const tok = Tokenizer.build(samples.map((s) => s.report), 1, 'whitespace');
  const cfg = normaliseConfig({ ...raw, vocab_size: tok.vocabSize });
  return { cfg, tok, samples, examples: await prepareExamples(samples, cfg) };
}

function cli(args: string[]) {
  return new Deno.Command(Deno.execPath(), { args: ['run', '-A', `${repo}src/cli/main.ts`, ...args], cwd: repo, stdout: 'piped', stderr: 'piped' });
}

async function weightsOf(path: string): Promise<Map<string, Uint8Array>> {
  const { tensors } = readSafetensors(await Deno.readFile(path), path);
  return new Map([...tensors].map(([k, t]) => [k, t.data]));
}

async function exists(p: string) {
  try {
    await Deno.stat(p);
    return true;
  } catch {
    return false;
  }
}

describe('training', () => {
  it('the loss falls on the phantom task', async () => {
    const { cfg, tok, examples } = await microData(48);
    const w = Weights.init(cfg, 5);
    const { vision, other } = w.trainable();
    const opt = new AdamW([{ params: vision, lr: 2e-3 }, { params: other, lr: 2e-3 }], { betas: [0.9, 0.999], eps: 1e-8, weightDecay: 5e-5, amsgrad: true });
    const batch = examples.slice(0, 8);
    const losses: number[] = [];
    for (let s = 0; s < 12; s++) losses.push(await trainStep(w, opt, batch, tok, s));
    console.log(`micro losses: ${losses.map((l) => l.toFixed(3)).join(' ')}`);
    expect(losses[11]).toBeLessThan(0.6 * losses[0]);
  });

  it('a run killed with SIGKILL and resumed ends with the same weights as an uninterrupted run', async () => {
    const dir = await Deno.makeTempDir();
    // --tune off: the reference and the killed run would start from different tune-cache states
    // (the first run fills the cache), and configurations that sum in other orders round
    // differently; what a resume keeps of the kernels is checked below and in tests/tuner.test.ts.
    const common = ['train', '--config', microPath, '--data', 'phantom', '--data-dir', `${dir}/data`, '--phantom-count', '60', '--phantom-size', '32', '--seed', '21', '--max-steps', '6', '--val-limit', '4', '--epochs', '2', '--tune', 'off'];
    // Uninterrupted reference.
    const ref = await cli([...common, '--out', `${dir}/ref`, '--checkpoint-every', '100']).output();
    expect(ref.code, new TextDecoder().decode(ref.stderr)).toBe(0);
    // Killed run: checkpoint every step, SIGKILL once a mid-run checkpoint exists.
    const child = cli([...common, '--out', `${dir}/killed`, '--checkpoint-every', '1']).spawn();
    let killedAt = -1, kernels: KernelChoicesState | undefined;
    for (let i = 0; i < 600; i++) {
      await new Promise((r) => setTimeout(r, 200));
      if (await exists(`${dir}/killed/last.safetensors`)) {
        const ck = parseCheckpoint(await Deno.readFile(`${dir}/killed/last.safetensors`), 'last');
        if (ck.state.step >= 2) {
          child.kill('SIGKILL');
          killedAt = ck.state.step;
          kernels = ck.state.kernels;
          break;
        }
      }
    }
    const st = await child.status;
    expect(st.signal ?? 'exited').toBe('SIGKILL');
    expect(killedAt).toBeGreaterThanOrEqual(2);
    expect(killedAt).toBeLessThan(6);
    const resumed = await cli([...common, '--out', `${dir}/killed`, '--checkpoint-every', '1', '--resume']).output();
    const log = new TextDecoder().decode(resumed.stdout);
    expect(resumed.code, new TextDecoder().decode(resumed.stderr)).toBe(0);
    expect(log).toMatch(/resumed from/);
    // The checkpoint keeps the kernel configuration of every class the steps met (hand picks,
    // tuning off), and the resumed run pins them.
    expect(Object.keys(kernels!.choices)).toEqual(expect.arrayContaining([expect.stringMatching(/^loss\//), expect.stringMatching(/^matmul\//)]));
    expect(Object.values(kernels!.choices).every((k) => k === HAND_PICK)).toBe(true);
    expect(log).toMatch(new RegExp(`kernels: ${Object.keys(kernels!.choices).length} geometry classes keep`));
    const a = await weightsOf(`${dir}/ref/last.safetensors`), b = await weightsOf(`${dir}/killed/last.safetensors`);
    expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
    let differing = 0;
    for (const [k, v] of a) if (v.length !== b.get(k)!.length || v.some((x, i) => x !== b.get(k)![i])) differing++;
    console.log(`killed at step ${killedAt}; tensors differing after resume: ${differing} of ${a.size}`);
    expect(differing).toBe(0);
  });

  it('a non-finite loss stops the step, names the cause, and leaves weights and checkpoints untouched', async () => {
    const { cfg, tok, examples } = await microData(8);
    const dir = await Deno.makeTempDir();
    const w = Weights.init(cfg, 9);
    const before = await read(w.get('proj.1.weight'));
    const { vision, other } = w.trainable();
    const opt = new AdamW([{ params: vision, lr: 1e-3 }, { params: other, lr: 1e-3 }], { betas: [0.9, 0.999], eps: 1e-8, weightDecay: 5e-5, amsgrad: true });
    // A NaN weight in the output norm makes every logit NaN (as an exploding run would).
    const g0 = Float32Array.from(await read(w.get('gen_logits.0.weight')));
    g0[3] = NaN;
    writeData(w.get('gen_logits.0.weight'), g0);
    const bad = examples;
    await expect(trainStep(w, opt, bad, tok, 1)).rejects.toThrow(/non-finite loss.*gradient: (gen_logits|decoder|encoder|proj|vis_enc|text_embs)/);
    expect(Array.from(await read(w.get('proj.1.weight')))).toEqual(Array.from(before));
    // The trainer propagates it and never writes a checkpoint.
    await expect(train({ cfg, tokenizer: tok, train: bad, val: [], outDir: dir, seed: 1, checkpointEvery: 1, quiet: true, initial: w })).rejects.toThrow(NonFiniteError);
    expect(await exists(`${dir}/last.safetensors`)).toBe(false);
    void fromData;
  });

  it('a split decoded per batch (over the memory budget) trains exactly like the same split held in memory', async () => {
    const { cfg, tok, samples, examples } = await microData(24);
    const lazy = await prepareExamples(samples, cfg, undefined, { pixelMemory: 3 * cfg.image_size ** 2 * 4 * 23 });
    const S = cfg.image_size;
    expect(examples.every((e) => e.pixels)).toBe(true);
    expect(lazy.every((e) => e.pixels === null && e.load && e.thumb)).toBe(true);
    for (const [i, e] of lazy.entries()) {
      expect(relEq(await pixelsOf(e), examples[i].pixels!)).toBe(true);
      // Thumbnail: mean over each cell of the 16×16 grid (float64 reference).
      const px = examples[i].pixels!, th = e.thumb!;
      let worst = 0;
      for (let c = 0; c < 3; c++)
        for (let ty = 0; ty < THUMB; ty++)
          for (let tx = 0; tx < THUMB; tx++) {
            let sum = 0, n = 0;
            for (let y = 0; y < S; y++) for (let x = 0; x < S; x++)
              if (Math.floor((y * THUMB) / S) === ty && Math.floor((x * THUMB) / S) === tx) {
                sum += px[c * S * S + y * S + x];
                n++;
              }
            worst = Math.max(worst, Math.abs(th[(c * THUMB + ty) * THUMB + tx] - sum / n));
          }
      expect(worst).toBeLessThan(1e-5);
    }
    // Same losses and bit-identical weights after a few steps (batches prefetched during steps).
    const run = async (ex: typeof examples) => {
      const dir = await Deno.makeTempDir();
      // 4 steps per epoch: the prefetch crosses an epoch boundary; no validation (generation is slow here).
      const r = await train({ cfg: { ...cfg, batch_size: 5, epochs: 2 }, tokenizer: tok, train: ex.slice(4), val: [], outDir: dir, seed: 4, maxSteps: 5, quiet: true, log: () => {} });
      return { history: r.history, weights: await weightsOf(`${dir}/last.safetensors`) };
    };
    const a = await run(examples), b = await run(lazy);
    expect(b.history.map((h) => h.loss)).toEqual(a.history.map((h) => h.loss));
    let differing = 0;
    for (const [k, v] of a.weights) if (!relEq(v, b.weights.get(k)!)) differing++;
    expect(differing).toBe(0);
    // The nearest-neighbour baseline falls back to thumbnails: the argmin over them.
    expect(nearestNeighbourSpace(lazy.slice(4), lazy.slice(0, 4))).toBe('thumbnails');
    expect(nearestNeighbourSpace(examples.slice(4), examples.slice(0, 4))).toBe('pixels');
    const nn = nearestNeighbourReports(lazy.slice(4), lazy.slice(0, 4));
    lazy.slice(0, 4).forEach((q, i) => {
      const d = lazy.slice(4).map((t) => t.thumb!.reduce((acc, v, k) => acc + (v - q.thumb![k]) ** 2, 0));
      expect(nn[i]).toBe(lazy[4 + d.indexOf(Math.min(...d))].report);
    });
  });

  it('best holds weights, config and vocabulary only; last keeps the optimiser state for --resume', async () => {
    const { cfg, tok, examples } = await microData(16);
    const dir = await Deno.makeTempDir();
    // One epoch of two steps, no validation: best is written at the epoch's end, like last.
    await train({ cfg: { ...cfg, batch_size: 8, epochs: 1 }, tokenizer: tok, train: examples, val: [], outDir: dir, seed: 2, quiet: true, log: () => {} });
    const best = readSafetensors(await Deno.readFile(`${dir}/best.safetensors`), 'best');
    const last = readSafetensors(await Deno.readFile(`${dir}/last.safetensors`), 'last');
    expect(Object.keys(best.metadata).sort()).toEqual(['config', 'format', 'tokenizer']);
    expect([...best.tensors.keys()].filter((k) => k.startsWith('optim.'))).toEqual([]);
    expect(Object.keys(last.metadata)).toEqual(expect.arrayContaining(['optimizer', 'state']));
    expect([...last.tensors.keys()].some((k) => k.startsWith('optim.'))).toBe(true);
    // Same model weights in both (same epoch end).
    const model = [...last.tensors.keys()].filter((k) => !k.startsWith('optim.'));
    expect([...best.tensors.keys()].sort()).toEqual(model.sort());
    for (const k of model) expect(relEq(best.tensors.get(k)!.data, last.tensors.get(k)!.data), k).toBe(true);
    const bytes = async (p: string) => (await Deno.readFile(p)).length;
    console.log(`best ${await bytes(`${dir}/best.safetensors`)} bytes, last ${await bytes(`${dir}/last.safetensors`)} bytes`);
    const ck = (await loadCheckpoint(`${dir}/best.safetensors`))!;
    const { vision, other } = ck.weights.trainable();
    expect(() => ck.loadOptimizer(new AdamW([{ params: vision, lr: 1e-3 }, { params: other, lr: 1e-3 }], { betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0, amsgrad: true }), ck.weights)).toThrow(/best\.safetensors: checkpoint has no optimiser state.*resume from "last"/);
  });

  it('--resume pins the kernel choices a checkpoint kept on this adapter, and says why when it cannot', async () => {
    const { cfg, tok, examples } = await microData(16);
    const dir = await Deno.makeTempDir();
    const c = { ...cfg, batch_size: 8, epochs: 2 };
    await train({ cfg: c, tokenizer: tok, train: examples, val: [], outDir: dir, seed: 2, maxSteps: 1, checkpointEvery: 1, quiet: true, log: () => {} });
    const file = readSafetensors(await Deno.readFile(`${dir}/last.safetensors`), 'last');
    const state = JSON.parse(file.metadata.state);
    expect(state.kernels.adapter).toBe(runtime().profile.key);
    const lossId = Object.keys(state.kernels.choices).find((k) => k.startsWith('loss/'))!;
    expect(lossId).toBeDefined();
    /** Resumes (one more step) from last.safetensors with state.kernels replaced; returns the log and the new checkpoint's choices. */
    const resumeWith = async (kernels: unknown) => {
      const d = await Deno.makeTempDir();
      await Deno.writeFile(`${d}/last.safetensors`, writeSafetensors(file.tensors, { ...file.metadata, state: JSON.stringify({ ...state, kernels }) }));
      const lines: string[] = [];
      await train({ cfg: c, tokenizer: tok, train: examples, val: [], outDir: d, seed: 2, maxSteps: 2, checkpointEvery: 1, quiet: true, resume: true, log: (l) => lines.push(l) });
      const after = JSON.parse(readSafetensors(await Deno.readFile(`${d}/last.safetensors`), 'resumed').metadata.state);
      return { log: lines.join('\n'), choices: after.kernels.choices as Record<string, string> };
    };
    // Same adapter: pinned (a width the tuner could have chosen, not the hand pick), then unpinned
    // when the run ends.
    const pinned = await resumeWith({ ...state.kernels, choices: { ...state.kernels.choices, [lossId]: 'wg16' } });
    expect(pinned.log).toMatch(new RegExp(`kernels: ${Object.keys(state.kernels.choices).length} geometry classes keep the configurations of .*last\\.safetensors`));
    expect(pinned.choices[lossId]).toBe('wg16');
    expect(kernelChoices()[lossId]).toBe(HAND_PICK);
    const foreign = await resumeWith({ ...state.kernels, adapter: 'another GPU', choices: { [lossId]: 'wg16' } });
    expect(foreign.log).toMatch(/last\.safetensors was written on another adapter \(another GPU\): kernels are chosen here/);
    expect(foreign.choices[lossId]).toBe(HAND_PICK);
    expect((await resumeWith(5)).log).toMatch(/last\.safetensors holds no readable kernel choices \(state\.kernels\)/);
  });

  it('a corrupt or foreign checkpoint is a clear error naming the file', async () => {
    const { cfg, tok } = await microData(4);
    const w = Weights.init(cfg, 2);
    const bytes = await checkpointBytes(w, null, tok, null);
    const back = parseCheckpoint(bytes, 'ok.safetensors');
    expect(back.cfg.d_model).toBe(cfg.d_model);
    expect(relEq(await read(back.weights.get('gen_logits.1.weight')), await read(w.get('gen_logits.1.weight')))).toBe(true);
    expect(() => parseCheckpoint(bytes.slice(0, bytes.length - 100), 'cut.safetensors')).toThrow(/cut\.safetensors/);
    const plain = writeSafetensors(new Map([['x', fromFloat32([1, 2], [2])]]));
    expect(() => parseCheckpoint(plain, 'plain.safetensors')).toThrow(/plain\.safetensors: not a micar checkpoint/);
    const dir = await Deno.makeTempDir();
    await expect(loadCheckpoint(`${dir}/missing.safetensors`)).rejects.toThrow(/missing\.safetensors/);
  });
});

function relEq(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  return a.length === b.length && Array.from(a).every((x, i) => x === b[i]);
}
