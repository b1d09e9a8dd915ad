// `micar` command line (Deno). Verbs grow with the project; `main` is the README's main job.
import { init, fromData, read, realize } from '../graph/runtime.ts';
import { matmul } from '../graph/ops/matmul.ts';
import { mul, sumTo } from '../graph/ops/elementwise.ts';
import { grad, param } from '../graph/autograd.ts';

declare const Deno: { args: string[]; exit(code: number): never };

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
  const dir = args[0];
  if (!dir) throw new Error('usage: micar golden <case folder>   (e.g. ../shared/golden/tiny)');
  const { runGolden } = await import('./golden.ts');
  const r = await runGolden(dir);
  if (!r.pass) Deno.exit(1);
}

const verbs: Record<string, (args: string[]) => Promise<void>> = {
  main: async (a) => (await import('./commands.ts')).mainJob(a),
  train: async (a) => void (await (await import('./commands.ts')).trainCommand(a)),
  eval: async (a) => (await import('./commands.ts')).evalCommand(a),
  smoke,
  golden,
  attention: async (a) => (await import('../viz/index.ts')).attentionCommand(a),
  generate: async (a) => (await import('../generate/command.ts')).generateCommand(a),
};

const [verb = 'main', ...rest] = Deno.args;
const fn = verbs[verb];
if (!fn) {
  console.error(`micar: unknown command "${verb}". Commands: ${Object.keys(verbs).join(', ')}`);
  Deno.exit(2);
}
await fn(rest);
