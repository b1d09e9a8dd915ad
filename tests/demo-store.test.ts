// The web app keeps models in the browser (Cache Storage), in headless Chromium on the
// production build served by `vite preview`: a checkpoint picked once is offered again after a
// reload and loads from storage with the same weights (hash of every tensor, computed in the
// page, against the file's); a model loaded from a URL (a single file, and a folder in the
// Hugging Face layout) is kept too and loads after its files are gone from the server; a bad
// URL is reported naming it; "Forget stored models" empties the list, also after a reload.
// Every wait is on a state the page shows (data-state attributes, its log), never a sleep, with a
// budget in units of the page's measured start-up; a timeout names the state and what the page showed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'puppeteer-core';
import { buildDemo, type Chromium, FIRST_WAIT_MS, launchChromium, loadWithin, openPage, Pace, repoRoot, servePreview, waitForState } from './browser-harness.ts';
import { rng } from './util.ts';
import { dispose, init } from '../src/graph/runtime.ts';
import { normaliseConfig } from '../src/model/config.ts';
import { Weights } from '../src/model/weights.ts';
import { Tokenizer } from '../src/data/tokenizer.ts';
import { phantomSamples } from '../src/data/datasets.ts';
import { checkpointBytes } from '../src/train/checkpoint.ts';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.ts';

const r = rng('demo store');
const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

let page: Page;
let problems: string[];
/**
 * The page's first load and start-up (adapter check, storage read), measured: every later wait's
 * budget is a multiple of it. Storing or loading a model (this micro model: one small file
 * through Cache Storage and a weights upload) is measured against it: UNITS.model leaves an
 * order of magnitude over what it takes here (≈ 1–5 units).
 */
let pace: Pace | undefined;
const UNITS = { model: 60, reload: 20, state: 10 };
const budget = (units: number) => (pace ? pace.budget(units) : FIRST_WAIT_MS);
let dist = '';
let base = '';
let ckPath = '';
/** SHA-256 over every weight tensor (sorted names, shapes and bytes), of the file and of the folder model. */
let want = { checkpoint: '', folder: '' };

async function tensorsHash(tensors: Map<string, { shape: number[]; data: Uint8Array }>): Promise<string> {
  const enc = new TextEncoder();
  const parts: Uint8Array[] = [];
  for (const k of [...tensors.keys()].filter((k) => !k.startsWith('optim.')).sort()) parts.push(enc.encode(`${k}:${tensors.get(k)!.shape.join('x')};`), tensors.get(k)!.data);
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) all.set(p, (o += p.length) - p.length);
  return Array.from(new Uint8Array(await crypto.subtle.digest('SHA-256', all)), (b) => b.toString(16).padStart(2, '0')).join('');
}

/** The same hash, in the page, of the model it has loaded. */
function pageModelHash(p: Page): Promise<string> {
  return p.evaluate(async () => {
    const sd = await window.micarDemo!.app.model!.weights.toStateDict();
    const enc = new TextEncoder();
    const parts: Uint8Array[] = [];
    for (const k of [...sd.keys()].sort()) parts.push(enc.encode(`${k}:${sd.get(k)!.shape.join('x')};`), sd.get(k)!.data);
    const all = new Uint8Array(parts.reduce((n, q) => n + q.length, 0));
    let o = 0;
    for (const q of parts) all.set(q, (o += q.length) - q.length);
    return Array.from(new Uint8Array(await crypto.subtle.digest('SHA-256', all)), (b) => b.toString(16).padStart(2, '0')).join('');
  });
}

const state = (p: Page, sel: string) => p.$eval(sel, (el) => el.getAttribute('data-state'));
const text = (p: Page, sel: string) => p.$eval(sel, (el) => (el as HTMLElement).innerText);

async function waitState(p: Page, sel: string, states: string[], budgetMs = budget(UNITS.state)): Promise<string> {
  await waitForState(p, `${sel} to reach data-state ${states.join(' or ')}`, budgetMs,
    (s: string, ok: string[]) => ok.includes(document.querySelector(s)?.getAttribute('data-state') ?? ''), sel, states);
  return (await state(p, sel))!;
}

/** Runs `act` and waits until the page's log has a line matching `line` that was not there before. */
async function afterLog(p: Page, line: RegExp, act: () => Promise<unknown>, budgetMs = budget(UNITS.model)): Promise<string> {
  const before = await p.evaluate(() => window.micarDemo!.app.log.length);
  await act();
  await waitForState(p, `the page's log to get a line matching ${line}`, budgetMs,
    (n: number, src: string) => window.micarDemo!.app.log.slice(n).some((l) => new RegExp(src).test(l)), before, line.source);
  return p.evaluate((n: number) => window.micarDemo!.app.log.slice(n).join('\n'), before);
}

/** Waits until the page (just loaded) is ready for a model and has read its storage; returns the time that took. */
async function ready(p: Page): Promise<number> {
  const t0 = performance.now();
  expect(await waitState(p, '#adapter-panel', ['ready', 'error', 'unsupported'], budget(UNITS.reload)), await text(p, '#adapter-panel')).toBe('ready');
  await waitForState(p, 'the model file input to be enabled', budget(UNITS.state), () => !(document.getElementById('model-files') as HTMLInputElement).disabled);
  await waitState(p, '#store', ['empty', 'ready', 'error', 'unavailable']);
  return performance.now() - t0;
}

/** Reloads the page and waits until it is ready again. */
async function reload(p: Page): Promise<void> {
  await loadWithin(p, 'reload', 'the demo page to reload', budget(UNITS.reload));
  await ready(p);
}

const storedCount = (p: Page) => p.evaluate(() => window.micarDemo!.app.stored.length);

beforeAll(async () => {
  await init();
  const tok = Tokenizer.build(phantomSamples({ count: 100, seed: 7, size: 8 }).map((s) => s.report), 1, 'whitespace');
  const raw = JSON.parse(readFileSync(join(repoRoot, 'tests/fixtures/micro.json'), 'utf8'));
  const cfg = normaliseConfig({ ...raw, vocab_size: tok.vocabSize });
  const w1 = Weights.init(cfg, r.int(1, 1e6)), w2 = Weights.init(cfg, r.int(1, 1e6));
  const ck = await checkpointBytes(w1, null, tok, null);
  const folderSd = await w2.toStateDict();
  dispose(...w1.tensors.values(), ...w2.tensors.values());
  want = { checkpoint: await tensorsHash(readSafetensors(ck, 'ck').tensors), folder: await tensorsHash(folderSd) };

  dist = await buildDemo();
  cleanups.push(() => rmSync(dist, { recursive: true, force: true }));
  ckPath = join(dist, '..', `${dist.split('/').pop()}-picked.safetensors`);
  writeFileSync(ckPath, ck);
  cleanups.push(() => rmSync(ckPath, { force: true }));
  // What the preview server hands out: one checkpoint file and one Hugging Face-layout folder.
  mkdirSync(join(dist, 'models', 'hf'), { recursive: true });
  writeFileSync(join(dist, 'models', 'ck.safetensors'), ck);
  writeFileSync(join(dist, 'models', 'hf', 'model.safetensors'), writeSafetensors(folderSd, {}));
  writeFileSync(join(dist, 'models', 'hf', 'config.json'), JSON.stringify({ ...raw, vocab_size: tok.vocabSize }));
  writeFileSync(join(dist, 'models', 'hf', 'tokenizer.json'), JSON.stringify(tok.toJSON()));

  const { server, url } = await servePreview(dist);
  base = url;
  cleanups.push(() => new Promise<void>((res) => server.httpServer.close(() => res())));
  const ch: Chromium = await launchChromium();
  cleanups.push(() => ch.close());
  let loadMs: number;
  ({ page, problems, loadMs } = await openPage(ch.browser, url, 'demo store'));
  pace = new Pace(loadMs + await ready(page), 'page load, start-up, adapter check and storage read');
  console.log(`pace: ${pace}`);
});

describe('models kept in the browser', () => {
  it('a picked checkpoint is kept and, after a reload, loads from storage with the same weights', async () => {
    expect(await state(page, '#store')).toBe('empty');
    expect(await page.$eval('#stored-forget', (b) => (b as HTMLButtonElement).disabled)).toBe(true);
    const input = await page.$('#model-files');
    await afterLog(page, /^model (stored|store failed)/, () => (input as unknown as { uploadFile(p: string): Promise<void> }).uploadFile(ckPath));
    expect(await state(page, '#model-panel')).toBe('ready');
    expect(await waitState(page, '#store', ['ready', 'error']), await text(page, '#store-status')).toBe('ready');
    expect(await storedCount(page)).toBe(1);
    expect(await pageModelHash(page)).toBe(want.checkpoint);

    await reload(page);
    expect(await state(page, '#model-panel')).toBe('empty');
    expect(await state(page, '#store')).toBe('ready');
    expect(await storedCount(page)).toBe(1);
    expect(await text(page, '#stored-models')).toContain('-picked.safetensors');
    const log = await afterLog(page, /^model (loaded|load failed)/, () => page.click('#stored-load'));
    expect(log).toMatch(/kept in this browser/);
    expect(await state(page, '#model-panel'), await text(page, '#model-status')).toBe('ready');
    expect(await pageModelHash(page)).toBe(want.checkpoint);
  });

  it('models loaded from a URL (a file, a Hugging Face folder) are kept and load without the server', async () => {
    await page.$eval('#model-url', (el, v) => ((el as HTMLInputElement).value = v), `${base}models/ck.safetensors`);
    await afterLog(page, /^model (stored|store failed|load failed)/, () => page.click('#model-url-load'));
    expect(await state(page, '#model-panel'), await text(page, '#model-status')).toBe('ready');
    // The same bytes as the picked checkpoint under another name: a second entry (names are part of a model).
    await page.$eval('#model-url', (el, v) => ((el as HTMLInputElement).value = v), `${base}models/hf/`);
    await afterLog(page, /^model (stored|store failed|load failed)/, () => page.click('#model-url-load'));
    expect(await state(page, '#model-panel'), await text(page, '#model-status')).toBe('ready');
    expect(await pageModelHash(page)).toBe(want.folder);
    expect(await waitState(page, '#store', ['ready', 'error'])).toBe('ready');
    expect(await storedCount(page)).toBe(3);

    // Gone from the server: the stored copy still loads, after a reload.
    rmSync(join(dist, 'models'), { recursive: true, force: true });
    await reload(page);
    const stored = await page.evaluate(() => window.micarDemo!.app.stored.map((m) => ({ id: m.id, label: m.label })));
    const hf = stored.find((m) => m.label.endsWith('/models/hf/'));
    expect(hf, JSON.stringify(stored)).toBeDefined();
    await page.select('#stored-models', hf!.id);
    await afterLog(page, /^model (loaded|load failed)/, () => page.click('#stored-load'));
    expect(await state(page, '#model-panel'), await text(page, '#model-status')).toBe('ready');
    expect(await pageModelHash(page)).toBe(want.folder);
  });

  it('a URL that does not answer is reported naming it', async () => {
    await page.$eval('#model-url', (el, v) => ((el as HTMLInputElement).value = v), `${base}models/missing.safetensors`);
    await afterLog(page, /^model (loaded|load failed)/, () => page.click('#model-url-load'));
    expect(await state(page, '#model-panel')).toBe('error');
    expect(await text(page, '#model-status')).toMatch(/missing\.safetensors: (HTTP 404|not found)/);
    expect(await storedCount(page)).toBe(3);
    // Failed loads and 404s are expected here; nothing else went wrong on the page.
    expect(problems.filter((p) => !/missing\.safetensors/.test(p)), problems.join('\n')).toEqual([]);
    problems.length = 0;
  });

  it('"Forget stored models" empties the list, also after a reload', async () => {
    await afterLog(page, /^stored models forgotten/, () => page.click('#stored-forget'));
    expect(await waitState(page, '#store', ['empty', 'error'])).toBe('empty');
    expect(await storedCount(page)).toBe(0);
    expect(await page.$eval('#stored-load', (b) => (b as HTMLButtonElement).disabled)).toBe(true);
    await reload(page);
    expect(await state(page, '#store')).toBe('empty');
    expect(await page.evaluate(async () => (await caches.keys()).length)).toBe(0);
    expect(problems, problems.join('\n')).toEqual([]);
  });
});
