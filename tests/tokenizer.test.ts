// The report tokenizer (SPEC §8) and the authors' vocabularies (../shared/authors-vocab).
import { describe, expect, it } from 'vitest';
import {
  authorsCleaners, compareCodePoints, EOS_ID, genericClean, PAD_ID, SOS_ID, Tokenizer, UNK_ID,
} from '../src/data/tokenizer.ts';
import { rng } from './util.ts';

declare const Deno: { readTextFileSync(p: string | URL): string };

const vocabDir = new URL('../../shared/authors-vocab/', import.meta.url);
const DATASETS = ['covctr', 'mmretinal', 'pgross', 'roco'] as const;
const SIZES = { covctr: 229, mmretinal: 2046, pgross: 1679, roco: 16740 };
const files = (d: string) => ({
  token2id: Deno.readTextFileSync(new URL(`${d}/token2id.json`, vocabDir)),
  id2token: Deno.readTextFileSync(new URL(`${d}/id2token.json`, vocabDir)),
});
const load = (d: string) => {
  const f = files(d);
  return Tokenizer.fromAuthorsVocab(JSON.parse(f.token2id), JSON.parse(f.id2token));
};

describe("the authors' vocabularies", () => {
  for (const d of DATASETS) {
    it(`${d}: loads, every token survives clean → encode → decode, files are rewritten byte for byte`, () => {
      const tok = load(d);
      expect(tok.vocabSize).toBe(SIZES[d]);
      expect(tok.tokens.slice(0, 4)).toEqual(['<pad>', '<sos>', '<eos>', '<unk>']);
      // Python sorted() order from id 4 on.
      const v = tok.tokens.slice(4);
      for (let i = 1; i < v.length; i++) expect(compareCodePoints(v[i - 1], v[i]) < 0, `${v[i - 1]} < ${v[i]}`).toBe(true);
      // Each token alone, then the whole vocabulary as one report (T large enough).
      for (let id = 4; id < tok.vocabSize; id++) {
        const t = tok.tokens[id];
        const e = tok.encode(t, 3);
        expect(Array.from(e.input)).toEqual([SOS_ID, id, EOS_ID]);
        expect(tok.decode(e.input)).toBe(t);
      }
      const all = tok.tokens.slice(4).join(' ');
      const e = tok.encode(all, tok.vocabSize + 10);
      expect(tok.decode(e.input)).toBe(all);
      expect(Array.from(e.labels.slice(0, tok.vocabSize - 4))).toEqual(tok.tokens.slice(4).map((_, i) => i + 4));
      const f = files(d);
      const out = tok.toAuthorsVocabFiles();
      expect(out['token2id.json']).toBe(f.token2id);
      expect(out['id2token.json']).toBe(f.id2token);
    });
  }

  it('rejects inconsistent vocabularies', () => {
    expect(() => Tokenizer.fromAuthorsVocab({ '<pad>': 0, '<sos>': 1, '<eos>': 2, '<unk>': 3, a: 4 }, { 0: '<pad>', 1: '<sos>', 2: '<eos>', 3: '<unk>', 4: 'b' }))
      .toThrow(/id2token\[4\] = "b" but token2id gives "a"/);
    expect(() => Tokenizer.fromAuthorsVocab({ '<pad>': 0, '<sos>': 1, '<eos>': 2, a: 3 }, { 0: '<pad>', 1: '<sos>', 2: '<eos>', 3: 'a' }))
      .toThrow(/id 3 must be <unk>/);
    expect(() => Tokenizer.fromAuthorsVocab({ '<pad>': 0, '<sos>': 1, '<eos>': 2, '<unk>': 3, a: 9 }, {})).toThrow(/not an id/);
  });
});

describe('encoding (SPEC §8)', () => {
  const R = rng('tokenizer');
  const words = ['the', 'heart', 'is', 'normal', 'lungs', 'clear', 'no', 'effusion', 'mild', 'x-ray', '2.5', 'cm'];
  const punct = ['.', ',', ';', ':', '(', ')'];
  const randomReport = () => Array.from({ length: R.int(0, 30) }, () => (R.next() < 0.2 ? punct[R.int(0, punct.length - 1)] : words[R.int(0, words.length - 1)]))
    .map((w) => (R.next() < 0.3 ? w.toUpperCase() : w)).join(R.next() < 0.5 ? ' ' : '  ');

  it('build: tokens with frequency ≥ minFreq, sorted, ids from 4', () => {
    const reports = Array.from({ length: 40 }, randomReport);
    const minFreq = R.int(1, 4);
    const tok = Tokenizer.build(reports, minFreq);
    const freq = new Map<string, number>();
    for (const r of reports) for (const t of genericClean(r)) freq.set(t, (freq.get(t) ?? 0) + 1);
    const want = [...freq].filter(([, f]) => f >= minFreq).map(([t]) => t).sort();
    expect(tok.tokens.slice(4)).toEqual(want);
    expect(tok.tokens.slice(0, 4)).toEqual(['<pad>', '<sos>', '<eos>', '<unk>']);
  });

  it('encode: [sos, t…, eos, pad…], labels [t…, eos, pad…], padMask = input ≠ pad, at most T−2 tokens', () => {
    const tok = Tokenizer.build(Array.from({ length: 30 }, randomReport), 2);
    for (let trial = 0; trial < 30; trial++) {
      const report = randomReport();
      const T = R.int(2, 40);
      const ids = tok.clean(report).slice(0, T - 2).map((t) => tok.id(t));
      const { input, labels, padMask } = tok.encode(report, T);
      const pad = (a: number[]) => [...a, ...new Array(T - a.length).fill(PAD_ID)];
      expect(Array.from(input)).toEqual(pad([SOS_ID, ...ids, EOS_ID]));
      expect(Array.from(labels)).toEqual(pad([...ids, EOS_ID]));
      expect(Array.from(padMask)).toEqual(Array.from(input, (x) => (x !== PAD_ID ? 1 : 0)));
      // Decoding gives the cleaned text back, unknown words as <unk>.
      expect(tok.decode(input)).toBe(tok.clean(report).slice(0, T - 2).map((t) => (tok.id(t) === UNK_ID ? '<unk>' : t)).join(' '));
    }
    expect(() => tok.encode('a', 1)).toThrow(/T = 1/);
  });

  it("decode: stops at <eos> by default; stopAtEos false is the authors' decode_by_ids", () => {
    const tok = Tokenizer.build(['the heart is normal .'], 1);
    const [the, heart, is, normal, dot] = ['the', 'heart', 'is', 'normal', '.'].map((t) => tok.id(t));
    const ids = [SOS_ID, the, heart, EOS_ID, is, normal, dot, PAD_ID, EOS_ID];
    expect(tok.decode(ids)).toBe('the heart');
    expect(tok.decode(ids, { stopAtEos: false })).toBe('the heart is normal .');
    expect(tok.decode(new Int32Array([SOS_ID, UNK_ID, dot]))).toBe('<unk> .');
    expect(() => tok.decode([tok.vocabSize])).toThrow(/outside the vocabulary/);
  });

  it('toJSON / fromJSON round trip', () => {
    const tok = Tokenizer.build(Array.from({ length: 20 }, randomReport), 1, 'generic');
    const back = Tokenizer.fromJSON(JSON.parse(JSON.stringify(tok)));
    expect(back.tokens).toEqual(tok.tokens);
    expect(back.cleaner).toBe('generic');
    const r = randomReport();
    expect(Array.from(back.encode(r, 25).input)).toEqual(Array.from(tok.encode(r, 25).input));
  });
});

describe('cleaning', () => {
  it('generic: lower case, punctuation split off, x-ray / 2.5 / <unk> kept whole', () => {
    expect(genericClean('The Heart is normal. No effusion, X-ray: 2.5 cm (stable); <unk> size!')).toEqual(
      ['the', 'heart', 'is', 'normal', '.', 'no', 'effusion', ',', 'x-ray', ':', '2.5', 'cm', '(', 'stable', ')', ';', '<unk>', 'size', '!'],
    );
    expect(genericClean('  ')).toEqual([]);
  });

  // Expected strings: the authors' `_clean_report` functions (AI-14/micar-vl-moe
  // preprocessors/*.py, commit f1d02032) run in Python 3.11 on these inputs.
  const AUTHORS: Record<keyof typeof authorsCleaners, [string, string][]> = {
    covctr: [
      ['The lesions (GGO) are located in the sub-pleural area; bilateral, multiple.', 'the lesions ggo are located in the subpleural area , bilateral , multiple .'],
      ['Ground-glass opacity in the right lower lobe, "patchy"', 'groundglass opacity in the right lower lobe , patchy .'],
      ['  No abnormality.  ', 'no abnormality .'],
    ],
    roco: [
      ['A 45-year-old man: CT shows a 3.5 cm mass, in the liver.\tSee arrow', 'a xxxx man: ct shows a xxxx mass ,  in the liver .  see arrow .'],
      ['Axial T2 image (arrow) of 12 mm lesion. 2 years later, 20 kg weight loss', 'axial t2 image (arrow) of xxxx lesion .  2 years later ,  xxxx weight loss .'],
      ['MRI 7 year old girl.', 'mri xxxx girl .'],
    ],
    pgross: [
      ['Gross: Heart: Left ventricular hypertrophy. 1. Mitral valve (stenosis)! 2. Aortic x-ray; normal..', 'left ventricular hypertrophy . mitral valve stenosis . aortic x-ray normal .'],
      ['kidney: cortical SCARS, <pyelonephritis> & 50% loss... end', 'cortical scars pyelonephritis  50 loss . end .'],
      ['Brain [edema]/ "swelling" {severe} @ site = A.', 'brain edema swelling severe  site  a .'],
    ],
    mmretinal: [
      ['Same patient as Fig. 3-2A. The optic disc is pale; A shows hemorrhages. 2. Macula normal', 'same patient as the optic disc is pale hemorrhages . macula normal .'],
      ['Figure 12-3b, fluorescein leakage at 30s (early phase) - late staining', 'fluorescein leakage at 30s early phase - late staining .'],
      ['The 808μm laser spots, CNV: 2-3 PD in size', 'the 808μm laser spots cnv 2-3 pd in size .'],
    ],
  };
  for (const [d, pairs] of Object.entries(AUTHORS)) {
    it(`the authors' ${d} cleaner`, () => {
      for (const [raw, want] of pairs) expect(authorsCleaners[d as keyof typeof authorsCleaners](raw)).toBe(want);
      // Through a tokenizer with that cleaner: the white-space split of the cleaned text.
      const tok = Tokenizer.fromAuthorsVocab(JSON.parse(files(d).token2id), JSON.parse(files(d).id2token), d as keyof typeof authorsCleaners);
      expect(tok.clean(pairs[0][0])).toEqual(pairs[0][1].split(/\s+/).filter(Boolean));
    });
  }
});
