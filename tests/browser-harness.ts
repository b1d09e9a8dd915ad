// Starts what the browser tests need: a Vite dev server over the repository (so a test page
// can import src/ and fetch shaders/ exactly as an app would), a production build of the demo
// served by `vite preview`, and Debian's Chromium driven by puppeteer-core with WebGPU on
// SwiftShader (a software Vulkan adapter, available on any machine).
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, createServer, preview, type PreviewServer, type ViteDevServer } from 'vite';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';

export const repoRoot = resolve(fileURLToPath(new URL('..', import.meta.url)));
export const CHROMIUM = '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--enable-unsafe-webgpu',
  '--enable-features=Vulkan',
  '--use-vulkan=swiftshader',
  '--use-webgpu-adapter=swiftshader',
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  '--no-first-run',
];

/** A TCP port free on 127.0.0.1 right now (the OS picks it). */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createNetServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => res(port));
    });
  });
}

function serverUrl(s: ViteDevServer | PreviewServer, what: string): string {
  const url = s.resolvedUrls?.local[0];
  if (!url) throw new Error(`${what}: Vite did not report a local URL`);
  return url;
}

/** CommonJS packages the demo imports (through src/data/images.ts): the dev server serves ESM
 *  only, so these are pre-bundled, as `vite demo` does after its dependency discovery. */
export const DEMO_CJS_DEPS = ['@cornerstonejs/codec-libjpeg-turbo-8bit/decodewasmjs'];

/**
 * A Vite dev server on a free 127.0.0.1 port. Default: rooted at the repository (test pages
 * under tests/ import src/ and fetch shaders/). With `root: 'demo'` it is what `npm run dev`
 * (`vite demo`) serves: no config file, Vite's default fs.allow (the package root, which holds
 * src/ and shaders/).
 */
export async function startDevServer(opts: { root?: 'repo' | 'demo' } = {}): Promise<{ server: ViteDevServer; url: string }> {
  const demo = opts.root === 'demo';
  const server = await createServer({
    root: demo ? join(repoRoot, 'demo') : repoRoot,
    // The repository's vite.config.ts holds vitest settings; these servers need none of it.
    configFile: false,
    logLevel: 'warn',
    clearScreen: false,
    server: {
      host: '127.0.0.1',
      port: await freePort(),
      strictPort: true,
      watch: null, // no file watching: the test serves a fixed tree
      // The demo keeps Vite's HMR client connected as in `npm run dev`; the test page needs none.
      ...(demo ? {} : { hmr: false, ws: false, fs: { strict: true, allow: [repoRoot] } }),
    },
    // No dependency pre-bundling: wgsl-preprocessor is plain ESM, and discovery would
    // crawl the repository on every start.
    optimizeDeps: { noDiscovery: true, include: demo ? DEMO_CJS_DEPS : [] },
  });
  await server.listen();
  return { server, url: serverUrl(server, 'dev server') };
}

/**
 * Builds the demo app into a fresh temporary folder, as `npx vite build demo` does: that
 * command looks for a config file in demo/ only, finds none, and needs none (shader URLs
 * `new URL(`../../shaders/${name}.wgsl`, import.meta.url)` become emitted assets).
 */
export async function buildDemo(): Promise<string> {
  const outDir = mkdtempSync(join(tmpdir(), 'micar-demo-dist-'));
  await build({
    root: join(repoRoot, 'demo'),
    configFile: false,
    logLevel: 'warn',
    clearScreen: false,
    build: { outDir, emptyOutDir: true },
  });
  return outDir;
}

/** Serves a built app (vite preview) on a free 127.0.0.1 port. */
export async function servePreview(outDir: string): Promise<{ server: PreviewServer; url: string }> {
  const server = await preview({
    root: join(repoRoot, 'demo'),
    configFile: false,
    logLevel: 'warn',
    build: { outDir },
    preview: { host: '127.0.0.1', port: await freePort(), strictPort: true, open: false },
  });
  return { server, url: serverUrl(server, 'preview server') };
}

export interface Chromium {
  browser: Browser;
  close(): Promise<void>;
}

/** Launches headless Chromium with WebGPU on SwiftShader in a throw-away profile. */
export async function launchChromium(): Promise<Chromium> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium not found at ${CHROMIUM}: run \`bash scripts/setup-system.sh\` as root (apt-get install chromium)`);
  }
  const profile = mkdtempSync(join(tmpdir(), 'micar-chromium-'));
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    // A pipe instead of a DevTools websocket: no port, nothing for Deno's ws shim to get wrong.
    pipe: true,
    args: [...CHROMIUM_ARGS, `--user-data-dir=${profile}`],
    // No blanket protocol timeout: every wait in the tests has its own budget, scaled from a
    // measured pace, and a timeout message naming the state (waitForState, withinBudget).
    protocolTimeout: 0,
  });
  return {
    browser,
    async close() {
      await browser.close().catch(() => undefined);
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * A new tab that forwards the page's console, errors and failed requests to the test log, on
 * `url`; `loadMs` is how long that first load took (a pace for later loads of the page).
 */
export async function openPage(browser: Browser, url: string, label: string): Promise<{ page: Page; problems: string[]; loadMs: number }> {
  const page = await browser.newPage();
  const problems: string[] = [];
  page.on('console', (m) => {
    const line = `[${label} console.${m.type()}] ${m.text()}`;
    if (m.type() === 'error') problems.push(line);
    console.log(line);
  });
  page.on('pageerror', (e) => {
    const line = `[${label} page error] ${(e as Error).message ?? e}`;
    problems.push(line);
    console.log(line);
  });
  page.on('requestfailed', (r) => {
    const line = `[${label} request failed] ${r.url()}: ${r.failure()?.errorText}`;
    problems.push(line);
    console.log(line);
  });
  page.on('response', (r) => {
    if (r.status() >= 400) {
      const line = `[${label} HTTP ${r.status()}] ${r.url()}`;
      problems.push(line);
      console.log(line);
    }
  });
  const loadMs = await loadWithin(page, url, `${label} (${url}) to load`, FIRST_WAIT_MS);
  return { page, problems, loadMs };
}

// ---- Waiting on states, not on the clock ---------------------------------------------------
// Every wait is for a state of the page, with a budget in units of a pace measured at the
// start on this machine (e.g. the page's start-up: module load plus the adapter's kernel check,
// or one training step), so a slower machine gets proportionally longer; a timeout names the
// state waited for and what the page showed.

/** A measured duration that budgets are multiples of. */
export class Pace {
  constructor(readonly unitMs: number, readonly what: string) {}
  /** `units` of the pace, and at least `floorMs` (timer and scheduling noise). */
  budget(units: number, floorMs = 10_000): number {
    return Math.max(floorMs, Math.ceil(units * this.unitMs));
  }
  toString(): string {
    return `${(this.unitMs / 1000).toFixed(2)} s (${this.what})`;
  }
}

/** The budget of a first wait, before any pace is known: the test's own time limit. */
export const FIRST_WAIT_MS = 280_000;

/**
 * What the page shows: every element's data-state, the status lines, the app log's tail. Bounded
 * (5 s): a page stuck in a navigation or a long task would otherwise hold the timeout's message
 * back for ever (the protocol has no timeout of its own here).
 */
export async function describePage(page: Page): Promise<string> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stuck = new Promise<string>((res) => (timer = setTimeout(() => res('(the page did not answer within 5 s)'), 5000)));
  try {
    return await Promise.race([stuck, readPage(page)]);
  } finally {
    clearTimeout(timer);
  }
}

async function readPage(page: Page): Promise<string> {
  try {
    return await page.evaluate(() => {
      const parts: string[] = [];
      for (const el of Array.from(document.querySelectorAll('[data-state]'))) parts.push(`#${el.id || el.tagName.toLowerCase()} state=${el.getAttribute('data-state')}`);
      for (const el of Array.from(document.querySelectorAll('[id$="-status"], #kernel-check'))) {
        const t = (el as HTMLElement).innerText?.trim();
        if (t) parts.push(`#${el.id}: "${t.slice(0, 200)}"`);
      }
      const demo = (window as unknown as { micarDemo?: { app: { log: string[]; session?: { state?: string; losses?: unknown[] } | null } } }).micarDemo;
      if (demo) {
        const s = demo.app.session;
        if (s) parts.push(`training session state=${s.state}, ${s.losses?.length ?? 0} steps`);
        if (demo.app.log.length) parts.push(`log tail: ${demo.app.log.slice(-3).join(' | ')}`);
      }
      return parts.join('; ') || `(nothing identifiable; title "${document.title}")`;
    });
  } catch (e) {
    return `(the page could not be read: ${(e as Error).message})`;
  }
}

/**
 * Waits until `predicate` (run in the page) holds; `state` says what that means in words. On
 * timeout throws naming the state, the budget, the pace it came from and what the page showed.
 */
export async function waitForState<A extends unknown[]>(
  page: Page, state: string, budgetMs: number, predicate: (...args: A) => unknown, ...args: A
): Promise<number> {
  const t0 = performance.now();
  try {
    await page.waitForFunction(predicate as (...a: unknown[]) => unknown, { timeout: budgetMs, polling: 100 }, ...args);
  } catch (e) {
    if ((e as Error).name !== 'TimeoutError' && !/timed? ?out/i.test((e as Error).message)) throw e;
    throw new Error(`timed out after ${(budgetMs / 1000).toFixed(1)} s waiting for ${state}; the page showed: ${await describePage(page)}`);
  }
  return performance.now() - t0;
}

/**
 * Opens `target` in the tab (a URL, or 'reload') and waits for its load event within the budget;
 * on timeout names what was loading and what the page showed. Returns the time it took.
 */
export async function loadWithin(page: Page, target: string, state: string, budgetMs: number): Promise<number> {
  const t0 = performance.now();
  try {
    if (target === 'reload') await page.reload({ waitUntil: 'load', timeout: budgetMs });
    else await page.goto(target, { waitUntil: 'load', timeout: budgetMs });
  } catch (e) {
    if ((e as Error).name !== 'TimeoutError' && !/timed? ?out|timeout/i.test((e as Error).message)) throw e;
    throw new Error(`timed out after ${(budgetMs / 1000).toFixed(1)} s waiting for ${state}; the page showed: ${await describePage(page)}`);
  }
  return performance.now() - t0;
}

/** Runs `work` (e.g. a page.evaluate) within a budget; on timeout names `state` and the page. */
export async function withinBudget<T>(page: Page, state: string, budgetMs: number, work: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(async () => reject(new Error(`timed out after ${(budgetMs / 1000).toFixed(1)} s waiting for ${state}; the page showed: ${await describePage(page)}`)), budgetMs);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
