// WGSL lives in `shaders/*.wgsl`, read at run time in Deno and fetched in the browser.
// Files are templates for wgsl-preprocessor: `${NAME}` holes and `#if ${FLAG}` blocks,
// filled from a specialisation record (tile sizes, activation, element type).
import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';

const sourceCache = new Map<string, Promise<string>>();
const syncCache = new Map<string, string>();

declare const Deno: { readTextFile(p: URL): Promise<string> } | undefined;

function shaderUrl(name: string): URL {
  return new URL(`../../shaders/${name}.wgsl`, import.meta.url);
}

async function fetchSource(name: string): Promise<string> {
  const url = shaderUrl(name);
  if (typeof Deno !== 'undefined') return Deno.readTextFile(url);
  const proc = (globalThis as { process?: { versions?: { node?: string } } }).process;
  if (proc?.versions?.node && url.protocol === 'file:') {
    const fs = 'node:fs/promises';
    const { readFile } = await import(/* @vite-ignore */ fs);
    return readFile(url, 'utf8');
  }
  const res = await fetch(url);
  if (!res.ok) throw new Error(`cannot load shader ${name}.wgsl from ${url}: HTTP ${res.status}`);
  return res.text();
}

/** Loads (once) the WGSL template of a kernel family. */
export function loadShader(name: string): Promise<string> {
  let p = sourceCache.get(name);
  if (!p) {
    p = fetchSource(name).then((s) => {
      syncCache.set(name, s);
      return s;
    });
    sourceCache.set(name, p);
  }
  return p;
}

/** Loads every family named, so later synchronous pipeline creation can use them. */
export async function preloadShaders(names: string[]): Promise<void> {
  await Promise.all(names.map(loadShader));
}

export function shaderSourceSync(name: string): string {
  const s = syncCache.get(name);
  if (s === undefined) throw new Error(`shader ${name}.wgsl was not preloaded (call preloadShaders first)`);
  return s;
}

export type Defs = Record<string, string | number | boolean>;

/** Fills a template's `${NAME}` holes from `defs` and resolves `#if` blocks. */
export function specialise(name: string, template: string, defs: Defs): string {
  const strings: string[] = [];
  const values: unknown[] = [];
  const re = /\$\{(\w+)\}/g;
  let last = 0;
  for (let m = re.exec(template); m; m = re.exec(template)) {
    strings.push(template.slice(last, m.index));
    if (!(m[1] in defs)) throw new Error(`shader ${name}.wgsl needs specialisation value \${${m[1]}}`);
    values.push(defs[m[1]]);
    last = m.index + m[0].length;
  }
  strings.push(template.slice(last));
  const raw = Object.assign([...strings], { raw: strings });
  return wgsl(raw as unknown as TemplateStringsArray, ...values);
}
