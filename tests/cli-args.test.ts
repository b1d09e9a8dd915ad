// The command line's conventions: every verb's options parse from its declared spec (values
// typed and checked, defaults filled, the authors' snake_case names accepted as aliases), an
// unknown option is an error naming the closest valid one with exit code 2, and `--help`
// lists every option with its default.
import { describe, expect, it } from 'vitest';
import { closestOption, COMMANDS, commandHelp, editDistance, mainHelp, parseCommand, UsageError } from '../src/cli/args.ts';

declare const Deno: {
  readTextFile(p: string | URL): Promise<string>;
  execPath(): string;
  Command: new (cmd: string, o: { args: string[]; cwd?: string; stdout?: 'piped'; stderr?: 'piped' }) => {
    output(): Promise<{ code: number; stdout: Uint8Array; stderr: Uint8Array }>;
  };
};

const repo = decodeURIComponent(new URL('..', import.meta.url).pathname);

async function micar(args: string[]) {
  const r = await new Deno.Command(Deno.execPath(), { args: ['run', '-A', `${repo}src/cli/main.ts`, ...args], cwd: repo, stdout: 'piped', stderr: 'piped' }).output();
  const dec = new TextDecoder();
  return { code: r.code, stdout: dec.decode(r.stdout), stderr: dec.decode(r.stderr) };
}

function usageError(f: () => unknown): UsageError {
  try {
    f();
  } catch (e) {
    if (e instanceof UsageError) return e;
    throw e;
  }
  throw new Error('expected a UsageError');
}

describe('option specs', () => {
  it('are kebab-case, unique per verb (names and aliases), with a help line', () => {
    for (const [verb, spec] of Object.entries(COMMANDS)) {
      const seen = new Set<string>();
      for (const o of spec.options) {
        expect(o.name, `${verb} --${o.name}`).toMatch(/^[a-z][a-z0-9]*(-[a-z0-9]+)*$/);
        expect(o.help.length, `${verb} --${o.name} help`).toBeGreaterThan(3);
        for (const n of [o.name, ...(o.aliases ?? [])]) {
          expect(seen.has(n), `${verb}: --${n} declared twice`).toBe(false);
          seen.add(n);
        }
        if (o.default !== undefined && o.type !== 'string' && !Array.isArray(o.type) && o.type !== 'boolean') expect(typeof o.default, `${verb} --${o.name} default`).toBe('number');
        if (Array.isArray(o.type) && o.default !== undefined) expect(o.type, `${verb} --${o.name} default`).toContain(o.default);
      }
    }
  });

  it('config overrides name keys the presets have', async () => {
    const paper = JSON.parse(await Deno.readTextFile(`${repo}configs/paper.json`));
    for (const o of COMMANDS.train.options) if (o.configKey) expect(Object.keys(paper), `--${o.name}`).toContain(o.configKey);
  });
});

describe('parseCommand', () => {
  it('reads --name value, --name=value and bare flags; fills defaults; types numbers', () => {
    const p = parseCommand('train', ['--config', 'paper', '--epochs=3', '--resume', '--lr', '1e-4', '--data-dir', 'd']);
    expect(p.str('config')).toBe('paper');
    expect(p.num('epochs')).toBe(3);
    expect(p.flag('resume')).toBe(true);
    expect(p.num('lr')).toBe(1e-4);
    expect(p.str('out')).toBe('runs/train');
    expect(p.num('checkpoint-every')).toBe(50);
    expect(p.given('out')).toBe(false);
    expect(p.given('epochs')).toBe(true);
    expect(p.num('max-steps', 'optional')).toBeUndefined();
    expect(p.configOverrides()).toEqual({ epochs: 3, lr: 1e-4 });
  });

  it('accepts the authors\' snake_case argparse names as aliases', () => {
    const p = parseCommand('train', ['--batch_size', '16', '--max_patience', '50', '--v_lr', '5e-5', '--min_frequency', '3', '--dataset_name', 'covctr', '--data-dir', 'x', '--d_model', '512', '--act_fn', 'silu']);
    expect(p.configOverrides()).toEqual({ batch_size: 16, patience: 50, v_lr: 5e-5, min_frequency: 3, d_model: 512, act_fn: 'silu' });
    expect(p.str('data')).toBe('covctr');
    expect(parseCommand('generate', ['--checkpoint', 'c', '--image', 'i', '--beam_width', '3']).num('beam')).toBe(3);
  });

  it('rejects an unknown option naming the closest valid one', () => {
    expect(usageError(() => parseCommand('train', ['--max_patiance', '3'])).message).toMatch(/unknown option --max_patiance; did you mean --patience \(also --max_patience\)\?/);
    expect(usageError(() => parseCommand('train', ['--batchsize', '3'])).message).toMatch(/did you mean --batch-size/);
    expect(usageError(() => parseCommand('eval', ['--checkpoint', 'c', '--data_dir', 'x'])).message).toMatch(/unknown option --data_dir; did you mean --data-dir\?/);
    expect(usageError(() => parseCommand('generate', ['--checkpoint', 'c', '--image', 'i', '--beams=2'])).message).toMatch(/unknown option --beams; did you mean --beam/);
    expect(closestOption(COMMANDS.attention, 'colourmap')?.name).toBe('colormap');
    expect(editDistance('kitten', 'sitting')).toBe(3);
  });

  it('rejects bad values, missing values, missing required options, repeats and stray words', () => {
    expect(usageError(() => parseCommand('train', ['--epochs', 'ten'])).message).toMatch(/--epochs must be a number, got "ten"/);
    expect(usageError(() => parseCommand('train', ['--epochs', '2.5'])).message).toMatch(/--epochs must be an integer/);
    expect(usageError(() => parseCommand('train', ['--epochs', '0'])).message).toMatch(/--epochs must be at least 1/);
    expect(usageError(() => parseCommand('train', ['--data', 'mimic'])).message).toMatch(/--data must be one of phantom, covctr/);
    expect(usageError(() => parseCommand('train', ['--out'])).message).toMatch(/--out needs a value/);
    expect(usageError(() => parseCommand('train', ['--out', '--resume'])).message).toMatch(/--out needs a value/);
    expect(usageError(() => parseCommand('generate', ['--image', 'x.png'])).message).toMatch(/missing --checkpoint/);
    expect(usageError(() => parseCommand('train', ['--epochs', '2', '--epochs', '3'])).message).toMatch(/--epochs given twice/);
    expect(usageError(() => parseCommand('train', ['--lr', '1', 'extra'])).message).toMatch(/unexpected argument "extra"/);
    expect(usageError(() => parseCommand('golden', [])).message).toMatch(/missing <case>/);
    expect(parseCommand('golden', ['../shared/golden/tiny']).positionals).toEqual(['../shared/golden/tiny']);
    // A negative number is a value, not an option.
    expect(parseCommand('train', ['--seed', '-5']).num('seed')).toBe(-5);
  });

  it('main takes every train option except the dataset choice, with its own defaults', () => {
    const p = parseCommand('main', ['--budget', '60', '--batch-size', '8']);
    expect(p.str('out')).toBe('runs/main');
    expect(p.num('val-limit')).toBe(64);
    expect(p.configOverrides()).toEqual({ batch_size: 8 });
    const train = new Set(COMMANDS.train.options.map((o) => o.name));
    for (const o of COMMANDS.main.options) if (o.name !== 'budget' && o.name !== 'explain-limit') expect(train.has(o.name), o.name).toBe(true);
    expect(usageError(() => parseCommand('main', ['--data', 'covctr'])).message).toMatch(/unknown option --data/);
  });
});

describe('help', () => {
  it('lists every option of every verb with its default, and every verb', () => {
    const top = mainHelp();
    for (const [verb, spec] of Object.entries(COMMANDS)) {
      expect(top).toContain(`  ${verb} `);
      const h = commandHelp(verb);
      expect(h).toContain(`usage: micar ${verb}`);
      for (const o of spec.options) {
        const line = h.split('\n').findIndex((l) => l.startsWith(`  --${o.name} `) || l === `  --${o.name}`);
        expect(line, `${verb} --${o.name}`).toBeGreaterThanOrEqual(0);
        // The default sits on the option's line or on the next (long option names wrap).
        const text = h.split('\n').slice(line, line + 2).join(' ');
        expect(text, `${verb} --${o.name}`).toMatch(o.required ? /\[required\]/ : /\[default: [^\]]+\]/);
        for (const a of o.aliases ?? []) expect(text).toContain(`--${a}`);
      }
    }
    expect(commandHelp('train')).toMatch(/--checkpoint-every N\s+write last.safetensors every N steps \[default: 50\]/);
  });

  it('the command line: --help exits 0, an unknown option exits 2 naming the closest', async () => {
    const help = await micar(['train', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('--batch-size N');
    expect(help.stdout).toContain('also --max_patience');
    const top = await micar(['--help']);
    expect(top.code).toBe(0);
    expect(top.stdout).toMatch(/commands:[\s\S]*generate/);
    const bad = await micar(['train', '--max_patiance', '3']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('unknown option --max_patiance; did you mean --patience');
    const verb = await micar(['trian']);
    expect(verb.code).toBe(2);
    expect(verb.stderr).toContain('did you mean "train"');
    // A bad value that only the command's work finds (a config preset that does not exist): one
    // line naming the verb and the problem, exit 1, no stack trace.
    const preset = await micar(['generate', '--checkpoint', 'none.safetensors', '--image', 'none.png', '--config', 'nosuch', '--tune', 'off']);
    expect(preset.code).toBe(1);
    expect(preset.stderr).toMatch(/^micar generate: .*(nosuch|none\.safetensors)/m);
    expect(preset.stderr).not.toMatch(/^\s+at /m);
  });
});
