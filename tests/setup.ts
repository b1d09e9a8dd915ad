// Loaded before every test file (vite.config.ts setupFiles).
// - Each test reseeds the file's generators from (MICAR_SEED, test name, generator label), so a
//   seed replays one test alone, whatever ran before it.
// - MICAR_SWEEP=N (npm run test:sweep): every test that draws random numbers runs N times in
//   this one process (device start-up and pipeline compilation paid once), each time with a
//   fresh seed; each failure is appended, with its seed and first error line, to
//   MICAR_SWEEP_OUT (JSON lines), and each run (file, test, milliseconds) to MICAR_SWEEP_OUT.runs,
//   as they end (an interrupted sweep keeps its counts), for scripts/sweep.ts to summarise.
import { afterEach, beforeAll, beforeEach } from 'vitest';
import { appendFileSync } from 'node:fs';
import { baseSeed, envVar, reseedForTest, rngDraws } from './util.ts';

const sweep = Number(envVar('MICAR_SWEEP') ?? 0);
const sweepOut = envVar('MICAR_SWEEP_OUT') ?? 'out/sweep-failures.jsonl';

type Task = { type: string; name: string; fullTestName?: string; repeats?: number; tasks?: Task[]; file?: { name: string }; result?: { state?: string; errors?: { message?: string }[] } };
const testName = (t: Task) => t.fullTestName ?? t.name;

const seen = new WeakMap<object, { errors: number; draws: number; runs: number; t0: number; skipped: boolean }>();

if (sweep > 1) {
  // eslint-disable-next-line no-empty-pattern -- vitest parses the first parameter as fixtures
  beforeAll(({}, suite) => {
    // Repeat every test of the file; tests that draw nothing are cut short after their first run.
    const walk = (t: Task) => {
      if (t.type === 'test') t.repeats = sweep - 1;
      t.tasks?.forEach(walk);
    };
    walk(suite as unknown as Task);
  });
}

/** Index of a test among its file's tests (in definition order). */
function ordinal(task: Task): number {
  const all: Task[] = [];
  const walk = (t: Task) => { if (t.type === 'test') all.push(t); t.tasks?.forEach(walk); };
  walk((task as unknown as { file: Task }).file);
  return all.indexOf(task);
}

beforeEach((ctx) => {
  const task = ctx.task as unknown as Task;
  const st = seen.get(task) ?? { errors: 0, draws: -1, runs: 0, t0: 0, skipped: false };
  seen.set(task, st);
  if (sweep > 1 && st.runs > 0 && st.draws === 0) {
    st.skipped = true;   // (afterEach still runs: it must not count this as a run)
    ctx.skip();   // deterministic: once is enough
  }
  const seed = sweep > 1 && st.runs > 0 ? Math.floor(Math.random() * 2 ** 31) : baseSeed.value;
  (task as { sweepSeed?: number }).sweepSeed = seed;
  reseedForTest(testName(task), seed);
  st.draws = rngDraws.count;
  st.t0 = performance.now();
});

afterEach((ctx) => {
  const task = ctx.task as unknown as Task & { sweepSeed?: number };
  const st = seen.get(task)!;
  // A skipped repeat of a test that drew nothing: before this check it was recorded as one
  // randomized run (its draw count read as the whole process's), giving deterministic tests
  // one bogus "seed" per sweep process.
  if (st.skipped) return;
  st.runs++;
  st.draws = rngDraws.count - st.draws;
  if (sweep <= 1) return;
  const errors = task.result?.errors?.length ?? 0;
  if (errors > st.errors) {
    const msg = String(task.result!.errors![errors - 1]?.message ?? '').split('\n')[0].slice(0, 300);
    appendFileSync(sweepOut, JSON.stringify({ file: task.file?.name, test: testName(task), seed: task.sweepSeed, error: msg }) + '\n');
  }
  st.errors = errors;
  // The test's position in its file too: names may hold drawn sizes, different per process.
  if (st.draws > 0) appendFileSync(sweepOut + '.runs', `${task.file?.name}\t${testName(task)}\t${Math.round(performance.now() - st.t0)}\t${ordinal(task)}\n`);
});
