// The Porter stemmer exactly as nltk's `PorterStemmer()` (default NLTK_EXTENSIONS mode,
// nltk/stem/porter.py, unchanged from 3.7 to 3.8) computes it: METEOR's stem stage uses it,
// so any deviation changes scores. Written from the algorithm's description in that file;
// the quirks kept on purpose are noted where they occur.

/** Irregular forms nltk maps directly (NLTK_EXTENSIONS): surface form → stem. */
const IRREGULAR: ReadonlyMap<string, string> = new Map(
  Object.entries({
    sky: ['sky', 'skies'],
    die: ['dying'],
    lie: ['lying'],
    tie: ['tying'],
    news: ['news'],
    inning: ['innings', 'inning'],
    outing: ['outings', 'outing'],
    canning: ['cannings', 'canning'],
    howe: ['howe'],
    proceed: ['proceed'],
    exceed: ['exceed'],
    succeed: ['succeed'],
  }).flatMap(([stem, forms]) => forms.map((f) => [f, stem] as [string, string])),
);

const isVowelChar = (c: string) => c === 'a' || c === 'e' || c === 'i' || c === 'o' || c === 'u';

function isConsonant(w: string, i: number): boolean {
  const c = w[i];
  if (isVowelChar(c)) return false;
  if (c === 'y') return i === 0 ? true : !isConsonant(w, i - 1);
  return true;
}

/** Number of "vc" pairs in the word's consonant/vowel pattern (Porter's m). */
function measure(stem: string): number {
  let m = 0;
  for (let i = 0; i + 1 < stem.length; i++) if (!isConsonant(stem, i) && isConsonant(stem, i + 1)) m++;
  return m;
}

const positiveMeasure = (s: string) => measure(s) > 0;

function containsVowel(stem: string): boolean {
  for (let i = 0; i < stem.length; i++) if (!isConsonant(stem, i)) return true;
  return false;
}

function endsDoubleConsonant(w: string): boolean {
  return w.length >= 2 && w[w.length - 1] === w[w.length - 2] && isConsonant(w, w.length - 1);
}

function endsCvc(w: string): boolean {
  const n = w.length;
  return (
    (n >= 3 && isConsonant(w, n - 3) && !isConsonant(w, n - 2) && isConsonant(w, n - 1) &&
      w[n - 1] !== 'w' && w[n - 1] !== 'x' && w[n - 1] !== 'y') ||
    // NLTK extension: two-letter vowel+consonant words count as cvc.
    (n === 2 && !isConsonant(w, 0) && isConsonant(w, 1))
  );
}

type Rule = [suffix: string, replacement: string, condition: ((stem: string) => boolean) | null];

/** First rule whose suffix matches decides: applied if its condition holds, else the word is kept. */
function applyRuleList(word: string, rules: Rule[]): string {
  for (const [suffix, replacement, condition] of rules) {
    if (suffix === '*d' && endsDoubleConsonant(word)) {
      const stem = word.slice(0, -2);
      return condition === null || condition(stem) ? stem + replacement : word;
    }
    if (word.endsWith(suffix)) {
      const stem = word.slice(0, word.length - suffix.length);
      return condition === null || condition(stem) ? stem + replacement : word;
    }
  }
  return word;
}

function step1a(w: string): string {
  if (w.endsWith('ies') && w.length === 4) return w.slice(0, -3) + 'ie';
  return applyRuleList(w, [['sses', 'ss', null], ['ies', 'i', null], ['ss', 'ss', null], ['s', '', null]]);
}

function step1b(w: string): string {
  if (w.endsWith('ied')) return w.slice(0, -3) + (w.length === 4 ? 'ie' : 'i');
  if (w.endsWith('eed')) {
    const stem = w.slice(0, -3);
    return measure(stem) > 0 ? stem + 'ee' : w;
  }
  let inter: string | null = null;
  for (const suffix of ['ed', 'ing']) {
    if (w.endsWith(suffix)) {
      const s = w.slice(0, w.length - suffix.length);
      // nltk breaks out only when the stem has a vowel: "-ing" is still tried after a vowelless "-ed".
      if (containsVowel(s)) {
        inter = s;
        break;
      }
    }
  }
  if (inter === null) return w;
  const st = inter;
  const last = st[st.length - 1];
  return applyRuleList(st, [
    ['at', 'ate', null],
    ['bl', 'ble', null],
    ['iz', 'ize', null],
    ['*d', last, () => last !== 'l' && last !== 's' && last !== 'z'],
    ['', 'e', (stem) => measure(stem) === 1 && endsCvc(stem)],
  ]);
}

function step1c(w: string): string {
  return applyRuleList(w, [['y', 'i', (stem) => stem.length > 1 && isConsonant(stem, stem.length - 1)]]);
}

function step2(w: string): string {
  if (w.endsWith('alli') && positiveMeasure(w.slice(0, -4))) return step2(w.slice(0, -4) + 'al');
  const rules: Rule[] = [
    ['ational', 'ate', positiveMeasure],
    ['tional', 'tion', positiveMeasure],
    ['enci', 'ence', positiveMeasure],
    ['anci', 'ance', positiveMeasure],
    ['izer', 'ize', positiveMeasure],
    ['bli', 'ble', positiveMeasure],
    ['alli', 'al', positiveMeasure],
    ['entli', 'ent', positiveMeasure],
    ['eli', 'e', positiveMeasure],
    ['ousli', 'ous', positiveMeasure],
    ['ization', 'ize', positiveMeasure],
    ['ation', 'ate', positiveMeasure],
    ['ator', 'ate', positiveMeasure],
    ['alism', 'al', positiveMeasure],
    ['iveness', 'ive', positiveMeasure],
    ['fulness', 'ful', positiveMeasure],
    ['ousness', 'ous', positiveMeasure],
    ['aliti', 'al', positiveMeasure],
    ['iviti', 'ive', positiveMeasure],
    ['biliti', 'ble', positiveMeasure],
    ['fulli', 'ful', positiveMeasure],
    // nltk measures the word minus "ogi" (keeping the "l"), not the stem.
    ['logi', 'log', () => positiveMeasure(w.slice(0, -3))],
  ];
  return applyRuleList(w, rules);
}

function step3(w: string): string {
  return applyRuleList(w, [
    ['icate', 'ic', positiveMeasure],
    ['ative', '', positiveMeasure],
    ['alize', 'al', positiveMeasure],
    ['iciti', 'ic', positiveMeasure],
    ['ical', 'ic', positiveMeasure],
    ['ful', '', positiveMeasure],
    ['ness', '', positiveMeasure],
  ]);
}

const measureGt1 = (s: string) => measure(s) > 1;

function step4(w: string): string {
  return applyRuleList(w, [
    ['al', '', measureGt1],
    ['ance', '', measureGt1],
    ['ence', '', measureGt1],
    ['er', '', measureGt1],
    ['ic', '', measureGt1],
    ['able', '', measureGt1],
    ['ible', '', measureGt1],
    ['ant', '', measureGt1],
    ['ement', '', measureGt1],
    ['ment', '', measureGt1],
    ['ent', '', measureGt1],
    ['ion', '', (s) => measure(s) > 1 && (s[s.length - 1] === 's' || s[s.length - 1] === 't')],
    ['ou', '', measureGt1],
    ['ism', '', measureGt1],
    ['ate', '', measureGt1],
    ['iti', '', measureGt1],
    ['ous', '', measureGt1],
    ['ive', '', measureGt1],
    ['ize', '', measureGt1],
  ]);
}

function step5a(w: string): string {
  if (w.endsWith('e')) {
    const stem = w.slice(0, -1);
    const m = measure(stem);
    if (m > 1) return stem;
    if (m === 1 && !endsCvc(stem)) return stem;
  }
  return w;
}

function step5b(w: string): string {
  return applyRuleList(w, [['ll', 'l', () => measure(w.slice(0, -1)) > 1]]);
}

/**
 * Python indexes strings by code point, JS by UTF-16 unit. The stemmer only compares
 * characters with ASCII letters, so each astral character is swapped for a private-use BMP
 * character (a consonant like the original) while stemming and swapped back afterwards.
 */
function withBmpChars(word: string, f: (w: string) => string): string {
  if (!/[\uD800-\uDFFF]/.test(word)) return f(word);
  const toBmp = new Map<string, string>();
  const fromBmp = new Map<string, string>();
  let next = 0xe000;
  const bmp = Array.from(word, (ch) => {
    if (ch.length === 1) return ch;
    let r = toBmp.get(ch);
    if (r === undefined) {
      while (word.includes(String.fromCharCode(next))) next++;
      r = String.fromCharCode(next++);
      toBmp.set(ch, r);
      fromBmp.set(r, ch);
    }
    return r;
  }).join('');
  return Array.from(f(bmp), (ch) => fromBmp.get(ch) ?? ch).join('');
}

/** nltk `PorterStemmer().stem(word)` (lower-cases first, as nltk's default `to_lowercase=True`). */
export function porterStem(word: string): string {
  const lower = word.toLowerCase();
  // nltk tests the pool with the word as given and the length with the word as given.
  if (IRREGULAR.has(word)) return IRREGULAR.get(lower)!;
  if (Array.from(word).length <= 2) return lower;
  return withBmpChars(lower, (w) => {
    w = step1a(w);
    w = step1b(w);
    w = step1c(w);
    w = step2(w);
    w = step3(w);
    w = step4(w);
    w = step5a(w);
    return step5b(w);
  });
}
