// Models kept in the browser: the files a model was loaded from (picked or fetched from a URL)
// are put in the origin's Cache Storage, so after a reload the page offers them again without
// the file picker or the network. One cache holds every stored model; its manifest (a JSON
// entry) lists them and is written after a model's files, so a write cut short (quota, closed
// tab) leaves no half-stored model in the list — files no manifest entry names are dropped at
// the next store. A model is identified by the SHA-256 of its files' names and bytes, so the
// same files stored twice are kept once.
import type { NamedFile } from '../src/model/load.ts';
import type { PresetName } from './model-loader.ts';

const CACHE = 'micar-models-v1';
/** Request URLs under this path name cache entries; nothing is ever fetched from them. */
const PREFIX = '/__micar-stored-models__/';

export interface StoredModel {
  id: string;
  /** What the model was loaded from, in words (file names or URL). */
  label: string;
  files: { name: string; size: number }[];
  /** The config preset chosen for a plain state dict when it was loaded. */
  preset: PresetName | null;
  savedAt: string;
}

interface Manifest {
  format: 'micar-stored-models';
  version: 1;
  models: StoredModel[];
}

function key(path: string): Request {
  return new Request(new URL(PREFIX + path, location.origin).href);
}

/** Whether this page can keep models (Cache Storage needs a secure context: https or localhost). */
export function storageAvailable(): boolean {
  return typeof caches !== 'undefined' && globalThis.isSecureContext !== false;
}

async function readManifest(cache: Cache): Promise<Manifest> {
  const res = await cache.match(key('manifest.json'));
  if (!res) return { format: 'micar-stored-models', version: 1, models: [] };
  try {
    const m = (await res.json()) as Manifest;
    if (m.format !== 'micar-stored-models' || !Array.isArray(m.models)) throw new Error('not a stored-models manifest');
    return m;
  } catch {
    // An unreadable manifest: start over rather than offer models that may be broken.
    return { format: 'micar-stored-models', version: 1, models: [] };
  }
}

async function writeManifest(cache: Cache, m: Manifest): Promise<void> {
  await cache.put(key('manifest.json'), new Response(JSON.stringify(m), { headers: { 'content-type': 'application/json' } }));
}

/** The stored models, most recent first. */
export async function listStoredModels(): Promise<StoredModel[]> {
  if (!storageAvailable()) return [];
  if (!(await caches.has(CACHE))) return [];
  const m = await readManifest(await caches.open(CACHE));
  return [...m.models].sort((a, b) => b.savedAt.localeCompare(a.savedAt));
}

async function modelId(files: NamedFile[]): Promise<string> {
  const enc = new TextEncoder();
  const parts: Uint8Array[] = [];
  for (const f of files) parts.push(enc.encode(`${f.name}\0${f.bytes.length}\0`), f.bytes);
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    all.set(p, o);
    o += p.length;
  }
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', all));
  return Array.from(digest.subarray(0, 12), (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * Stores a model's files (replacing an identical earlier copy). Throws with the browser's reason
 * (e.g. the storage quota) when they do not fit; what was stored before stays.
 */
export async function storeModel(label: string, files: NamedFile[], preset: PresetName | null): Promise<StoredModel> {
  if (!storageAvailable()) throw new Error('this page has no Cache Storage (it needs https or localhost)');
  // Ask the browser not to evict the models under storage pressure (best effort; may be refused).
  await navigator.storage?.persist?.().catch(() => false);
  const cache = await caches.open(CACHE);
  const id = await modelId(files);
  for (const [i, f] of files.entries()) {
    await cache.put(key(`${id}/${i}`), new Response(f.bytes as BlobPart, { headers: { 'content-type': 'application/octet-stream' } }));
  }
  const entry: StoredModel = { id, label, files: files.map((f) => ({ name: f.name, size: f.bytes.length })), preset, savedAt: new Date().toISOString() };
  const m = await readManifest(cache);
  m.models = [...m.models.filter((x) => x.id !== id), entry];
  await writeManifest(cache, m);
  // Files of models no longer listed (an earlier store cut short).
  const listed = new Set(m.models.map((x) => x.id));
  for (const req of await cache.keys()) {
    const path = new URL(req.url).pathname.slice(PREFIX.length);
    if (path !== 'manifest.json' && !listed.has(path.split('/')[0])) await cache.delete(req);
  }
  return entry;
}

/** A stored model's files, as they were loaded. */
export async function readStoredModel(entry: StoredModel): Promise<NamedFile[]> {
  const cache = await caches.open(CACHE);
  const out: NamedFile[] = [];
  for (const [i, f] of entry.files.entries()) {
    const res = await cache.match(key(`${entry.id}/${i}`));
    if (!res) throw new Error(`stored model "${entry.label}": ${f.name} is missing from the browser's storage (it may have been evicted); forget it and load the files again`);
    const bytes = new Uint8Array(await res.arrayBuffer());
    if (bytes.length !== f.size) throw new Error(`stored model "${entry.label}": ${f.name} has ${bytes.length} bytes, ${f.size} were stored`);
    out.push({ name: f.name, bytes });
  }
  return out;
}

/** Deletes every stored model. */
export async function forgetStoredModels(): Promise<void> {
  if (storageAvailable()) await caches.delete(CACHE);
}

/** Bytes stored (sum of the listed models' files). */
export function storedBytes(models: StoredModel[]): number {
  return models.reduce((n, m) => n + m.files.reduce((a, f) => a + f.size, 0), 0);
}
