// WordNet 3.0 synonym lookup as nltk 3.7's `wordnet.synsets(word)` sees it, for METEOR's
// synonym stage: the word is lower-cased, reduced by nltk's `_morphy` (exception lists,
// then suffix rules) for each part of speech in nltk's order (n, v, a, r), and the lemma names
// of every synset found are collected. The data is the generated, compressed index in
// data/wordnet-index.ts (scripts/build-wordnet-index.ts), so this works without a file
// system (browsers).
import { gunzipSync } from 'fflate';
import { WORDNET_INDEX_GZ_BASE64 } from './data/wordnet-index.ts';

/** What METEOR's synonym stage needs: lemma names (without "_") of `synsets(word)`. */
export interface SynonymSource {
  synonyms(word: string): ReadonlySet<string>;
}

export type WordnetPos = 'n' | 'v' | 'a' | 'r';
const POS_LIST: readonly WordnetPos[] = ['n', 'v', 'a', 'r'];
const POS_SLOT: Record<WordnetPos, number> = { n: 0, v: 1, a: 2, r: 3 };

/** nltk's MORPHOLOGICAL_SUBSTITUTIONS (adjective satellites share the adjective rules). */
const SUBSTITUTIONS: Record<WordnetPos, [string, string][]> = {
  n: [['s', ''], ['ses', 's'], ['ves', 'f'], ['xes', 'x'], ['zes', 'z'], ['ches', 'ch'], ['shes', 'sh'], ['men', 'man'], ['ies', 'y']],
  v: [['s', ''], ['ies', 'y'], ['es', 'e'], ['es', ''], ['ed', 'e'], ['ed', ''], ['ing', 'e'], ['ing', '']],
  a: [['er', ''], ['est', ''], ['er', 'e'], ['est', 'e']],
  r: [],
};

export class WordnetIndex implements SynonymSource {
  private readonly names: string[];
  private readonly synsets: string[];
  /** key → its four tab-separated part-of-speech columns (parsed on demand). */
  private readonly keys = new Map<string, string[]>();
  private readonly exceptions: Record<WordnetPos, Map<string, string[]>> = { n: new Map(), v: new Map(), a: new Map(), r: new Map() };
  private readonly cache = new Map<string, ReadonlySet<string>>();

  /** `text`: the decompressed layout written by scripts/build-wordnet-index.ts. */
  constructor(text: string) {
    const sections = text.split('\n%\n');
    if (sections.length !== 4) throw new Error(`WordnetIndex: expected 4 sections, got ${sections.length}`);
    this.names = sections[0].split('\n');
    this.synsets = sections[1].split('\n');
    for (const line of sections[2].split('\n')) {
      const cols = line.split('\t');
      this.keys.set(cols[0], cols.slice(1));
    }
    for (const line of sections[3].split('\n')) {
      const [pos, form, bases] = line.split('\t');
      this.exceptions[pos as WordnetPos].set(form, bases === '' ? [] : bases.split(' '));
    }
  }

  /** Whether `form` is an index key for `pos` (nltk `pos in _lemma_pos_offset_map[form]`). */
  hasKey(form: string, pos: WordnetPos): boolean {
    const row = this.keys.get(form);
    return row !== undefined && row[POS_SLOT[pos]] !== '';
  }

  /** nltk 3.7 `WordNetCorpusReader._morphy(form, pos)`: the base forms it looks up. */
  morphy(form: string, pos: WordnetPos): string[] {
    const subs = SUBSTITUTIONS[pos];
    const applyRules = (forms: string[]) => {
      const out: string[] = [];
      for (const f of forms) for (const [old, rep] of subs) if (f.endsWith(old)) out.push(f.slice(0, f.length - old.length) + rep);
      return out;
    };
    const filterForms = (forms: string[]) => {
      const out: string[] = [];
      for (const f of forms) if (this.hasKey(f, pos) && !out.includes(f)) out.push(f);
      return out;
    };
    // An exception entry decides alone, even when none of its bases is a key.
    const exc = this.exceptions[pos].get(form);
    if (exc !== undefined) return filterForms([form, ...exc]);
    let forms = applyRules([form]);
    const first = filterForms([form, ...forms]);
    if (first.length) return first;
    while (forms.length) {
      forms = applyRules(forms);
      const found = filterForms(forms);
      if (found.length) return found;
    }
    return [];
  }

  /** Lemma names (those without "_") of nltk `wordnet.synsets(word)`, all parts of speech. */
  synonyms(word: string): ReadonlySet<string> {
    const hit = this.cache.get(word);
    if (hit) return hit;
    const lemma = word.toLowerCase();
    const out = new Set<string>();
    for (const pos of POS_LIST) {
      for (const form of this.morphy(lemma, pos)) {
        const col = this.keys.get(form)![POS_SLOT[pos]];
        if (col === '-') continue; // synsets whose names all contain "_"
        for (const s of col.split(' ')) {
          for (const n of this.synsets[parseInt(s, 36)].split(' ')) out.add(this.names[parseInt(n, 36)]);
        }
      }
    }
    if (this.cache.size > 50_000) this.cache.clear();
    this.cache.set(word, out);
    return out;
  }
}

let bundled: WordnetIndex | undefined;

/** The bundled WordNet 3.0 index, decoded on first use (≈0.3 s). */
export function wordnet(): WordnetIndex {
  if (!bundled) {
    const bin = atob(WORDNET_INDEX_GZ_BASE64);
    const gz = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) gz[i] = bin.charCodeAt(i);
    bundled = new WordnetIndex(new TextDecoder().decode(gunzipSync(gz)));
  }
  return bundled;
}

/** A source with no synsets: METEOR with the WordNet stage switched off. */
export const NO_SYNONYMS: SynonymSource = { synonyms: () => new Set<string>() };
