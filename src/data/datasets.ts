// Loaders for the four public datasets, with the authors' cleaning rules and splits
// (AI-14/micar-vl-moe, preprocessors/*.py), and for the built-in phantom dataset.
//
// Layouts (dir = the authors' data/<name>/ folder):
//  covctr    reports.csv (image_id, reports_En) + images/<image_id>; split 0.2 then 0.5, seed 9876.
//  mmretinal {CFP,FFA,OCT}_translated_v1.csv (Image_ID, en_caption) + {CFP,FFA,OCT}/<Image_ID>.<ext>;
//            each modality split 0.2 then 0.5 with seed 9876, then concatenated CFP, FFA, OCT.
//  pgross    captions.json {image file: caption} + images/<file>; report = text after the last ':';
//            null captions dropped before the split; split 0.3 then 0.66, seed 1234.
//  roco      parquet files (in dir or dir/parquet) whose names contain train / validation / test,
//            columns image {bytes}, image_id, caption; the official splits.
//  phantom   the covctr layout written by writePhantomDataset, plus findings.json.
// Splits: sklearn train_test_split as in splits.ts (order = sklearn's permuted order).
// Where the authors silently drop rows (an image file not found; pandas dropna), we raise an Error
// naming the file and row unless `missingImages: 'drop'` is given (applied after the split, as the
// authors' dropna is, so the other rows keep their splits).

import { parquetMetadataAsync, parquetReadObjects, type AsyncBuffer } from 'hyparquet';
import { gunzipSync } from 'fflate';
import { csvColumn, parseCsv } from './csv.ts';
import type { Finding, Modality } from './findings.ts';
import { type DataFiles, joinPath, localFiles } from './fs.ts';
import { decodeImage, type RGBImage, sniffImageFormat } from './images.ts';
import { generatePhantom, PHANTOM_FINDINGS_FILE, type PhantomFindingsFile, type PhantomFinding, type PhantomOptions, writePhantomDataset } from './phantom.ts';
import { AUTHORS_SPLITS, threeWaySplit } from './splits.ts';

export type DatasetFormat = 'covctr' | 'mmretinal' | 'pgross' | 'roco' | 'phantom';

export interface Sample {
  id: string;
  /** Image file (covctr, mmretinal, pgross, phantom). */
  imagePath?: string;
  /** Encoded image bytes (roco: from the parquet `image.bytes`). */
  imageBytes?: Uint8Array;
  /** Decoded image held in memory (phantom samples generated without disk). */
  image?: RGBImage;
  /** Cleaned report. */
  report: string;
  /** Phantom only: the true modality and findings (with boxes). */
  meta?: { modality: Modality; findings: PhantomFinding[] };
}

export interface DatasetSplits {
  train: Sample[];
  val: Sample[];
  test: Sample[];
}

export interface LoadOptions {
  /** File access (default: the local file system). */
  files?: DataFiles;
  /** 'error' (default): a row whose image file is missing is an Error naming file and row; 'drop': drop it as the authors do. */
  missingImages?: 'error' | 'drop';
  /** Decode every image while loading, so an unreadable one fails now rather than in training (default false: only existence is checked). */
  verifyImages?: boolean;
  /** Phantom: generate and write the dataset into `dir` when `dir/reports.csv` is missing. */
  phantom?: PhantomOptions;
  /**
   * ROCO: write each row's image into this folder once (a marker file per parquet file records a
   * finished extraction) and reference the files, so the image bytes of the whole dataset (many
   * GB) are not held in memory. Without it the bytes stay in memory (browser, small folders).
   */
  rocoImages?: string;
}

// ---------------------------------------------------------------- cleaning rules (authors')
// Python's str regexes are Unicode-aware: \b and \w count letters like 'é' as word characters, \d
// is any decimal digit, \s and str.strip() include \x1c-\x1f and \x85 (but not U+FEFF). These
// helpers give JS the same meaning.

const PY_W = '[\\p{L}\\p{N}_]';
const PY_B = `(?:(?<=${PY_W})(?!${PY_W})|(?<!${PY_W})(?=${PY_W}))`;
const PY_D = '\\p{Nd}';
const PY_S = '(?:(?!\\ufeff)[\\s\\x1c-\\x1f\\x85])';
const PY_SPACE_RUN = new RegExp(`${PY_S}+`, 'gu');
const PY_EDGE_SPACE = new RegExp(`^${PY_S}+|${PY_S}+$`, 'gu');

/** Python's str.strip(). */
export function pyStrip(s: string): string {
  return s.replace(PY_EDGE_SPACE, '');
}

/** COVCTR: drop " ( ) -, space before , and ., ';' → ' ,', trim, lower case, end with '.'. */
export function cleanCovctr(report: string): string {
  const text = report
    .replaceAll('"', '')
    .replaceAll('(', '')
    .replaceAll(')', '')
    .replaceAll(',', ' ,')
    .replaceAll('-', '')
    .replaceAll(';', ' ,')
    .replaceAll('.', ' .');
  const text2 = pyStrip(text).toLowerCase();
  if (text2 === '') return text2;
  return text2[text2.length - 1] !== '.' ? text2 + ' .' : text2;
}

// [.,?;*!%^&_+():-\[\]{}] — note ':-\[' is a range (':' … '['), as in the authors' pattern.
const SENTENCE_STRIP = /[.,?;*!%^&_+():-\[\]{}]/g;

function sentenceClean(t: string): string {
  const s = t.replaceAll('"', '').replaceAll('/', '').replaceAll('\\', '').replaceAll("'", '');
  return pyStrip(s).toLowerCase().replace(SENTENCE_STRIP, '');
}

function reportSentences(t: string): string[] {
  return pyStrip(numberCleanup(t)).toLowerCase().split('. ');
}

function numberCleanup(t: string): string {
  return t
    .replaceAll('..', '.')
    .replaceAll('..', '.')
    .replaceAll('..', '.')
    .replaceAll('1. ', '')
    .replaceAll('. 2. ', '. ')
    .replaceAll('. 3. ', '. ')
    .replaceAll('. 4. ', '. ')
    .replaceAll('. 5. ', '. ')
    .replaceAll(' 2. ', '. ')
    .replaceAll(' 3. ', '. ')
    .replaceAll(' 4. ', '. ')
    .replaceAll(' 5. ', '. ')
    .replaceAll('. .', '.');
}

/** PGROSS (applied to the text after the last ':'): number/dot clean-up, sentences stripped of punctuation, joined with " . ". */
export function cleanPgross(text: string): string {
  return reportSentences(text).map(sentenceClean).join(' . ') + ' .';
}

const MMRETINAL_FIGURE_REFS = new RegExp(
  `${PY_B}(?:same (?:person|patient|eye) as (?:fig(?:ure|s)\\.|figures?)? ${PY_D}{1,2}-${PY_D}{1,2}[a-zA-Z]?(?: and [a-zA-Z])?|fig(?:ure|s)?\\.? ${PY_D}{1,2}-${PY_D}{1,2}[a-zA-Z]?|[a-z] (?:for|is|shows))${PY_B}[.,]?`,
  'giu',
);
const ROCO_AGE = new RegExp(`${PY_B}${PY_D}{1,3}(?:-|${PY_S})?(year(?:-|${PY_S})?old)${PY_B}`, 'giu');
const ROCO_MEASURE = new RegExp(`${PY_B}${PY_D}+(?:\\.${PY_D}+)?${PY_S}?(mm|cm|m|kg|g|mg|ml)${PY_B}`, 'giu');

/** MMRetinal: drop figure references, collapse spaces, end lines with '.', then as PGROSS. */
export function cleanMmretinal(text: string): string {
  let cleaned = text.replace(MMRETINAL_FIGURE_REFS, ' ');
  cleaned = pyStrip(cleaned.replace(PY_SPACE_RUN, ' '));
  cleaned = cleaned.replace(/([^.\n])(\n|$)/g, '$1.$2');
  cleaned = cleaned.toLowerCase();
  return reportSentences(cleaned).map(sentenceClean).join(' . ') + ' .';
}

/** ROCO: ages and measurements → "xxxx", spaces collapsed, '.' and ',' split off, lower case. */
export function cleanRoco(report: string): string {
  let caption = report.replace(/\n|\t/g, ' ');
  caption = caption.replace(ROCO_AGE, 'xxxx');
  caption = caption.replace(ROCO_MEASURE, 'xxxx');
  caption = pyStrip(caption.replace(PY_SPACE_RUN, ' '));
  if (!caption.endsWith('.')) caption += '.';
  caption = caption.slice(0, -1).replaceAll('.', ' . ').replaceAll(',', ' , ') + ' .';
  return pyStrip(caption).toLowerCase();
}

// ---------------------------------------------------------------- helpers

interface Row {
  sample: Sample;
  /** "file row N (line L)" for error messages. */
  where: string;
}

function requireReport(report: string | undefined, where: string, column: string): string {
  if (report === undefined || report.trim() === '') throw new Error(`${where}: empty report in column "${column}"`);
  return report;
}

async function readText(fs: DataFiles, path: string): Promise<string> {
  try {
    return new TextDecoder('utf-8').decode(await fs.readFile(path));
  } catch (e) {
    throw new Error(`cannot read ${path}: ${(e as Error).message}`);
  }
}

/** Checks images of a split (existence, optionally decoding); drops or throws as asked. */
async function checkImages(rows: Row[], fs: DataFiles, opts: LoadOptions): Promise<Sample[]> {
  const out: Sample[] = [];
  for (const r of rows) {
    const s = r.sample;
    if (s.imagePath !== undefined) {
      if (!(await fs.exists(s.imagePath))) {
        if (opts.missingImages === 'drop') continue;
        throw new Error(`${r.where}: image file ${s.imagePath} not found`);
      }
      if (opts.verifyImages) await decodeImage(await fs.readFile(s.imagePath), `${s.imagePath} (${r.where})`);
    } else if (s.imageBytes !== undefined) {
      if (!sniffImageFormat(s.imageBytes)) throw new Error(`${r.where}: image bytes are neither PNG nor JPEG (${s.imageBytes.length} bytes)`);
      if (opts.verifyImages) await decodeImage(s.imageBytes, r.where);
    }
    out.push(s);
  }
  return out;
}

async function finish(split: { train: Row[]; val: Row[]; test: Row[] }, fs: DataFiles, opts: LoadOptions, source: string): Promise<DatasetSplits> {
  const result: DatasetSplits = {
    train: await checkImages(split.train, fs, opts),
    val: await checkImages(split.val, fs, opts),
    test: await checkImages(split.test, fs, opts),
  };
  for (const k of ['train', 'val', 'test'] as const) {
    if (result[k].length === 0) throw new Error(`${source}: the ${k} split is empty (train ${result.train.length}, val ${result.val.length}, test ${result.test.length})`);
  }
  return result;
}

function authorsSplit(rows: Row[], which: keyof typeof AUTHORS_SPLITS, source: string) {
  const p = AUTHORS_SPLITS[which];
  try {
    return threeWaySplit(rows, p.firstTest, p.secondTest, p.seed);
  } catch (e) {
    throw new Error(`${source}: cannot split ${rows.length} rows: ${(e as Error).message}`);
  }
}

// ---------------------------------------------------------------- loaders

async function covctrRows(dir: string, fs: DataFiles): Promise<Row[]> {
  const file = joinPath(dir, 'reports.csv');
  const table = parseCsv(await readText(fs, file), file);
  const idCol = csvColumn(table, 'image_id', file), repCol = csvColumn(table, 'reports_En', file);
  return table.rows.map((r, i) => {
    const where = `${file} row ${i + 1} (line ${table.lines[i]})`;
    const id = r[idCol]; // not stripped: the authors use it verbatim
    if (id.trim() === '') throw new Error(`${where}: empty image_id`);
    const report = cleanCovctr(requireReport(r[repCol], where, 'reports_En'));
    return { sample: { id, imagePath: joinPath(dir, 'images', id), report }, where };
  });
}

export async function loadCovctr(dir: string, opts: LoadOptions = {}): Promise<DatasetSplits> {
  const fs = opts.files ?? (await localFiles());
  const rows = await covctrRows(dir, fs);
  return finish(authorsSplit(rows, 'covctr', joinPath(dir, 'reports.csv')), fs, opts, joinPath(dir, 'reports.csv'));
}

export const MMRETINAL_PARTS = ['CFP', 'FFA', 'OCT'] as const;

export async function loadMmretinal(dir: string, opts: LoadOptions = {}): Promise<DatasetSplits> {
  const fs = opts.files ?? (await localFiles());
  const parts = { train: [] as Row[], val: [] as Row[], test: [] as Row[] };
  for (const part of MMRETINAL_PARTS) {
    const file = joinPath(dir, `${part}_translated_v1.csv`);
    if (!(await fs.exists(file))) throw new Error(`mmretinal: ${file} not found (expected ${MMRETINAL_PARTS.map((p) => `${p}_translated_v1.csv`).join(', ')} in ${dir})`);
    const table = parseCsv(await readText(fs, file), file);
    const idCol = csvColumn(table, 'Image_ID', file), capCol = csvColumn(table, 'en_caption', file);
    const imageDir = joinPath(dir, part);
    const names = (await fs.exists(imageDir)) ? await fs.list(imageDir) : [];
    // The authors match a file whose name without its last 4 characters is the id (".png"/".jpg").
    const byStem = new Map<string, string>();
    for (const n of names) if (!byStem.has(n.slice(0, -4))) byStem.set(n.slice(0, -4), n);
    const rows: Row[] = table.rows.map((r, i) => {
      const where = `${file} row ${i + 1} (line ${table.lines[i]})`;
      const id = r[idCol]; // compared verbatim with file names, as the authors do
      if (id.trim() === '') throw new Error(`${where}: empty Image_ID`);
      const raw = requireReport(r[capCol], where, 'en_caption');
      const name = byStem.get(id);
      return { sample: { id, imagePath: joinPath(imageDir, name ?? id), report: raw }, where };
    });
    const split = authorsSplit(rows, 'mmretinal', file);
    for (const k of ['train', 'val', 'test'] as const) {
      for (const r of split[k]) r.sample.report = cleanMmretinal(r.sample.report); // cleaned after the split, as the authors do
      parts[k].push(...split[k]);
    }
  }
  return finish(parts, fs, opts, `mmretinal ${dir}`);
}

/** Top-level entries of a JSON object in file order (JSON.parse would move integer-like keys first). */
function orderedJsonEntries(text: string, source: string): [string, unknown][] {
  let i = 0;
  const ws = () => {
    while (i < text.length && /\s/.test(text[i])) i++;
  };
  const fail = (what: string): never => {
    throw new Error(`${source}: ${what} at offset ${i}`);
  };
  const readValueEnd = (): number => {
    // Scans one JSON value; returns the index just past it.
    let depth = 0, j = i, inStr = false;
    for (; j < text.length; j++) {
      const ch = text[j];
      if (inStr) {
        if (ch === '\\') j++;
        else if (ch === '"') {
          inStr = false;
          if (depth === 0) return j + 1;
        }
      } else if (ch === '"') inStr = true;
      else if (ch === '{' || ch === '[') depth++;
      else if (ch === '}' || ch === ']') {
        if (depth === 0) return j;
        depth--;
        if (depth === 0) return j + 1;
      } else if (ch === ',' && depth === 0) return j;
    }
    return j;
  };
  if (text.charCodeAt(0) === 0xfeff) i = 1;
  ws();
  if (text[i] !== '{') fail('expected a JSON object');
  i++;
  const out: [string, unknown][] = [];
  ws();
  if (text[i] === '}') return out;
  for (;;) {
    ws();
    if (text[i] !== '"') fail('expected a key');
    const kStart = i;
    i++;
    while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++;
    const key = JSON.parse(text.slice(kStart, i)) as string;
    ws();
    if (text[i] !== ':') fail('expected ":"');
    i++;
    ws();
    const end = readValueEnd();
    let value: unknown;
    try {
      value = JSON.parse(text.slice(i, end));
    } catch (e) {
      fail(`bad value for key ${JSON.stringify(key)} (${(e as Error).message})`);
    }
    out.push([key, value]);
    i = end;
    ws();
    if (text[i] === ',') {
      i++;
      continue;
    }
    if (text[i] === '}') return out;
    fail('expected "," or "}"');
  }
}

export async function loadPgross(dir: string, opts: LoadOptions = {}): Promise<DatasetSplits> {
  const fs = opts.files ?? (await localFiles());
  const file = joinPath(dir, 'captions.json');
  const entries = orderedJsonEntries(await readText(fs, file), file);
  const rows: Row[] = [];
  entries.forEach(([key, value], i) => {
    const where = `${file} entry ${i + 1} ("${key}")`;
    if (value === null) return; // the authors' dropna, before the split
    if (typeof value !== 'string') throw new Error(`${where}: caption is ${typeof value}, expected a string`);
    const text = pyStrip(value.split(':').pop()!);
    requireReport(text, where, 'caption (after the last ":")');
    rows.push({ sample: { id: key, imagePath: joinPath(dir, 'images', key), report: cleanPgross(text) }, where });
  });
  return finish(authorsSplit(rows, 'pgross', file), fs, opts, file);
}

function bufferOf(bytes: Uint8Array): AsyncBuffer {
  const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  return { byteLength: ab.byteLength, slice: (s: number, e?: number) => ab.slice(s, e) };
}

const ROCO_SPLITS = { train: 'train', val: 'validation', test: 'test' } as const;

export async function loadRoco(dir: string, opts: LoadOptions = {}): Promise<DatasetSplits> {
  const fs = opts.files ?? (await localFiles());
  const pq = (await fs.exists(joinPath(dir, 'parquet'))) ? joinPath(dir, 'parquet') : dir;
  const names = (await fs.list(pq)).filter((n) => n.endsWith('.parquet'));
  const split = { train: [] as Row[], val: [] as Row[], test: [] as Row[] };
  const decoder = new TextDecoder('utf-8');
  for (const k of ['train', 'val', 'test'] as const) {
    const files = names.filter((n) => n.includes(ROCO_SPLITS[k]));
    if (files.length === 0) throw new Error(`roco: no parquet file with "${ROCO_SPLITS[k]}" in its name in ${pq} (found: ${names.join(', ') || 'none'})`);
    for (const name of files) {
      const file = joinPath(pq, name);
      const out = opts.rocoImages;
      const marker = out ? joinPath(out, `.extracted-${name}.json`) : '';
      // A finished extraction: the image file name of every row (then the image column is not read).
      let extracted: string[] | null = null;
      if (out && (await fs.exists(marker))) {
        try {
          extracted = JSON.parse(new TextDecoder().decode(await fs.readFile(marker)));
          if (!Array.isArray(extracted)) throw new Error('not a list of file names');
        } catch (e) {
          throw new Error(`roco: ${marker}: ${(e as Error).message} (delete it to extract ${file} again)`);
        }
      }
      const buf = bufferOf(await fs.readFile(file));
      let rows: Record<string, unknown>[];
      try {
        const metadata = await parquetMetadataAsync(buf);
        const top = new Set(metadata.schema.slice(1).map((s) => s.name));
        for (const col of ['image', 'image_id', 'caption']) if (!top.has(col)) throw new Error(`missing column "${col}" (columns: ${[...top].join(', ')})`);
        const columns = extracted ? ['image_id', 'caption'] : ['image', 'image_id', 'caption'];
        rows = await parquetReadObjects({ file: buf, metadata, columns, utf8: false, compressors: { GZIP: (input: Uint8Array) => gunzipSync(input) } });
      } catch (e) {
        throw new Error(`roco: ${file}: ${(e as Error).message}`);
      }
      if (extracted && extracted.length !== rows.length) throw new Error(`roco: ${marker} lists ${extracted.length} images but ${file} has ${rows.length} rows (delete it to extract again)`);
      if (out) await fs.mkdirp(out);
      const names: string[] = [];
      for (const [i, r] of rows.entries()) {
        const where = `${file} row ${i + 1}`;
        const str = (v: unknown) => (v instanceof Uint8Array ? decoder.decode(v) : v === null || v === undefined ? undefined : String(v));
        const id = str(r.image_id);
        if (!id) throw new Error(`${where}: empty image_id`);
        const caption = requireReport(str(r.caption), where, 'caption');
        if (extracted) {
          split[k].push({ sample: { id, imagePath: joinPath(out!, extracted[i]), report: cleanRoco(caption) }, where });
          continue;
        }
        const image = r.image as { bytes?: unknown } | null;
        const bytes = image?.bytes;
        if (!(bytes instanceof Uint8Array) || bytes.length === 0) throw new Error(`${where}: no image bytes in column "image.bytes"`);
        if (!out) {
          split[k].push({ sample: { id, imageBytes: bytes, report: cleanRoco(caption) }, where });
          continue;
        }
        const fmt = sniffImageFormat(bytes);
        if (!fmt) throw new Error(`${where}: image bytes are neither PNG nor JPEG (${bytes.length} bytes)`);
        // One file per row: the image id made safe as a file name, plus file and row (ids may repeat).
        const fname = `${id.replace(/[^\w.-]/g, '_')}-${name.replace(/\.parquet$/, '')}-${i}.${fmt === 'jpeg' ? 'jpg' : 'png'}`;
        await fs.writeFile(joinPath(out, fname), bytes);
        names.push(fname);
        split[k].push({ sample: { id, imagePath: joinPath(out, fname), report: cleanRoco(caption) }, where });
      }
      // Written last: a crash mid-file leaves no marker, so the next load extracts that file again.
      if (out && !extracted) await fs.writeFile(marker, new TextEncoder().encode(JSON.stringify(names)));
    }
  }
  return finish(split, fs, opts, `roco ${pq}`);
}

export async function loadPhantom(dir: string, opts: LoadOptions = {}): Promise<DatasetSplits> {
  const fs = opts.files ?? (await localFiles());
  if (!(await fs.exists(joinPath(dir, 'reports.csv')))) {
    if (!opts.phantom) throw new Error(`phantom: ${joinPath(dir, 'reports.csv')} not found; pass opts.phantom { count, seed, size } to generate the dataset there`);
    await writePhantomDataset(dir, generatePhantom(opts.phantom), fs);
  }
  const splits = await loadCovctr(dir, { ...opts, files: fs });
  const metaFile = joinPath(dir, PHANTOM_FINDINGS_FILE);
  if (await fs.exists(metaFile)) {
    const meta = JSON.parse(await readText(fs, metaFile)) as PhantomFindingsFile;
    if (meta.format !== 'micar-phantom-findings') throw new Error(`phantom: ${metaFile} is not a phantom findings file (format ${meta.format})`);
    for (const s of [...splits.train, ...splits.val, ...splits.test]) {
      const m = meta.samples[s.id];
      if (!m) throw new Error(`phantom: ${metaFile} has no entry for image ${s.id}`);
      s.meta = { modality: m.modality, findings: m.findings };
    }
  }
  return splits;
}

export function loadDataset(format: DatasetFormat, dir: string, opts: LoadOptions = {}): Promise<DatasetSplits> {
  switch (format) {
    case 'covctr':
      return loadCovctr(dir, opts);
    case 'mmretinal':
      return loadMmretinal(dir, opts);
    case 'pgross':
      return loadPgross(dir, opts);
    case 'roco':
      return loadRoco(dir, opts);
    case 'phantom':
      return loadPhantom(dir, opts);
    default:
      throw new Error(`loadDataset: unknown format ${JSON.stringify(format)} (covctr, mmretinal, pgross, roco, phantom)`);
  }
}

/** Decodes a sample's image to 8-bit RGB (from memory, bytes or file); errors name the file and sample. */
export async function loadSampleImage(sample: Sample, files?: DataFiles): Promise<RGBImage> {
  if (sample.image) return sample.image;
  if (sample.imageBytes) return decodeImage(sample.imageBytes, `sample ${sample.id}`);
  if (sample.imagePath === undefined) throw new Error(`loadSampleImage: sample ${sample.id} has no image`);
  const fs = files ?? (await localFiles());
  let bytes: Uint8Array;
  try {
    bytes = await fs.readFile(sample.imagePath);
  } catch (e) {
    throw new Error(`loadSampleImage: cannot read ${sample.imagePath} (sample ${sample.id}): ${(e as Error).message}`);
  }
  return decodeImage(bytes, `${sample.imagePath} (sample ${sample.id})`);
}

/** Phantom samples generated in memory (no disk), as loader samples with their findings. */
export function phantomSamples(opts: PhantomOptions): Sample[] {
  return generatePhantom(opts).map((p) => ({ id: p.id, image: p.image, report: p.report, meta: { modality: p.modality, findings: p.findings } }));
}

export type { Finding };
