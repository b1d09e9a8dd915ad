// Word-level report tokenizer (SPEC §8): ids <pad> 0, <sos> 1, <eos> 2, <unk> 3, then the
// vocabulary sorted as Python sorts strings (by code point). Reads and writes the authors'
// vocabulary files (token2id.json / id2token.json, byte for byte as their json.dump wrote them).
//
// Cleaning. The authors' tokenizer itself only splits on white space (utils/tokenizers.py):
// each dataset's preprocessor (preprocessors/<dataset>.py) cleaned the reports beforehand, and
// their vocabularies hold what those cleaners left (e.g. "x-ray", "(flèche)", "10-year-old").
// So a tokenizer has a `cleaner`:
//   'generic'    (default for `build`): lower case, punctuation split off as tokens, words with
//                inner "-", "'" or "." (x-ray, 2.5) kept whole, <special> tokens kept;
//   'whitespace' (default for `fromAuthorsVocab`): Python `str.split()` only, for reports
//                already cleaned by the authors' preprocessors (their CSV files);
//   'covctr' | 'mmretinal' | 'pgross' | 'roco': that preprocessor's `_clean_report` on a raw
//                report, then the white-space split (`authorsCleaners`).

export const PAD_ID = 0, SOS_ID = 1, EOS_ID = 2, UNK_ID = 3;
export const SPECIAL_TOKENS = ['<pad>', '<sos>', '<eos>', '<unk>'] as const;

export type AuthorsDataset = 'covctr' | 'mmretinal' | 'pgross' | 'roco';
export type CleanerName = 'generic' | 'whitespace' | AuthorsDataset;

/** What Python's `str.split()` treats as white space. */
const PY_WHITESPACE = /[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/;
const PY_WS_CLASS = '\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';

/** Python `str.split()`. */
export function pySplit(s: string): string[] {
  return s.split(PY_WHITESPACE).filter((t) => t !== '');
}

/** Python `str.strip()`. */
function pyStrip(s: string): string {
  return s.replace(new RegExp(`^[${PY_WS_CLASS}]+|[${PY_WS_CLASS}]+$`, 'gu'), '');
}

const GENERIC_TOKEN = /<[a-z]+>|[\p{L}\p{M}\p{N}]+(?:[-'.][\p{L}\p{M}\p{N}]+)*|[^\p{L}\p{M}\p{N}\s]/gu;

/** The generic cleaning: lower case; punctuation marks become tokens of their own. */
export function genericClean(report: string): string[] {
  return report.toLowerCase().match(GENERIC_TOKEN) ?? [];
}

// --- The authors' per-dataset report cleaners (preprocessors/*.py `_clean_report`) ---
// Python's \b and \d are Unicode-aware; these use Unicode letter/number classes to match.
const W = '[\\p{L}\\p{N}_]';
const B_BEFORE_WORD = `(?<!${W})`; // \b in front of a word character
const B_AFTER_WORD = `(?!${W})`; // \b after a word character
const D = '\\p{Nd}';

function covctrClean(report: string): string {
  const text = pyStrip(
    report.replaceAll('"', '').replaceAll('(', '').replaceAll(')', '').replaceAll(',', ' ,').replaceAll('-', '')
      .replaceAll(';', ' ,').replaceAll('.', ' .'),
  ).toLowerCase();
  return text.endsWith('.') ? text : text + ' .';
}

const ROCO_AGE = new RegExp(`${B_BEFORE_WORD}${D}{1,3}[-\\s]?(year[-\\s]?old)${B_AFTER_WORD}`, 'giu');
const ROCO_MEASURE = new RegExp(`${B_BEFORE_WORD}${D}+(?:\\.${D}+)?\\s?(mm|cm|m|kg|g|mg|ml)${B_AFTER_WORD}`, 'giu');

function rocoClean(report: string): string {
  let c = report.replace(/\n|\t/g, ' ');
  c = c.replace(ROCO_AGE, 'xxxx');
  c = c.replace(ROCO_MEASURE, 'xxxx');
  c = pyStrip(c.replace(/\s+/gu, ' '));
  if (!c.endsWith('.')) c += '.';
  c = c.slice(0, -1).replaceAll('.', ' . ').replaceAll(',', ' , ') + ' .';
  return pyStrip(c).toLowerCase();
}

/** pgross/mmretinal `_report_cleaner`: drop list numbering, split into sentences on ". ". */
function splitSentences(t: string): string[] {
  return pyStrip(
    t.replaceAll('..', '.').replaceAll('..', '.').replaceAll('..', '.').replaceAll('1. ', '')
      .replaceAll('. 2. ', '. ').replaceAll('. 3. ', '. ').replaceAll('. 4. ', '. ').replaceAll('. 5. ', '. ')
      .replaceAll(' 2. ', '. ').replaceAll(' 3. ', '. ').replaceAll(' 4. ', '. ').replaceAll(' 5. ', '. ')
      .replaceAll('. .', '.'),
  ).toLowerCase().split('. ');
}

// The authors' class "[.,?;*!%^&_+():-\[\]{}]" holds the range ":"–"[" (so also < = > ? @ and
// A–Z), and no literal "-": hyphens survive.
const SENTENCE_STRIP = /[.,?;*!%^&_+()\u003a-\u005b\]{}]/g;

/** pgross/mmretinal `_sent_cleaner`. */
function cleanSentence(t: string): string {
  return pyStrip(t.replaceAll('"', '').replaceAll('/', '').replaceAll('\\', '').replaceAll("'", '')).toLowerCase()
    .replace(SENTENCE_STRIP, '');
}

function sentencesClean(report: string): string {
  return splitSentences(report).map(cleanSentence).join(' . ') + ' .';
}

/** PGROSS: the preprocessor keeps the text after the last ":" before cleaning. */
function pgrossClean(report: string): string {
  const parts = report.split(':');
  return sentencesClean(pyStrip(parts[parts.length - 1]));
}

const MMRETINAL_FIGURE_REFS = new RegExp(
  '\\b(?:same (?:person|patient|eye) as (?:fig(?:ure|s)\\.|figures?)? \\d{1,2}-\\d{1,2}[a-zA-Z]?(?: and [a-zA-Z])?' +
    '|fig(?:ure|s)?\\.? \\d{1,2}-\\d{1,2}[a-zA-Z]?|[a-z] (?:for|is|shows))\\b[.,]?',
  'gi',
);

/** MMRetinal: figure cross-references removed, a final "." ensured, then as PGROSS. */
function mmretinalClean(report: string): string {
  let c = pyStrip(report.replace(MMRETINAL_FIGURE_REFS, ' ').replace(/\s+/gu, ' '));
  if (c !== '' && !c.endsWith('.')) c += '.';
  return sentencesClean(c.toLowerCase());
}

/** The authors' per-dataset `_clean_report`, raw report → cleaned report string. */
export const authorsCleaners: Record<AuthorsDataset, (report: string) => string> = {
  covctr: covctrClean,
  mmretinal: mmretinalClean,
  pgross: pgrossClean,
  roco: rocoClean,
};

/** Python's ordering of str: by code point (JS `<` compares UTF-16 units). */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.codePointAt(i)!, y = b.codePointAt(i)!;
    if (x !== y) return x - y;
    if (x > 0xffff) i++;
  }
  return a.length - b.length;
}

/** Python `json.dumps` of a str (ensure_ascii=True). */
function pyJsonString(s: string): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const ch = s[i];
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\b') out += '\\b';
    else if (ch === '\f') out += '\\f';
    else if (c < 0x20 || c > 0x7e) out += '\\u' + c.toString(16).padStart(4, '0');
    else out += ch;
  }
  return out + '"';
}

export interface TokenizerJSON {
  format: 'micar-tokenizer/1';
  cleaner: CleanerName;
  /** Tokens by id (ids 0–3 the special tokens). */
  tokens: string[];
}

export interface Encoded {
  /** [sos, t…, eos, pad…] */
  input: Int32Array;
  /** [t…, eos, pad…] */
  labels: Int32Array;
  /** input ≠ pad */
  padMask: Int32Array;
}

export class Tokenizer {
  private readonly ids = new Map<string, number>();

  private constructor(readonly tokens: readonly string[], readonly cleaner: CleanerName) {
    for (let i = 0; i < SPECIAL_TOKENS.length; i++) {
      if (tokens[i] !== SPECIAL_TOKENS[i]) throw new Error(`Tokenizer: id ${i} must be ${SPECIAL_TOKENS[i]}, got ${JSON.stringify(tokens[i])}`);
    }
    tokens.forEach((t, i) => {
      if (this.ids.has(t)) throw new Error(`Tokenizer: token ${JSON.stringify(t)} has ids ${this.ids.get(t)} and ${i}`);
      this.ids.set(t, i);
    });
  }

  /**
   * Vocabulary of the tokens seen at least `minFreq` times in `reports` (the training split),
   * sorted by code point, ids from 4 (the authors' `_create_vocabulary`).
   */
  static build(reports: readonly string[], minFreq: number, cleaner: CleanerName = 'generic'): Tokenizer {
    const clean = cleanerFn(cleaner);
    const freq = new Map<string, number>();
    for (const r of reports) for (const t of clean(r)) freq.set(t, (freq.get(t) ?? 0) + 1);
    const vocab = [...freq].filter(([, f]) => f >= minFreq).map(([t]) => t).sort(compareCodePoints);
    // The authors' vocabulary would give a special token a second id; keep the special one.
    const special = new Set<string>(SPECIAL_TOKENS);
    return new Tokenizer([...SPECIAL_TOKENS, ...vocab.filter((t) => !special.has(t))], cleaner);
  }

  /** The authors' `token2id.json` / `id2token.json` contents (ids as numbers, keys as strings). */
  static fromAuthorsVocab(token2id: Record<string, number>, id2token: Record<string, string>, cleaner: CleanerName = 'whitespace'): Tokenizer {
    const entries = Object.entries(token2id);
    const tokens = new Array<string>(entries.length);
    for (const [t, id] of entries) {
      if (!Number.isInteger(id) || id < 0 || id >= entries.length) throw new Error(`Tokenizer.fromAuthorsVocab: token2id[${JSON.stringify(t)}] = ${id} is not an id in [0, ${entries.length})`);
      if (tokens[id] !== undefined) throw new Error(`Tokenizer.fromAuthorsVocab: id ${id} given to ${JSON.stringify(tokens[id])} and ${JSON.stringify(t)}`);
      tokens[id] = t;
    }
    const idKeys = Object.keys(id2token);
    if (idKeys.length !== entries.length) throw new Error(`Tokenizer.fromAuthorsVocab: ${entries.length} entries in token2id vs ${idKeys.length} in id2token`);
    for (const k of idKeys) {
      if (tokens[Number(k)] !== id2token[k]) throw new Error(`Tokenizer.fromAuthorsVocab: id2token[${k}] = ${JSON.stringify(id2token[k])} but token2id gives ${JSON.stringify(tokens[Number(k)])}`);
    }
    return new Tokenizer(tokens, cleaner);
  }

  static fromJSON(json: TokenizerJSON): Tokenizer {
    if (json.format !== 'micar-tokenizer/1') throw new Error(`Tokenizer.fromJSON: unknown format ${JSON.stringify(json.format)}`);
    cleanerFn(json.cleaner);
    return new Tokenizer(json.tokens, json.cleaner);
  }

  toJSON(): TokenizerJSON {
    return { format: 'micar-tokenizer/1', cleaner: this.cleaner, tokens: [...this.tokens] };
  }

  /** The vocabulary as the authors' two files, byte for byte what their `json.dump` writes. */
  toAuthorsVocabFiles(): { 'token2id.json': string; 'id2token.json': string } {
    // Their dicts start {"<sos>": 1, "<eos>": 2, "<pad>": 0, "<unk>": 3}, then ids 4, 5, …
    const order = [1, 2, 0, 3, ...this.tokens.keys()].filter((id, k) => k < 4 || id >= 4);
    return {
      'token2id.json': '{' + order.map((id) => `${pyJsonString(this.tokens[id])}: ${id}`).join(', ') + '}',
      'id2token.json': '{' + order.map((id) => `"${id}": ${pyJsonString(this.tokens[id])}`).join(', ') + '}',
    };
  }

  get vocabSize(): number {
    return this.tokens.length;
  }

  /** Id of a token, <unk> for one outside the vocabulary. */
  id(token: string): number {
    return this.ids.get(token) ?? UNK_ID;
  }

  /** The report as tokens, by this tokenizer's cleaner. */
  clean(report: string): string[] {
    return cleanerFn(this.cleaner)(report);
  }

  /** At most T−2 tokens: input [sos, t…, eos, pad…], labels [t…, eos, pad…], padMask input ≠ pad. */
  encode(report: string, T: number): Encoded {
    if (!Number.isInteger(T) || T < 2) throw new Error(`Tokenizer.encode: T = ${T}, need an integer ≥ 2 (room for <sos> and <eos>)`);
    const ids = this.clean(report).slice(0, T - 2).map((t) => this.id(t));
    const input = new Int32Array(T), labels = new Int32Array(T), padMask = new Int32Array(T);
    input[0] = SOS_ID;
    input.set(ids, 1);
    input[ids.length + 1] = EOS_ID;
    labels.set(ids, 0);
    labels[ids.length] = EOS_ID;
    for (let i = 0; i < T; i++) padMask[i] = input[i] !== PAD_ID ? 1 : 0;
    return { input, labels, padMask };
  }

  /**
   * Tokens joined by spaces, <sos> and <pad> left out. `stopAtEos` ends at the first <eos>;
   * with `stopAtEos: false` every <eos> is left out and decoding goes on — the authors'
   * `decode_by_ids`, which their evaluation applies to sequences generated past <eos>.
   */
  decode(ids: ArrayLike<number>, { stopAtEos = true }: { stopAtEos?: boolean } = {}): string {
    const out: string[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (id === EOS_ID && stopAtEos) break;
      if (id === PAD_ID || id === SOS_ID || id === EOS_ID) continue;
      const t = this.tokens[id];
      if (t === undefined) throw new Error(`Tokenizer.decode: id ${id} at position ${i} is outside the vocabulary (size ${this.tokens.length})`);
      out.push(t);
    }
    return out.join(' ');
  }
}

function cleanerFn(name: CleanerName): (report: string) => string[] {
  if (name === 'generic') return genericClean;
  if (name === 'whitespace') return pySplit;
  const f = authorsCleaners[name];
  if (!f) throw new Error(`Tokenizer: unknown cleaner ${JSON.stringify(name)}`);
  return (r) => pySplit(f(r));
}
