// micar export: every format written from the golden tiny model (the authors' .pth with a
// vocabulary and config) and read back by the loader gives identical tensors (f32 exactly; f16
// exactly the f16 rounding of the f32 values — the golden weights are f16 values, so the f16
// export equals the golden weights.safetensors bit for bit); the exported .pth has the key
// layout of the authors' model_snapshot.pth; without a vocabulary the weights are written and a
// warning says so. With /usr/bin/python3 and torch present, torch loads the exported .pth into
// a module with the same state_dict keys (skipped otherwise).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readPth } from '../src/io/pth.ts';
import { readSafetensors, toFloat32, type HostTensor } from '../src/io/safetensors.ts';
import { type HostModel, readHostModel, readModel } from '../src/model/load.ts';
import { exportModel, type ExportFormat } from '../src/model/export.ts';
import { Tokenizer } from '../src/data/tokenizer.ts';
import { init } from '../src/graph/runtime.ts';

declare const Deno: {
  makeTempDir(): Promise<string>;
  writeFile(p: string, d: Uint8Array): Promise<void>;
  writeTextFile(p: string, d: string): Promise<void>;
  readFile(p: string): Promise<Uint8Array>;
  readDir(p: string): AsyncIterable<{ name: string }>;
  mkdir(p: string, o?: { recursive?: boolean }): Promise<void>;
  remove(p: string, o?: { recursive?: boolean }): Promise<void>;
  execPath(): string;
  Command: new (cmd: string, o: { args: string[]; cwd?: string; stdout?: 'piped'; stderr?: 'piped' }) => { output(): Promise<{ code: number; stdout: Uint8Array; stderr: Uint8Array }> };
};

const hasTorch = await new Deno.Command('/usr/bin/python3', { args: ['-c', 'import torch'], stdout: 'piped', stderr: 'piped' }).output().then((o) => o.code === 0, () => false);
const repo = decodeURIComponent(new URL('..', import.meta.url).pathname);
const golden = new URL('../../shared/golden/tiny/', import.meta.url).pathname;
let dir: string;
let src: HostModel;

async function writeAll(files: Map<string, Uint8Array>, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for (const [n, b] of files) await Deno.writeFile(`${to}/${n}`, b);
}

/** Same names; each tensor's values equal `want`'s rounded to `dtype` (exact comparison). */
function expectSameTensors(got: Map<string, HostTensor>, want: Map<string, HostTensor>, dtype: 'f32' | 'f16'): void {
  expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
  const f16 = new Float32Array(1);
  const round16 = (x: number) => {
    // f16 round-to-nearest-even via the writer's own helper would be circular; use Math.f16round where present.
    const m = Math as unknown as { f16round?: (x: number) => number };
    if (m.f16round) return m.f16round(x);
    f16[0] = x;
    return f16[0];
  };
  for (const [name, w] of want) {
    const g = got.get(name)!;
    expect(g.shape, name).toEqual(w.shape);
    const a = toFloat32(g), b = toFloat32(w);
    const keep32 = /rope\.freqs$|pe\.pe$|num_batches_tracked$/.test(name);
    let bad = -1;
    for (let i = 0; i < b.length && bad < 0; i++) if (a[i] !== (dtype === 'f16' && !keep32 ? round16(b[i]) : b[i])) bad = i;
    expect(bad, `${name}[${bad}]: ${a[bad]} vs ${b[bad]}`).toBe(-1);
  }
}

function cli(args: string[]) {
  return new Deno.Command(Deno.execPath(), { args: ['run', '-A', `${repo}src/cli/main.ts`, ...args], cwd: repo, stdout: 'piped', stderr: 'piped' }).output();
}

beforeAll(async () => {
  dir = await Deno.makeTempDir();
  const tok = Tokenizer.build(Array.from({ length: 36 }, (_, i) => `w${String(i).padStart(2, '0')}`), 1, 'whitespace');
  const v = tok.toAuthorsVocabFiles();
  await Deno.mkdir(`${dir}/vocab`);
  await Deno.writeTextFile(`${dir}/vocab/token2id.json`, v['token2id.json']);
  await Deno.writeTextFile(`${dir}/vocab/id2token.json`, v['id2token.json']);
  src = await readHostModel(`${golden}model_snapshot.pth`, { vocab: `${dir}/vocab`, config: `${golden}config.json` });
});

afterAll(async () => {
  await Deno.remove(dir, { recursive: true });
});

describe('export → load', () => {
  for (const to of ['authors', 'hf', 'safetensors'] as ExportFormat[]) {
    for (const dtype of ['f32', 'f16'] as const) {
      it(`${to} ${dtype}: identical tensors, config and vocabulary`, async () => {
        const { files, warning } = exportModel(src, to, { dtype });
        expect(warning).toBeUndefined();
        const out = `${dir}/${to}-${dtype}`;
        await writeAll(files, out);
        // The folder alone for hf; the authors' layout and a plain state dict need the config (and vocabulary).
        const back = await readHostModel(out, to === 'hf' ? {} : to === 'authors' ? { config: `${golden}config.json` } : { config: `${golden}config.json`, vocab: `${dir}/vocab` });
        expectSameTensors(back.stateDict, src.stateDict, dtype);
        expect(back.tokenizer!.tokens).toEqual(src.tokenizer!.tokens);
        for (const k of ['backbone', 'd_model', 'num_layers', 'num_experts', 'k', 'vocab_size', 'text_seq_len', 'moe_mode'] as const) expect(back.cfg[k], k).toEqual(src.cfg[k]);
        if (dtype === 'f16') {
          // The golden weights are f16 values: the f16 export is exactly the golden file's floats.
          const goldenSd = readSafetensors(await Deno.readFile(`${golden}weights.safetensors`), 'weights.safetensors').tensors;
          for (const [n, t] of goldenSd) if (t.dtype === 'F16') expect(back.stateDict.get(n)!.dtype, n).toBe('F16');
        }
      });
    }
  }

  it("the exported .pth has the key layout of the authors' model_snapshot.pth", async () => {
    const want = readPth(await Deno.readFile(`${golden}model_snapshot.pth`), 'golden');
    const got = readPth(exportModel(src, 'authors').files.get('model_snapshot.pth')!, 'exported');
    expect([...got.stateDict.keys()]).toEqual([...want.stateDict.keys()]);
    for (const [k, t] of want.stateDict) {
      expect(got.stateDict.get(k)!.dtype, k).toBe(t.dtype);
      expect(got.stateDict.get(k)!.shape, k).toEqual(t.shape);
    }
    expect(got.otherKeys).toEqual([]); // only "model"; their whole_model pickle is not written
  });

  it('a hf export loads on the GPU with the golden weights', async () => {
    await init();
    const m = await readModel(`${dir}/hf-f32`);
    expectSameTensors(await m.weights.toStateDict(), src.stateDict, 'f32');
    expect(m.tokenizer.cleaner).toBe('whitespace');
  });

  it('micar export CLI: a checkpoint-less .pth with --config, without --vocab, writes the weights and warns', async () => {
    const r = await cli(['export', '--weights', `${golden}model_snapshot.pth`, '--config', `${golden}config.json`, '--to', 'authors', '--out', `${dir}/cli-novocab`]);
    const err = new TextDecoder().decode(r.stderr);
    expect(r.code, err).toBe(0);
    expect(err).toMatch(/no vocabulary was given.*token2id\.json \/ id2token\.json missing/);
    const names: string[] = [];
    for await (const e of Deno.readDir(`${dir}/cli-novocab`)) names.push(e.name);
    expect(names.sort()).toEqual(['model_snapshot.pth']);
    const back = readPth(await Deno.readFile(`${dir}/cli-novocab/model_snapshot.pth`), 'back');
    expectSameTensors(back.stateDict, src.stateDict, 'f32');
    const bad = await cli(['export', '--weights', `${golden}model_snapshot.pth`, '--to', 'onnx', '--out', `${dir}/x`]);
    expect(bad.code).not.toBe(0);
    expect(bad.code).toBe(2);
    expect(new TextDecoder().decode(bad.stderr)).toMatch(/--to must be one of authors, hf, safetensors/);
  });

  it.skipIf(!hasTorch)("torch: the authors' module tree (golden gen.py CaptionModel) takes load_state_dict(torch.load(p)[\"model\"], strict=True)", async () => {
    await writeAll(exportModel(src, 'authors').files, `${dir}/torch`);
    // gen.py has the authors' module tree and state_dict names (see ../shared/golden/README.md).
    const py = `
import json, sys
sys.path.insert(0, sys.argv[2])
import torch, gen
cfg = json.load(open(sys.argv[3]))
model = gen.CaptionModel(cfg)
sd = torch.load(sys.argv[1], map_location="cpu")["model"]
model.load_state_dict(sd, strict=True)
after = model.state_dict()
print(len(after), float(sum(v.double().abs().sum() for v in after.values() if v.is_floating_point())))
`;
    const r = await new Deno.Command('/usr/bin/python3', { args: ['-c', py, `${dir}/torch/model_snapshot.pth`, `${golden}..`, `${golden}config.json`], stdout: 'piped', stderr: 'piped' }).output();
    expect(r.code, new TextDecoder().decode(r.stderr)).toBe(0);
    const [n, sum] = new TextDecoder().decode(r.stdout).trim().split(' ').map(Number);
    expect(n).toBe(src.stateDict.size);
    let want = 0;
    for (const [, t] of src.stateDict) if (t.dtype !== 'I64') for (const v of toFloat32(t)) want += Math.abs(v);
    // Both sums are float64 over the same f32 values; they differ by summation order only.
    expect(Math.abs(sum - want) / want).toBeLessThan(1e-12);
  });
});
