// npm run test:sweep-browser [-- N]: the browser kernel suite (tests/browser/suite.ts) over N
// fresh seeds (default 200): each seed runs every case in headless Chromium (SwiftShader) and in
// Deno, both at once, compared as tests/browser.test.ts compares them (compareHosts). Not part of
// `npm test`; scripts/sweep.ts leaves the browser files out (one page, not one vitest process per
// seed). Prints each failure with the command that replays it, the worst cross-host difference
// per output, then one summary line; exits 1 on any failure.
import { launchChromium, openPage, startDevServer, waitForState, FIRST_WAIT_MS } from '../tests/browser-harness.ts';
import { compareHosts, decode, runSuite } from '../tests/browser/suite.ts';
import { baseSeed, relL2, rng } from '../tests/util.ts';

const seeds = Number(Deno.args.filter((a) => a !== '--').find((a) => /^\d+$/.test(a)) ?? 200);
const t0 = performance.now();
const [{ server, url }, ch] = await Promise.all([startDevServer(), launchChromium()]);
const worst = new Map<string, number>();
const failures: string[] = [];
try {
  const { page } = await openPage(ch.browser, `${url}tests/browser/index.html`, 'suite page');
  await waitForState(page, 'the suite page to load its modules (window.micarSuite)', FIRST_WAIT_MS, () => !!window.micarSuite);
  for (let i = 0; i < seeds; i++) {
    // The suite seed tests/browser.test.ts derives from MICAR_SEED, so a failure replays there.
    baseSeed.value = Math.floor(Math.random() * 2 ** 31);
    const micarSeed = baseSeed.value, seed = rng('browser suite').seed;
    const [inPage, inDeno] = await Promise.all([page.evaluate((s: number) => window.micarSuite!.run(s), seed), runSuite(seed)]);
    for (const b of inPage.cases) {
      const d = inDeno.cases.find((c) => c.name === b.name)!;
      const f = compareHosts(b, d).failures;
      if (f.length) {
        failures.push(`MICAR_SEED=${micarSeed} bash scripts/run-deno.sh run -A node_modules/vitest/vitest.mjs run tests/browser.test.ts  # ${b.name}: ${f.join('; ').slice(0, 400)}`);
        console.log(`FAIL (seed ${i + 1}) replay: ${failures.at(-1)}`);   // now, too: a sweep stopped early keeps it
      }
      if (b.error || d.error) continue;
      for (const [k, t] of Object.entries(b.outputs)) {
        if (!d.outputs[k] || t.dtype !== 'f32' || b.exact) continue;
        const key = `${b.name} › ${k}`;
        worst.set(key, Math.max(worst.get(key) ?? 0, relL2(decode(t), decode(d.outputs[k]))));
      }
    }
    if ((i + 1) % 10 === 0 || i + 1 === seeds) console.log(`sweep-browser: ${i + 1}/${seeds} seeds, ${failures.length} failures, ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  }
} finally {
  await ch.close();
  await server.close();
}
console.log('largest cross-host relative L2 per float output (10 largest):');
for (const [k, v] of [...worst].sort((a, b) => b[1] - a[1]).slice(0, 10)) console.log(`  ${v.toExponential(2)}  ${k}`);
for (const f of failures) console.log(`FAIL replay: ${f}`);
console.log(`sweep-browser: ${seeds} seeds × the suite's cases: ${failures.length} failures, ${((performance.now() - t0) / 1000).toFixed(0)} s`);
Deno.exit(failures.length ? 1 : 0);
