// `micar` command line (Deno). Verbs grow with the project; `main` is the README's main job.
import { init, fromData, read, realize } from '../graph/runtime.ts';
import { matmul } from '../graph/ops/matmul.ts';
import { mul, sumTo } from '../graph/ops/elementwise.ts';
import { grad, param } from '../graph/autograd.ts';
import { parsePrecision } from '../model/precision.ts';
import { COMMANDS, commandHelp, editDistance, mainHelp, parseCommand, UsageError, wantsHelp } from './args.ts';

declare const Deno: { args: string[]; exit(code: number): never; env: { get(k: string): string | undefined } };

async function smoke(): Promise<void> {
  const r = await init();
  console.log(`adapter: ${r.gpu.adapterName} (f16: ${r.gpu.hasF16}, timestamps: ${r.gpu.hasTimestamps})`);
  const n = 64;
  const a = param(fromData(Float32Array.from({ length: n * n }, (_, i) => Math.sin(i)), [n, n]));
  const b = fromData(Float32Array.from({ length: n * n }, (_, i) => Math.cos(i)), [n, n]);
  const loss = sumTo(mul(matmul(a, b), matmul(a, b)), []);
  const [ga] = grad(loss, [a]);
  const stats = await realize([loss, ga!]);
  console.log(`matmul + autograd step: loss ${(await read(loss))[0].toFixed(3)}, |grad| entries ${ga!.size}, ` +
    `${stats.dispatches} dispatches in ${stats.submissions} submission, peak ${stats.peakBytes} bytes`);
}

async function golden(args: string[]): Promise<void> {
  const p = parseCommand('golden', args);
  const { runGolden } = await import('./golden.ts');
  const r = await runGolden(p.positionals[0], console.log, { precision: parsePrecision(p.str('precision')) });
  if (!r.pass) Deno.exit(1);
}

/** Each verb's implementation; its options are declared in COMMANDS (args.ts). */
const run: Record<string, (args: string[]) => Promise<void>> = {
  main: async (a) => (await import('./commands.ts')).mainJob(a),
  train: async (a) => void (await (await import('./commands.ts')).trainCommand(a)),
  eval: async (a) => (await import('./commands.ts')).evalCommand(a),
  smoke: async (a) => (parseCommand('smoke', a), smoke()),
  golden,
  attention: async (a) => (await import('./viz.ts')).attentionCommand(a),
  explain: async (a) => (await import('./viz.ts')).explainCommand(a),
  generate: async (a) => (await import('./generate.ts')).generateCommand(a),
  export: async (a) => (await import('./export.ts')).exportCommand(a),
  tune: async (a) => (await import('./tune.ts')).tuneCommand(a),
};

/**
 * `--tune off|cached|full` (any verb; default cached): kernel autotuning for this run. Taken
 * out of the verb's arguments; verbs that run on the CPU only never start the GPU for it.
 */
function takeTuneOption(args: string[]): { args: string[]; tune: 'off' | 'cached' | 'full' } {
  const out: string[] = [];
  let tune = 'cached';
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--tune' && i + 1 < args.length) tune = args[++i];
    else if (a.startsWith('--tune=')) tune = a.slice(7);
    else out.push(a);
  }
  if (!['off', 'cached', 'full'].includes(tune)) throw new UsageError(`--tune must be off, cached or full, got "${tune}"`);
  return { args: out, tune: tune as 'off' | 'cached' | 'full' };
}
const CPU_VERBS = new Set(['export']);

for (const v of Object.keys(COMMANDS)) if (!run[v]) throw new Error(`micar: command "${v}" is declared in args.ts but has no implementation in main.ts`);

const [verb = 'main', ...rest] = Deno.args;
if (verb === '--help' || verb === '-h' || verb === 'help') {
  console.log(rest[0] && COMMANDS[rest[0]] ? commandHelp(rest[0]) : mainHelp());
  Deno.exit(0);
}
if (!run[verb] || !COMMANDS[verb]) {
  const near = Object.keys(COMMANDS).map((k) => [k, editDistance(verb, k)] as const).sort((x, y) => x[1] - y[1])[0][0];
  console.error(`micar: unknown command "${verb}"; did you mean "${near}"?\n\n${mainHelp()}`);
  Deno.exit(2);
}
if (wantsHelp(rest)) {
  console.log(commandHelp(verb));
  Deno.exit(0);
}
try {
  const { args, tune } = takeTuneOption(rest);
  if (!CPU_VERBS.has(verb) && tune !== 'off') {
    const { init } = await import('../graph/runtime.ts');
    await init({ tune: verb === 'tune' ? { mode: 'cached', log: (l) => console.log(`  ${l}`) } : { mode: tune, log: (l) => console.error(`[tune] ${l}`) } });
  }
  await run[verb](args);
} catch (e) {
  if (e instanceof UsageError) {
    console.error(`${e.message}\n(micar ${verb} --help lists the options)`);
    Deno.exit(2);
  }
  // Errors from files, configs and the GPU carry their own explanation; the stack is for bug reports.
  if (Deno.env.get('MICAR_DEBUG') === '1' || !(e instanceof Error)) throw e;
  console.error(`micar ${verb}: ${e.message}${e.cause ? ` (${e.cause})` : ''}\n(MICAR_DEBUG=1 shows where it happened)`);
  Deno.exit(1);
}
