// The project's kernels in headless Chromium (WebGPU on SwiftShader), served by Vite exactly as
// an app would load them, against the same runs in Deno on the local adapter: relative L2 ≤ 1e-5
// for float results, bit-exact for random-number kernels and integer results. Also builds the
// demo app, serves the production build and checks that its adapter panel comes up (screenshot
// in out/demo.png). Chromium is required (scripts/setup-system.sh installs it): a missing
// browser fails these tests, it does not skip them.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { PreviewServer, ViteDevServer } from 'vite';
import { buildDemo, type Chromium, FIRST_WAIT_MS, launchChromium, openPage, Pace, repoRoot, servePreview, startDevServer, waitForState, withinBudget } from './browser-harness.ts';
import { CASES, compareHosts, runSuite, type SuiteResult } from './browser/suite.ts';
import { rng } from './util.ts';
import { readSafetensors } from '../src/io/safetensors.ts';

const ORACLE = join(repoRoot, '../shared/golden/preprocess');

const seed = rng('browser suite').seed;
const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

let chromiumOnce: Promise<Chromium> | null = null;
function chromium(): Promise<Chromium> {
  if (!chromiumOnce) {
    chromiumOnce = launchChromium().then((c) => {
      cleanups.push(() => c.close());
      return c;
    });
  }
  return chromiumOnce;
}

interface Runs {
  browser: SuiteResult;
  deno: SuiteResult;
}
let runsOnce: Promise<Runs> | null = null;
/** Runs the whole suite once in each host (concurrently: two processes, two software GPUs). */
function runs(): Promise<Runs> {
  if (!runsOnce) runsOnce = runBoth();
  return runsOnce;
}

async function runBoth(): Promise<Runs> {
  const t0 = performance.now();
  const [{ server, url }, ch] = await Promise.all([startDevServer(), chromium()]);
  cleanups.push(() => (server as ViteDevServer).close());
  const { page, problems } = await openPage(ch.browser, `${url}tests/browser/index.html`, 'suite page');
  try {
    await waitForState(page, 'the suite page to load its modules (window.micarSuite)', FIRST_WAIT_MS, () => !!window.micarSuite);
  } catch (e) {
    throw new Error(`${(e as Error).message}${problems.length ? `\n${problems.join('\n')}` : ''}`);
  }
  console.log(`browser page ready after ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  // Both hosts run the same suite at once; the Deno run's time is the pace: the page then gets
  // 20 of it on top (SwiftShader runs these kernels several times slower than llvmpipe here).
  const inPage = page.evaluate((s: number) => window.micarSuite!.run(s), seed);
  const d0 = performance.now();
  const deno = await runSuite(seed);
  const pace = new Pace(performance.now() - d0, 'the kernel suite in Deno');
  const browser = await withinBudget(page, `the kernel suite to finish in the page (pace ${pace})`, pace.budget(20, 60_000), inPage);
  console.log(`browser adapter: ${browser.adapter}\n  ${JSON.stringify(browser.adapterInfo)}\n  ${browser.host}`);
  console.log(`deno adapter:    ${deno.adapter} (${deno.host})`);
  for (const c of browser.cases) console.log(`  browser ${c.ms.toFixed(0).padStart(6)} ms  ${c.name}`);
  for (const c of deno.cases) console.log(`  deno    ${c.ms.toFixed(0).padStart(6)} ms  ${c.name}`);
  await page.close();
  return { browser, deno };
}

describe('kernels in headless Chromium vs Deno', () => {
  it('Chromium starts and exposes a WebGPU adapter', async () => {
    const { browser } = await runs();
    expect(browser.host).toMatch(/Chrome/);
    expect(browser.adapter).not.toBe('unknown adapter');
    expect(browser.cases.map((c) => c.name)).toEqual(CASES.map((c) => c.name));
  });

  for (const c of CASES) {
    it(c.name, async () => {
      const { browser, deno } = await runs();
      const b = browser.cases.find((x) => x.name === c.name)!, d = deno.cases.find((x) => x.name === c.name)!;
      const { report, failures } = compareHosts(b, d);
      console.log(`${c.name}: ${report.join(', ')}${b.notes.length ? ` (browser: ${b.notes.join('; ')}; deno: ${d.notes.join('; ')})` : ''}`);
      expect(failures, failures.join('\n')).toEqual([]);
      // The subgroup folds are compared with Deno's tree sums only where Chromium has the feature:
      // SwiftShader does, so a page without it would leave that kernel path untested.
      if (/through subgroups/.test(c.name)) expect(b.notes, `Chromium's adapter (${browser.adapterInfo.features}) should have the subgroups feature`).toContain('subgroups');
    });
  }
});

/** Opens the demo, waits for its adapter panel to settle, screenshots it and checks it is ready. */
async function checkDemo(url: string, label: string, screenshot: string): Promise<void> {
  const ch = await chromium();
  const { page, problems } = await openPage(ch.browser, url, label);
  await page.setViewport({ width: 1280, height: 900 });
  // The first wait on this page: its budget is the test's own limit (nothing measured yet).
  await waitForState(page, '#adapter-panel to settle (ready, error or unsupported) after the kernel check', FIRST_WAIT_MS, () => {
    const s = document.querySelector('#adapter-panel')?.getAttribute('data-state');
    return s === 'ready' || s === 'error' || s === 'unsupported';
  });
  const state = await page.$eval('#adapter-panel', (el) => ({ state: el.getAttribute('data-state'), text: (el as HTMLElement).innerText }));
  mkdirSync(join(repoRoot, 'out'), { recursive: true });
  const shot = join(repoRoot, 'out', screenshot);
  await page.screenshot({ path: shot as `${string}.png`, fullPage: true });
  console.log(`${label}: adapter panel ${state.state}, screenshot ${shot}:\n${state.text}`);
  expect(state.state, state.text).toBe('ready');
  expect(state.text).toMatch(/swiftshader/i);
  expect(state.text).toMatch(/kernel check: passed/i);
  // The page decodes images as PIL does (libjpeg-turbo WASM, loaded from the app's assets):
  // the preprocessing oracle's files come out byte for byte as ../shared/golden/preprocess says.
  const golden = readSafetensors(readFileSync(join(ORACLE, 'decoded.safetensors')), 'decoded.safetensors').tensors;
  for (const name of [...golden.keys()].filter((n) => n.endsWith('.jpg') || n === 'rgba-230x260.png')) {
    const bytes = Array.from(readFileSync(join(ORACLE, name)));
    const got = await page.evaluate((b: number[], n: string) => window.micarDemo!.decodeImage(b, n), bytes, name);
    const want = golden.get(name)!;
    let off = 0;
    for (let i = 0; i < want.data.length; i++) off = Math.max(off, Math.abs(got.data[i] - want.data[i]));
    console.log(`${label}: ${name} decoded in the page, ${off} levels from PIL`);
    expect([got.height, got.width, 3], name).toEqual(want.shape);
    expect(off, name).toBe(0);
  }
  expect(problems, problems.join('\n')).toEqual([]);
  await page.close();
}

describe('demo app', () => {
  it('production build: builds, serves from dist, shows the WebGPU adapter and passes its kernel check', async () => {
    const outDir = await buildDemo();
    cleanups.push(() => rmSync(outDir, { recursive: true, force: true }));
    const { server, url } = await servePreview(outDir);
    cleanups.push(() => new Promise<void>((res) => (server as PreviewServer).httpServer.close(() => res())));
    await checkDemo(url, 'demo (build)', 'demo.png');
  });

  it('dev server (`vite demo`): loads src/ modules and shaders from outside demo/', async () => {
    const { server, url } = await startDevServer({ root: 'demo' });
    cleanups.push(() => server.close());
    await checkDemo(url, 'demo (dev)', 'demo-dev.png');
  });
});
