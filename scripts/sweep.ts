// npm run test:sweep [-- N] [-- --all] [-- files…]: every randomized CPU-reference test (the
// files under tests/ that draw from tests/util.ts `rng`, less the browser ones and, unless
// --all, the whole-model ones: a tiny model per run, minutes per seed here) run N times (default 200),
// each time with a fresh seed, inside one vitest process per file (tests/setup.ts repeats the
// tests). Prints each failure with the command that replays it, then one summary line.
const args = Deno.args.filter((a) => a !== '--');
// (the vitest child inherits this process's environment, plus MICAR_SWEEP and its output file)
const seeds = Number(args.find((a) => /^\d+$/.test(a)) ?? 200);
const browser = new Set(['tests/browser.test.ts', 'tests/demo-e2e.test.ts']);
const wholeModel = new Set(['tests/generate.test.ts', 'tests/grounding.test.ts', 'tests/viz.test.ts']);
const all = args.includes('--all');
let files = args.filter((a) => a.endsWith('.ts'));
if (!files.length) {
  for (const e of Deno.readDirSync('tests')) {
    const f = `tests/${e.name}`;
    if (e.isFile && f.endsWith('.test.ts') && !browser.has(f) && (all || !wholeModel.has(f)) && /\brng\(/.test(Deno.readTextFileSync(f))) files.push(f);
  }
  files.sort();
}
Deno.mkdirSync('out', { recursive: true });
const out = Deno.env.get('MICAR_SWEEP_OUT') ?? 'out/sweep-failures.jsonl';
for (const f of [out, out + '.runs']) try { Deno.removeSync(f); } catch { /* none yet */ }
console.log(`sweep: ${seeds} seeds over ${files.length} files: ${files.join(' ')}`);
const t0 = performance.now();
const cmd = new Deno.Command('bash', {
  args: ['scripts/run-deno.sh', 'run', '-A', 'node_modules/vitest/vitest.mjs', 'run', '--reporter=dot', '--silent=true', ...files],
  env: { MICAR_SWEEP: String(seeds), MICAR_SWEEP_OUT: out },
  stdout: 'inherit', stderr: 'inherit',
});
const { code } = await cmd.output();
const read = (f: string) => { try { return Deno.readTextFileSync(f); } catch { return ''; } };
const failures = read(out).split('\n').filter(Boolean).map((l) => JSON.parse(l) as { file: string; test: string; seed: number; error: string });
const runLines = read(out + '.runs').split('\n').filter(Boolean);
const runs = runLines.length;
const perFile = new Map<string, number>();
for (const f of runLines) perFile.set(f, (perFile.get(f) ?? 0) + 1);
console.log(`randomized test runs per file: ${[...perFile].map(([f, n]) => `${f.replace(/^tests\//, '')} ${n}`).join(', ')}`);
for (const f of failures) {
  console.log(`FAIL ${f.file} › ${f.test}\n  ${f.error}\n  replay: MICAR_SEED=${f.seed} bash scripts/run-deno.sh run -A node_modules/vitest/vitest.mjs run ${f.file} -t ${JSON.stringify(f.test.split(' > ').pop())}`);
}
const tests = new Set(failures.map((f) => `${f.file} › ${f.test}`));
console.log(`sweep: ${seeds} seeds × ${files.length} files: ${runs} randomized test runs, ${failures.length} failures in ${tests.size} tests (vitest exit ${code}), ${((performance.now() - t0) / 1000).toFixed(0)} s`);
Deno.exit(failures.length || code ? 1 : 0);
