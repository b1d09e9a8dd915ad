// npm run test:sweep [-- N] [-- --all] [-- --rounds R] [-- --jobs J] [-- --out FILE] [-- --append] [-- --filter RE] [-- files…]: every randomized
// CPU-reference test (the files under tests/ that draw from tests/util.ts `rng`, less the browser
// ones and, unless --all, the whole-model ones: a tiny model per run, minutes per seed here) run N
// times (default 200), each time with a fresh seed, inside one vitest process per file
// (tests/setup.ts repeats the tests). Prints each failure with the command that replays it, the
// runs and seeds reached per file, then one summary line.
// Failures and runs are appended to FILE (default out/sweep-failures.jsonl) and FILE.runs as each
// test run ends, so an interrupted sweep keeps its counts. Sweep a subset with the file names,
// --filter RE to run only the tests whose names match (vitest -t), --append to add to earlier
// runs in the same FILE; `--summary FILE…` prints the merged counts of
// one or more such files without running anything. --jobs J: J vitest processes at once, the
// files dealt out by their time per seed (from FILE.runs where it has them): a process spends
// much of its time on one core (float64 references, shader compiles) or asleep (Deno waits
// ≥ 10 ms for every GPU read): on 2 cores 2 jobs swept 4 seeds of 4 files in 27 s, one job in
// 54 s. Default: the CPU cores, at most 4.
const args = Deno.args.filter((a) => a !== '--');
const opt = (name: string) => { const i = args.indexOf(name); return i >= 0 ? args.splice(i, 2)[1] : undefined; };
const flag = (name: string) => { const i = args.indexOf(name); if (i >= 0) args.splice(i, 1); return i >= 0; };
const read = (f: string) => { try { return Deno.readTextFileSync(f); } catch { return ''; } };

// vitest's -t is a regular expression: test names hold ( ) and | ("training (batch statistics, …)").
const escapeRegExp = (t: string) => t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

type Failure = { file: string; test: string; seed: number; error: string };
type FileRuns = { perTest: Map<string, number>; runs: number; ms: number };
/**
 * Per file, from the FILE.runs of `outs` (one line per randomized test run, "file\ttest\tms\t
 * position", tests/setup.ts): runs per test — by its position in the file where recorded (names
 * may hold drawn sizes) —, runs and milliseconds in all.
 */
function runStats(outs: string[]): Map<string, FileRuns> {
  const stats = new Map<string, FileRuns>();
  for (const o of outs) for (const l of read(o + '.runs').split('\n').filter(Boolean)) {
    const [f, t, ms, pos] = l.split('\t');
    const e = stats.get(f) ?? { perTest: new Map<string, number>(), runs: 0, ms: 0 };
    e.perTest.set(pos ?? t, (e.perTest.get(pos ?? t) ?? 0) + 1);
    e.runs++;
    e.ms += Number(ms ?? 0);
    stats.set(f, e);
  }
  return stats;
}
/** Seconds one seed of a file takes: each of its randomized tests once. */
const secondsPerSeed = (e: FileRuns) => (e.ms / 1000) * e.perTest.size / e.runs;

/** Prints the per-file counts and failures recorded in `outs`; returns the failure count. */
function summarise(outs: string[]): { failures: number; runs: number; tests: number } {
  const failures = outs.flatMap((o) => read(o).split('\n').filter(Boolean).map((l) => JSON.parse(l) as Failure));
  const stats = runStats(outs);
  let runs = 0;
  console.log('randomized test runs per file: runs / randomized tests / seeds per test (fewest–most) / seconds per seed (all its tests)');
  for (const [f, e] of [...stats].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const seeds = [...e.perTest.values()];
    runs += e.runs;
    console.log(`  ${f.replace(/^tests\//, '').padEnd(34)} ${String(e.runs).padStart(6)} / ${String(e.perTest.size).padStart(3)} / ${`${Math.min(...seeds)}–${Math.max(...seeds)}`.padStart(9)} / ${secondsPerSeed(e).toFixed(2)} s`);
  }
  for (const f of failures) {
    console.log(`FAIL ${f.file} › ${f.test}\n  ${f.error}\n  replay: MICAR_SEED=${f.seed} bash scripts/run-deno.sh run -A node_modules/vitest/vitest.mjs run ${f.file} -t ${JSON.stringify(escapeRegExp(f.test.split(' > ').pop()!))}`);
  }
  return { failures: failures.length, runs, tests: new Set(failures.map((f) => `${f.file} › ${f.test}`)).size };
}

if (flag('--summary')) {
  const s = summarise(args);
  console.log(`sweep summary of ${args.join(' ')}: ${s.runs} randomized test runs, ${s.failures} failures in ${s.tests} tests`);
  Deno.exit(s.failures ? 1 : 0);
}

const all = flag('--all');
const append = flag('--append');
// --rounds R: the seeds in R rounds over all the files (each round one vitest process), so
// that a sweep stopped early has given every file about the same number of seeds.
const rounds = Math.max(1, Number(opt('--rounds') ?? 1));
const cores = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency ?? 1;
const jobs = Math.max(1, Math.floor(Number(opt('--jobs') ?? Math.min(cores, 4))) || 1);
const out = opt('--out') ?? Deno.env.get('MICAR_SWEEP_OUT') ?? 'out/sweep-failures.jsonl';
const filter = opt('--filter');
// (the vitest child inherits this process's environment, plus MICAR_SWEEP and its output file)
const seeds = Number(args.find((a) => /^\d+$/.test(a)) ?? 200);
const browser = new Set(['tests/browser.test.ts', 'tests/demo-e2e.test.ts', 'tests/demo-store.test.ts']);
// Whole-model files: a tiny model and a CLI or generation run per test, compared with no CPU
// reference (explain-outputs: ~18 s per seed here, its page data against the GPU maps;
// eval-outputs: the eval CLI's files against the model's own greedy reports).
const wholeModel = new Set(['tests/generate.test.ts', 'tests/grounding.test.ts', 'tests/viz.test.ts', 'tests/explain-outputs.test.ts', 'tests/eval-outputs.test.ts']);
let files = args.filter((a) => a.endsWith('.ts'));
if (!files.length) {
  for (const e of Deno.readDirSync('tests')) {
    const f = `tests/${e.name}`;
    if (e.isFile && f.endsWith('.test.ts') && !browser.has(f) && (all || !wholeModel.has(f)) && /\brng\(/.test(Deno.readTextFileSync(f))) files.push(f);
  }
  files.sort();
}
const dir = out.includes('/') ? out.slice(0, out.lastIndexOf('/')) : '.';
Deno.mkdirSync(dir, { recursive: true });
if (!append) for (const f of [out, out + '.runs']) try { Deno.removeSync(f); } catch { /* none yet */ }
console.log(`sweep: ${seeds} seeds over ${files.length} files in ${rounds} round(s)${filter ? ` (tests matching /${filter}/)` : ''}: ${files.join(' ')}`);
const t0 = performance.now();
let code = 0;
// Files dealt out to the jobs, slowest first, each to the least loaded, by their seconds per
// seed in FILE.runs (earlier sweeps with --append, and this sweep's previous rounds); a file
// not timed yet counts as the median of those timed.
function dealFiles(): string[][] {
  const stats = runStats([out]);
  const perSeed = new Map([...stats].map(([f, e]) => [f, secondsPerSeed(e)]));
  const known = files.map((f) => perSeed.get(f)).filter((x): x is number => x !== undefined).sort((a, b) => a - b);
  const cost = (f: string) => perSeed.get(f) ?? (known.length ? known[known.length >> 1] : 1);
  const groups: string[][] = Array.from({ length: Math.min(jobs, files.length) }, () => []);
  const load = groups.map(() => 0);
  for (const f of [...files].sort((a, b) => cost(b) - cost(a))) {
    const j = load.indexOf(Math.min(...load));
    groups[j].push(f);
    load[j] += cost(f);
  }
  if (groups.length > 1) groups.forEach((g, j) => console.log(`sweep: job ${j + 1} (~${load[j].toFixed(0)} s a seed): ${g.join(' ')}`));
  return groups;
}
for (let r = 0, done = 0; r < rounds; r++) {
  const groups = dealFiles();
  const n = Math.ceil((seeds - done) / (rounds - r));
  done += n;
  // (the jobs append whole lines to the same FILE and FILE.runs: one write each)
  const codes = await Promise.all(groups.map(async (g) => {
    const cmd = new Deno.Command('bash', {
      args: ['scripts/run-deno.sh', 'run', '-A', 'node_modules/vitest/vitest.mjs', 'run', '--reporter=dot', '--silent=true', ...(filter ? ['-t', filter] : []), ...g],
      // (MICAR_SWEEP=1 would be a plain run: 2 seeds at least per round)
      env: { MICAR_SWEEP: String(Math.max(n, 2)), MICAR_SWEEP_OUT: out },
      stdout: 'inherit', stderr: 'inherit',
    });
    return (await cmd.output()).code;
  }));
  code ||= codes.find((c) => c !== 0) ?? 0;
  if (rounds > 1) console.log(`sweep: round ${r + 1}/${rounds} done (${done} seeds), ${((performance.now() - t0) / 1000).toFixed(0)} s`);
}
const s = summarise([out]);
console.log(`sweep: ${seeds} seeds × ${files.length} files: ${s.runs} randomized test runs, ${s.failures} failures in ${s.tests} tests (vitest exit ${code}), ${((performance.now() - t0) / 1000).toFixed(0)} s`);
Deno.exit(s.failures || code ? 1 : 0);
