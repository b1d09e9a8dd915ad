// WGSL lives in `shaders/*.wgsl` and travels with the code as strings in the generated
// src/gpu/shader-sources.ts (scripts/gen-shaders.ts), so Deno, a browser, a bundled app and a
// registry import all read the same sources without a shaders/ folder beside them.
// Files are templates for wgsl-preprocessor: `${NAME}` holes and `#if ${FLAG}` blocks,
// filled from a specialisation record (tile sizes, activation, element type).
import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';
import { SHADER_SOURCES } from './shader-sources.ts';
import { expandIncludes, includesOf } from './include.ts';

const sourceCache = new Map<string, Promise<string>>();
const syncCache = new Map<string, string>();

declare const Deno: { readTextFile(p: URL): Promise<string> } | undefined;

/** Where the shader's file sits in a source checkout (only Deno's staleness check reads it). */
const SHADERS_DIR = '../../shaders/';
function shaderUrl(name: string): URL {
  // Not a literal `new URL('…', import.meta.url)`: bundlers would copy every .wgsl as an asset.
  return new URL(SHADERS_DIR + name + '.wgsl', import.meta.url);
}

let staleWarned = false;

/**
 * The generated source of a shader. In a source checkout run by Deno, a shaders/ file that was
 * edited since the module was generated wins, with one warning (run `npm run gen:shaders`;
 * tests/shader-sources.test.ts fails until then), so an edit is never silently ignored.
 */
async function fetchSource(name: string): Promise<string> {
  const generated = Object.hasOwn(SHADER_SOURCES, name) ? SHADER_SOURCES[name] : undefined;
  const url = shaderUrl(name);
  if (typeof Deno !== 'undefined' && url.protocol === 'file:') {
    const onDisk = await Deno.readTextFile(url).catch(() => undefined);
    if (onDisk !== undefined && onDisk !== generated) {
      if (!staleWarned) console.warn(`src/gpu/shader-sources.ts is stale (shaders/${name}.wgsl differs): using the file; run \`npm run gen:shaders\``);
      staleWarned = true;
      return onDisk;
    }
  }
  if (generated === undefined) throw new Error(`no shader "${name}" (shaders/${name}.wgsl is not in src/gpu/shader-sources.ts; have ${Object.keys(SHADER_SOURCES).join(', ')})`);
  return generated;
}

/** Loads (once) the WGSL template of a kernel family, and the shaders/lib pieces it includes. */
export function loadShader(name: string): Promise<string> {
  let p = sourceCache.get(name);
  if (!p) {
    p = fetchSource(name).then(async (s) => {
      await Promise.all(includesOf(s).map(loadShader));
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
  template = expandIncludes(name, template, shaderSourceSync);
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
