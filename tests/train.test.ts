// Training end to end on a micro model: the loss falls; a run killed with SIGKILL and resumed
// ends with exactly the weights of an uninterrupted run; a non-finite loss skips the update
// and writes no checkpoint.
import { beforeAll, describe, expect, it } from 'vitest';
import { fromData, init, read, writeData } from '../src/graph/runtime.ts';
import { normaliseConfig } from '../src/model/config.ts';
import { Weights } from '../src/model/weights.ts';
import { AdamW } from '../src/graph/ops/optim.ts';
import { NonFiniteError, train, trainStep } from '../src/train/trainer.ts';
import { checkpointBytes, loadCheckpoint, parseCheckpoint } from '../src/train/checkpoint.ts';
import { prepareExamples } from '../src/train/data.ts';
import { phantomSamples } from '../src/data/datasets.ts';
import { Tokenizer } from '../src/data/tokenizer.ts';
import { fromFloat32, readSafetensors, writeSafetensors } from '../src/io/safetensors.ts';

declare const Deno: {
  readTextFile(p: string | URL): Promise<string>;
  readFile(p: string): Promise<Uint8Array>;
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
  return { cfg, tok, examples: await prepareExamples(samples, cfg) };
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
    const common = ['train', '--config', microPath, '--data', 'phantom', '--data-dir', `${dir}/data`, '--phantom-count', '60', '--phantom-size', '32', '--seed', '21', '--max-steps', '6', '--val-limit', '4', '--epochs', '2'];
    // Uninterrupted reference.
    const ref = await cli([...common, '--out', `${dir}/ref`, '--checkpoint-every', '100']).output();
    expect(ref.code, new TextDecoder().decode(ref.stderr)).toBe(0);
    // Killed run: checkpoint every step, SIGKILL once a mid-run checkpoint exists.
    const child = cli([...common, '--out', `${dir}/killed`, '--checkpoint-every', '1']).spawn();
    let killedAt = -1;
    for (let i = 0; i < 600; i++) {
      await new Promise((r) => setTimeout(r, 200));
      if (await exists(`${dir}/killed/last.safetensors`)) {
        const ck = parseCheckpoint(await Deno.readFile(`${dir}/killed/last.safetensors`), 'last');
        if (ck.state.step >= 2) {
          child.kill('SIGKILL');
          killedAt = ck.state.step;
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
