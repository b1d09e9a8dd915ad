// The one model loader (src/model/load.ts): the authors' model_snapshot.pth with a vocabulary
// folder and a config, a micar checkpoint, a DDP `module.` state dict, a URL, and the errors a
// user meets. Loaded weights are compared exactly with the golden weights.safetensors (f16
// values widened to f32: exact, so the comparison is equality).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { init } from '../src/graph/runtime.ts';
import { readModel } from '../src/model/load.ts';
import { readSafetensors, toFloat32, writeSafetensors, type HostTensor } from '../src/io/safetensors.ts';
import { writePth } from '../src/io/pth-writer.ts';
import { Tokenizer } from '../src/data/tokenizer.ts';
import type { Weights } from '../src/model/weights.ts';
import { encodePng } from '../src/data/images.ts';
import { generatePhantomSample } from '../src/data/phantom.ts';

declare const Deno: {
  makeTempDir(): Promise<string>;
  writeFile(p: string, d: Uint8Array): Promise<void>;
  writeTextFile(p: string, d: string): Promise<void>;
  readFile(p: string): Promise<Uint8Array<ArrayBuffer>>;
  mkdir(p: string): Promise<void>;
  remove(p: string, o?: { recursive?: boolean }): Promise<void>;
  execPath(): string;
  Command: new (cmd: string, o: { args: string[]; cwd?: string; stdout?: 'piped'; stderr?: 'piped' }) => { output(): Promise<{ code: number; stdout: Uint8Array; stderr: Uint8Array }> };
  serve(o: { port: number; hostname: string; onListen?: () => void }, h: (r: Request) => Response | Promise<Response>): { shutdown(): Promise<void>; addr: { port: number } };
};

const repo = decodeURIComponent(new URL('..', import.meta.url).pathname);
const cli = (args: string[]) => new Deno.Command(Deno.execPath(), { args: ['run', '-A', `${repo}src/cli/main.ts`, ...args], cwd: repo, stdout: 'piped', stderr: 'piped' }).output();
const golden = new URL('../../shared/golden/tiny/', import.meta.url).pathname;
let dir: string;
let want: Map<string, HostTensor>;
let tok: Tokenizer;

/** Every weight of `w` equals the golden tensor (f32 values of the stored f16/f32). */
async function expectGoldenWeights(w: Weights): Promise<void> {
  const got = await w.toStateDict();
  expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
  for (const [name, t] of want) {
    const a = toFloat32(got.get(name)!), b = toFloat32(t);
    let bad = -1;
    for (let i = 0; i < b.length && bad < 0; i++) if (a[i] !== b[i]) bad = i;
    expect(bad, `${name}[${bad}]`).toBe(-1);
  }
}

beforeAll(async () => {
  await init();
  dir = await Deno.makeTempDir();
  want = readSafetensors(await Deno.readFile(`${golden}weights.safetensors`), 'weights.safetensors').tensors;
  // The golden model has 40 tokens; any 40-token vocabulary fits it.
  tok = Tokenizer.build(Array.from({ length: 36 }, (_, i) => `w${String(i).padStart(2, '0')}`), 1, 'whitespace');
  const files = tok.toAuthorsVocabFiles();
  await Deno.writeTextFile(`${dir}/token2id.json`, files['token2id.json']);
  await Deno.writeTextFile(`${dir}/id2token.json`, files['id2token.json']);
});

afterAll(async () => {
  await Deno.remove(dir, { recursive: true });
});

describe('readModel', () => {
  it("the authors' model_snapshot.pth with --vocab DIR and --config FILE", async () => {
    const m = await readModel(`${golden}model_snapshot.pth`, { vocab: dir, config: `${golden}config.json` });
    expect(m.tokenizer.tokens).toEqual(tok.tokens);
    expect(m.cfg.vocab_size).toBe(40);
    await expectGoldenWeights(m.weights);
    // The vocabulary given as one of the authors' files finds its partner.
    const m2 = await readModel(`${golden}model_snapshot.pth`, { vocab: `${dir}/token2id.json`, config: `${golden}config.json` });
    expect(m2.tokenizer.tokens).toEqual(tok.tokens);
  });

  it('errors name the file and what is missing', async () => {
    await expect(readModel(`${golden}model_snapshot.pth`, { config: `${golden}config.json` })).rejects.toThrow(/model_snapshot\.pth is a plain state dict: it needs its vocabulary/);
    await expect(readModel(`${golden}model_snapshot.pth`, { vocab: dir })).rejects.toThrow(/model_snapshot\.pth is a plain state dict: it needs a config/);
    // A preset with another architecture: the state dict mismatch names tensors.
    await expect(readModel(`${golden}model_snapshot.pth`, { vocab: dir, config: 'tiny' })).rejects.toThrow(/model_snapshot\.pth: state dict does not match config.*wrong shape: text_embs\.pe\.pe/);
    await expect(readModel(`${golden}model_snapshot.pth`, { vocab: dir, config: 'nosuch' })).rejects.toThrow(/config preset "nosuch" does not exist/);
    // A config whose vocab_size disagrees with the vocabulary names the field.
    await Deno.writeTextFile(`${dir}/bad-config.json`, JSON.stringify({ ...JSON.parse(new TextDecoder().decode(await Deno.readFile(`${golden}config.json`))), vocab_size: 41 }));
    await expect(readModel(`${golden}model_snapshot.pth`, { vocab: dir, config: `${dir}/bad-config.json` })).rejects.toThrow(/bad-config\.json: field "vocab_size" is 41 but the vocabulary has 40 tokens/);
    await expect(readModel(`${dir}/nothing.pth`)).rejects.toThrow(/nothing\.pth: cannot read/);
  });

  it('a DDP state dict (module. prefix) in safetensors, and a micar checkpoint from bytes', async () => {
    const ddp = new Map([...want].map(([k, v]) => [`module.${k}`, v]));
    await Deno.writeFile(`${dir}/ddp.pth`, writePth(ddp));
    const m = await readModel(`${dir}/ddp.pth`, { vocab: dir, config: `${golden}config.json` });
    await expectGoldenWeights(m.weights);
    const ck = writeSafetensors(await m.weights.toStateDict(), { format: 'micar-checkpoint/1', config: JSON.stringify(m.cfg), tokenizer: JSON.stringify(tok.toJSON()) });
    const back = await readModel(ck, { name: 'ck.safetensors' });
    expect(back.source).toBe('checkpoint ck.safetensors');
    expect(back.tokenizer.tokens).toEqual(tok.tokens);
    await expectGoldenWeights(back.weights);
  });

  it('a folder in the authors\' layout and the same folder over HTTP', async () => {
    const folder = `${dir}/authors`;
    await Deno.mkdir(folder);
    for (const n of ['token2id.json', 'id2token.json']) await Deno.writeFile(`${folder}/${n}`, await Deno.readFile(`${dir}/${n}`));
    await Deno.writeFile(`${folder}/model_snapshot.pth`, await Deno.readFile(`${golden}model_snapshot.pth`));
    await Deno.writeFile(`${folder}/config.json`, await Deno.readFile(`${golden}config.json`));
    await expectGoldenWeights((await readModel(folder)).weights);
    const server = Deno.serve({ port: 0, hostname: '127.0.0.1', onListen() {} }, async (r) => {
      const name = new URL(r.url).pathname.split('/').pop()!;
      try {
        return new Response(await Deno.readFile(`${folder}/${name}`));
      } catch {
        return new Response('not found', { status: 404 });
      }
    });
    try {
      const base = `http://127.0.0.1:${server.addr.port}/m/`;
      const m = await readModel(base);
      await expectGoldenWeights(m.weights);
      await expect(readModel(`http://127.0.0.1:${server.addr.port}/m/missing.pth`)).rejects.toThrow(/missing\.pth: HTTP 404/);
    } finally {
      await server.shutdown();
    }
  });

  it("micar generate and train --init take the authors' .pth with --vocab and --config", async () => {
    await Deno.writeFile(`${dir}/scan.png`, encodePng(generatePhantomSample(3, 1, 64).image));
    const source = ['--checkpoint', `${golden}model_snapshot.pth`, '--vocab', dir, '--config', `${golden}config.json`];
    const g = await cli(['generate', ...source, '--image', `${dir}/scan.png`, '--max-len', '6', '--tune', 'off']);
    // The report is the last line (the kernel tuner may log before it).
    const out = new TextDecoder().decode(g.stdout).trim().split('\n').pop()!;
    expect(g.code, new TextDecoder().decode(g.stderr)).toBe(0);
    const words = out.split(' ');
    expect(words.length).toBeGreaterThan(0);
    expect(words.length).toBeLessThanOrEqual(6);
    for (const w of words) expect(tok.tokens, w).toContain(w);
    // One training step from the .pth: the vocabulary comes with it (40 tokens), the config is --config's.
    const t = await cli(['train', '--init', `${golden}model_snapshot.pth`, '--vocab', dir, '--config', `${golden}config.json`,
      '--data', 'phantom', '--data-dir', `${dir}/phantom`, '--phantom-count', '12', '--phantom-size', '64', '--max-steps', '1', '--epochs', '1', '--out', `${dir}/run`, '--tune', 'off']);
    const log = new TextDecoder().decode(t.stdout);
    expect(t.code, new TextDecoder().decode(t.stderr) + log).toBe(0);
    expect(log).toMatch(/vocabulary 40/);
  });
});
