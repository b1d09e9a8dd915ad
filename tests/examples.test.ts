// The examples use only the public API (src/mod.ts) and work: the Deno script fine-tunes a new
// tiny model, writes reports, scores them and loads its saved checkpoint back to the same
// report; the minimal web page, built by Vite into a bundle (so the shaders must travel inside
// the JavaScript: no .wgsl is requested), does the same in headless Chromium.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build, preview } from 'vite';
import { FIRST_WAIT_MS, freePort, launchChromium, openPage, Pace, repoRoot, waitForState } from './browser-harness.ts';

declare const Deno: {
  execPath(): string;
  Command: new (cmd: string, o: { args: string[]; cwd?: string; stdout?: 'piped'; stderr?: 'piped' }) => { output(): Promise<{ code: number; stdout: Uint8Array; stderr: Uint8Array }> };
};

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => (statSync(join(dir, n)).isDirectory() ? files(join(dir, n)) : [join(dir, n)]));
}

describe('package', () => {
  it('is publishable: package.json exports/types/bin and deno.json point at the entry module, which exports the API', async () => {
    const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8'));
    const deno = JSON.parse(readFileSync(join(repoRoot, 'deno.json'), 'utf8'));
    expect(pkg.private).toBeUndefined();
    expect(pkg.exports['.'].default).toBe('./src/mod.ts');
    expect(pkg.types).toBe('./src/mod.ts');
    expect(deno.exports['.']).toBe('./src/mod.ts');
    for (const f of [pkg.bin.micar, pkg.exports['.'].types, deno.exports['./cli']]) expect(statSync(join(repoRoot, f)).isFile(), f).toBe(true);
    const api = await import('../src/mod.ts');
    for (const name of ['loadModel', 'createModel', 'fineTune', 'computeMetrics', 'exportModel', 'MicarModel', 'Tokenizer', 'builtInExamples', 'initGpu']) expect(typeof (api as Record<string, unknown>)[name], name).toBe('function');
    for (const m of ['generate', 'generateStream', 'beamSearch', 'attention', 'attentionPage', 'fineTune', 'export', 'checkpoint', 'dispose']) expect(typeof (api.MicarModel.prototype as unknown as Record<string, unknown>)[m], m).toBe('function');
  });
});

describe('examples', () => {
  it('import nothing but the public API', () => {
    const scripts = files(join(repoRoot, 'examples')).filter((f) => /\.(ts|js|html)$/.test(f));
    expect(scripts.length).toBeGreaterThanOrEqual(3);
    for (const f of scripts) {
      const specs = [...readFileSync(f, 'utf8').matchAll(/(?:import|from)\s*\(?\s*['"]([^'"]+)['"]/g)].map((m) => m[1]);
      for (const s of specs) expect(s, f).toMatch(/(^|\/)src\/mod\.ts$|^\.\/main\.ts$/);
    }
  });

  it('Deno script: fine-tunes, reports, scores, reloads the saved model to the same report', async () => {
    const r = await new Deno.Command(Deno.execPath(), { args: ['run', '-A', 'examples/report.ts', '--demo', '--steps', '2', '--max-len', '8'], cwd: repoRoot, stdout: 'piped', stderr: 'piped' }).output();
    const out = new TextDecoder().decode(r.stdout);
    expect(r.code, new TextDecoder().decode(r.stderr) + out).toBe(0);
    const last = JSON.parse(out.trim().split('\n').pop()!);
    expect(last.example).toBe('demo');
    expect(last.losses).toHaveLength(2);
    expect(last.losses.every(Number.isFinite)).toBe(true);
    expect(last.reloaded_same_report).toBe(true);
    expect(last.words).toBeGreaterThan(0);
    expect(last.words).toBeLessThanOrEqual(8);
    expect(Number.isFinite(last.cider)).toBe(true);
  });

  it('web page: bundled by Vite, runs in headless Chromium, requests no shader file', async () => {
    const root = join(repoRoot, 'examples', 'web');
    const outDir = mkdtempSync(join(tmpdir(), 'micar-example-web-'));
    cleanups.push(() => rmSync(outDir, { recursive: true, force: true }));
    await build({ root, configFile: false, logLevel: 'warn', clearScreen: false, build: { outDir, emptyOutDir: true } });
    expect(files(outDir).filter((f) => f.endsWith('.wgsl')), 'no shader assets: they are inside the bundle').toEqual([]);
    const server = await preview({ root, configFile: false, logLevel: 'warn', build: { outDir }, preview: { host: '127.0.0.1', port: await freePort(), strictPort: true, open: false } });
    cleanups.push(() => server.close());
    const ch = await launchChromium();
    cleanups.push(() => ch.close());
    const { page, problems } = await openPage(ch.browser, server.resolvedUrls!.local[0], 'example page');
    const requested: string[] = [];
    page.on('request', (q) => requested.push(q.url()));
    // The first fine-tuning step (model creation, its kernels compiled on the way) is the pace;
    // the rest is one more step, 8 greedy words, a 2-beam search and the attention maps of 8
    // words: a few steps' work, 20 units.
    const t0 = performance.now();
    const firstMs = await waitForState(page, 'the example page to report its first fine-tuning step (or to end)', FIRST_WAIT_MS,
      () => /step \d+\//.test(document.getElementById('status')!.textContent ?? '') || document.getElementById('status')!.dataset.state !== 'loading');
    const pace = new Pace(firstMs, 'first fine-tuning step in the example page');
    await waitForState(page, 'the example page to end (#status data-state done, error or unsupported)', pace.budget(20),
      () => document.getElementById('status')!.dataset.state !== 'loading');
    const state = await page.$eval('#status', (el) => `${(el as HTMLElement).dataset.state}: ${el.textContent}`);
    console.log(`example page: ${state} after ${((performance.now() - t0) / 1000).toFixed(1)} s (pace ${pace})`);
    expect(state).toMatch(/^done/);
    const result = JSON.parse(await page.$eval('#out', (el) => el.textContent ?? ''));
    expect(result.losses).toHaveLength(2);
    expect(result.losses.every(Number.isFinite)).toBe(true);
    expect(result.streamed.split(' ').length).toBeLessThanOrEqual(8);
    expect(result.words.length).toBeGreaterThan(0);
    expect(result.experts[0]).toHaveLength(2); // tiny: 2 decoder layers, k experts each
    expect(requested.filter((u) => u.endsWith('.wgsl'))).toEqual([]);
    expect(problems).toEqual([]);
  });
});
