// Caption metrics against the oracle values of ../shared/golden/metrics (jury 2.3.1, nltk 3.7,
// rouge_score 0.0.4, pycocoevalcap, run unmodified), against published worked examples, and on
// random inputs against the plain re-statements in tests/ref/metrics.ts.
//
// Tolerance: 1e-12 relative (absolute near 0) for every value, per the golden README's
// gotcha 10. Observed: every corpus value but CIDEr-D and every per-pair METEOR / ROUGE-L value
// is bit-identical; CIDEr-D differs by ≤ 1 ulp-scale (4e-16) where JS's Math.log / ** and
// glibc's log / pow round differently; the ROUGE bootstrap `low`/`high` bounds differ by one ulp
// (a plain numpy replica gives the same ulp difference to the stored numbers).
import { describe, expect, it } from 'vitest';
import {
  bootstrapF, bleuCounts, ciderD, computeBleu, computeMetrics, juryBleu, juryRouge, juryTokenize, LegacyRandomState,
  lcsLength, meteorDetail, NO_SYNONYMS, npMean, npPercentile, npSum, porterStem, rougeLScore, rougeTokenize, singleMeteorScore,
  wordnet,
} from '../src/metrics/index.ts';
import { bleuRef, ciderRef, lcsRef, sumRef } from './ref/metrics.ts';
import { rng } from './util.ts';

declare const Deno: { readTextFileSync(p: string | URL): string };

const dir = new URL('../../shared/golden/metrics/', import.meta.url);
const casesFile = JSON.parse(Deno.readTextFileSync(new URL('cases.json', dir)));
const expected = JSON.parse(Deno.readTextFileSync(new URL('expected.json', dir)));
type Case = { id: string; prediction: string; reference: string };
const cases: Case[] = casesFile.cases;
const preds = cases.map((c) => c.prediction), refs = cases.map((c) => c.reference);

const TOL = 1e-12;
function close(actual: number, want: number, what: string, tol = TOL) {
  const err = Math.abs(actual - want) / Math.max(Math.abs(want), 1);
  if (!(err <= tol)) throw new Error(`${what}: got ${actual}, want ${want} (rel err ${err})`);
}

describe('metrics vs the golden oracle (jury 2.3.1 / nltk 3.7 / rouge_score / pycocoevalcap)', () => {
  it('corpus values of computeMetrics', () => {
    const m = computeMetrics(preds, refs);
    const c = expected.corpus;
    close(m.bleu1, c.bleu_1, 'bleu1');
    close(m.bleu2, c.bleu_2, 'bleu2');
    close(m.bleu3, c.bleu_3, 'bleu3');
    close(m.bleu4, c.bleu_4, 'bleu4');
    close(m.meteor, c.meteor, 'meteor');
    close(m.rougeL, c.rougeL, 'rougeL (bootstrap median)');
    close(m.rougeL_mean, c.rougeL_mean, 'rougeL_mean');
    close(m.cider, c.cider_d, 'cider');
    close(m.selection, c.model_selection_score, 'selection');
    // A seed other than the authors' moves jury's value, not the mean (gotcha 2).
    const other = computeMetrics(preds, refs, { rougeSeed: 1 });
    expect(other.rougeL).not.toBe(m.rougeL);
    expect(Math.abs(other.rougeL - c.rougeL_mean)).toBeLessThan(0.01);
    expect(other.rougeL_mean).toBe(m.rougeL_mean);
  });

  it("jury's full BLEU output (precisions, brevity penalty, lengths) for max_order 1..4", () => {
    for (let n = 1; n <= 4; n++) {
      const b = juryBleu(preds, refs, n), j = expected.jury_output[`bleu_${n}`];
      close(b.score, j.score, `bleu_${n}.score`);
      b.precisions.forEach((p, k) => close(p, j.precisions[k], `bleu_${n}.precisions[${k}]`));
      close(b.brevityPenalty, j.brevity_penalty, `bleu_${n}.brevity_penalty`);
      close(b.lengthRatio, j.length_ratio, `bleu_${n}.length_ratio`);
      expect(b.translationLength).toBe(j.translation_length);
      expect(b.referenceLength).toBe(j.reference_length);
    }
  });

  it('per pair: tokens, BLEU counts, METEOR (with stage counts), ROUGE-L, CIDEr-D', () => {
    const cider = ciderD(preds, refs).scores;
    cases.forEach((c, i) => {
      const e = expected.pairs[i];
      expect(e.id).toBe(c.id);
      const tp = juryTokenize(c.prediction), tr = juryTokenize(c.reference);
      expect(tp, `${c.id} jury tokens`).toEqual(e.tokens_jury.prediction);
      expect(tr).toEqual(e.tokens_jury.reference);
      expect(rougeTokenize(c.prediction), `${c.id} rouge tokens`).toEqual(e.tokens_rouge.prediction);
      expect(rougeTokenize(c.reference)).toEqual(e.tokens_rouge.reference);

      const bc = bleuCounts(tr, tp, 4);
      expect(bc, `${c.id} bleu counts`).toEqual({ matches: e.bleu_counts.matches, possible: e.bleu_counts.possible, hypLen: e.bleu_counts.hyp_len, refLen: e.bleu_counts.ref_len });

      const md = meteorDetail(tr, tp);
      close(md.score, e.meteor, `${c.id} meteor`);
      const s = e.meteor_stages;
      expect([md.exact, md.stem, md.wordnet, md.chunks], `${c.id} meteor stages`).toEqual([s.exact, s.stem, s.wordnet, s.chunks]);
      expect(md.wordnetPairs).toEqual(s.wordnet_pairs);
      close(meteorDetail(tr, tp, { synonyms: NO_SYNONYMS }).score, s.score_without_wordnet, `${c.id} meteor without WordNet`);

      const rl = rougeLScore(rougeTokenize(c.reference), rougeTokenize(c.prediction));
      close(rl.precision, e.rougeL.precision, `${c.id} rougeL.precision`);
      close(rl.recall, e.rougeL.recall, `${c.id} rougeL.recall`);
      close(rl.fmeasure, e.rougeL.fmeasure, `${c.id} rougeL.fmeasure`);

      close(cider[i], e.cider_d, `${c.id} cider_d`);
    });
    // The WordNet stage is exercised: s14 matches tumor ↔ neoplasm (gotcha 5).
    expect(expected.pairs.filter((p: { meteor_stages: { wordnet: number } }) => p.meteor_stages.wordnet > 0).length).toBeGreaterThan(0);
  });

  it("ROUGE bootstrap intervals (rouge1, rouge2, rougeL) of jury's aggregator, seed 115111211", () => {
    const r = juryRouge(preds, refs);
    const b = expected.rouge_bootstrap;
    expect(b.seed).toBe(115111211);
    for (const t of ['rouge1', 'rouge2', 'rougeL'] as const) {
      for (const q of ['low', 'mid', 'high'] as const) close(r[t][q], b.scores[t][q], `${t}.${q}`);
    }
    close(r.rouge1.mid, expected.jury_output.rouge.rouge1, 'jury rouge1');
    close(r.rouge2.mid, expected.jury_output.rouge.rouge2, 'jury rouge2');
  });

  it('CIDEr-D with punctuation tokens dropped matches the PTB-emulated extra', () => {
    const drop = new Set<string>(expected.extras.pycocoevalcap_punctuations);
    const strip = (s: string) => s.split(/\s+/).filter((t) => t !== '' && !drop.has(t)).join(' ');
    const c = ciderD(preds.map(strip), refs.map(strip));
    close(c.score, expected.extras.cider_d_ptb_punct_stripped, 'cider_d_ptb_punct_stripped');
    c.scores.forEach((s, i) => close(s, expected.pairs[i].cider_d_ptb_punct_stripped, `${cases[i].id} cider ptb`));
  });
});

describe('published worked examples', () => {
  it('BLEU: modified unigram precision 2/7 (Papineni et al. 2002, §2.1, "the the the …")', () => {
    const b = juryBleu(['the the the the the the the'], ['The cat is on the mat.'], 1);
    expect(b.precisions[0]).toBe(2 / 7);
    // Brevity: 7 candidate words vs 6 reference words → BP 1; BLEU-1 = 2/7.
    expect(b.brevityPenalty).toBe(1);
    close(b.score, 2 / 7, 'bleu1');
  });

  it('METEOR: nltk single_meteor_score docstring examples (nltk/translate/meteor_score.py: 0.6944 and 0.0)', () => {
    const hypothesis1 = ['It', 'is', 'a', 'guide', 'to', 'action', 'which', 'ensures', 'that', 'the', 'military', 'always', 'obeys', 'the', 'commands', 'of', 'the', 'party'];
    const reference1 = ['It', 'is', 'a', 'guide', 'to', 'action', 'that', 'ensures', 'that', 'the', 'military', 'will', 'forever', 'heed', 'Party', 'commands'];
    expect(Math.round(singleMeteorScore(reference1, hypothesis1) * 1e4) / 1e4).toBe(0.6944);
    expect(singleMeteorScore(['this', 'is', 'a', 'cat'], ['non', 'matching', 'hypothesis'])).toBe(0);
  });

  it("Porter stemmer: the examples of Porter (1980) as nltk's NLTK_EXTENSIONS mode stems them", () => {
    // Words from Porter's paper, stems from nltk's PorterStemmer() (porter.py, same sha256 in
    // nltk 3.7 and 3.8); "ties" → "tie" and "dying" → "die" are NLTK extensions.
    const want: Record<string, string> = {
      caresses: 'caress', ponies: 'poni', ties: 'tie', caress: 'caress', cats: 'cat', feed: 'feed', agreed: 'agre', plastered: 'plaster',
      bled: 'bled', motoring: 'motor', sing: 'sing', conflated: 'conflat', troubled: 'troubl', sized: 'size', hopping: 'hop', tanned: 'tan',
      falling: 'fall', hissing: 'hiss', fizzed: 'fizz', failing: 'fail', filing: 'file', happy: 'happi', sky: 'sky', relational: 'relat',
      conditional: 'condit', rational: 'ration', valenci: 'valenc', digitizer: 'digit', conformabli: 'conform', radicalli: 'radic',
      differentli: 'differ', vileli: 'vile', analogousli: 'analog', vietnamization: 'vietnam', predication: 'predic', operator: 'oper',
      feudalism: 'feudal', decisiveness: 'decis', hopefulness: 'hope', callousness: 'callous', formaliti: 'formal', sensitiviti: 'sensit',
      sensibiliti: 'sensibl', triplicate: 'triplic', formative: 'form', formalize: 'formal', electriciti: 'electr', electrical: 'electr',
      hopeful: 'hope', goodness: 'good', revival: 'reviv', allowance: 'allow', inference: 'infer', airliner: 'airlin', gyroscopic: 'gyroscop',
      adjustable: 'adjust', defensible: 'defens', irritant: 'irrit', replacement: 'replac', adjustment: 'adjust', dependent: 'depend',
      adoption: 'adopt', homologou: 'homolog', communism: 'commun', activate: 'activ', angulariti: 'angular', homologous: 'homolog',
      effective: 'effect', bowdlerize: 'bowdler', probate: 'probat', rate: 'rate', cease: 'ceas', controll: 'control', roll: 'roll',
      generously: 'gener', dying: 'die', lying: 'lie', skies: 'sky', news: 'news', effusions: 'effus', atelectatic: 'atelectat',
      atelectasis: 'atelectasi', hypertrophied: 'hypertrophi', enlarged: 'enlarg', neoplasm: 'neoplasm',
    };
    const got = Object.fromEntries(Object.keys(want).map((w) => [w, porterStem(w)]));
    expect(got).toEqual(want);
  });

  it('WordNet: synsets with morphy (tumors → tumor → neoplasm; geese via noun.exc; no synsets for stems like "enlarg")', () => {
    const wn = wordnet();
    expect(wn.synonyms('tumor').has('neoplasm')).toBe(true);
    expect(wn.synonyms('tumors').has('neoplasm')).toBe(true);
    expect(wn.morphy('geese', 'n')).toEqual(['goose']);
    expect(wn.morphy('better', 'a')).toEqual(['better', 'good', 'well']); // nltk: the form itself first (it is an adjective key)
    expect(wn.synonyms('enlarg').size).toBe(0);
    expect(wn.synonyms('larg').size).toBe(0);
    // JS object-prototype names must not leak in (values from nltk: "constructor" is a word).
    expect([...wn.synonyms('constructor')].sort()).toEqual(['builder', 'constructor']);
    expect(wn.synonyms('__proto__').size).toBe(0);
    expect(wn.synonyms('hasOwnProperty').size).toBe(0);
  });

  it('MT19937: the 10000th output of the default-seeded generator is 4123659995 (C++ [rand.predef])', () => {
    const r = new LegacyRandomState(5489);
    let v = 0;
    for (let i = 0; i < 10000; i++) v = r.nextUint32();
    expect(v).toBe(4123659995);
  });
});

describe('metrics on random inputs vs plain re-statements', () => {
  const R = rng('metrics');
  const vocab = ['the', 'lung', 'lungs', 'is', 'clear', 'no', 'effusion', 'effusions', 'heart', 'normal', '.', ',', 'size', 'mild', 'x-ray'];
  const sentence = (min: number, max: number) => Array.from({ length: R.int(min, max) }, () => vocab[R.int(0, vocab.length - 1)]).join(' ');

  it('corpus BLEU-1..4, per-pair LCS and CIDEr-D', () => {
    for (let trial = 0; trial < 5; trial++) {
      const n = R.int(1, 25);
      const P = Array.from({ length: n }, () => sentence(0, 14)), Rf = Array.from({ length: n }, () => sentence(1, 14));
      const tp = P.map(juryTokenize), tr = Rf.map(juryTokenize);
      if (tr.some((t) => t.length === 0)) continue;
      for (let k = 1; k <= 4; k++) close(computeBleu(tr, tp, k).score, bleuRef(tr, tp, k), `bleu${k} n=${n}`, 1e-12);
      P.forEach((p, i) => expect(lcsLength(rougeTokenize(Rf[i]), rougeTokenize(p))).toBe(lcsRef(rougeTokenize(Rf[i]), rougeTokenize(p))));
      const c = ciderD(P, Rf).scores, cr = ciderRef(P, Rf);
      c.forEach((s, i) => close(s, cr[i], `cider pair ${i} of ${n}`, 1e-12));
    }
  });

  it('METEOR bounds and symmetry facts: identical ⇒ 1 − 0.5/m³, shuffled words lower, ≤ 1', () => {
    for (let trial = 0; trial < 20; trial++) {
      const t = juryTokenize(sentence(1, 12));
      if (t.length === 0) continue;
      // All m words match in one chunk: (1 − γ(1/m)^β)·1.
      close(singleMeteorScore(t, t), 1 - 0.5 * (1 / t.length) ** 3, 'identical meteor');
      const u = juryTokenize(sentence(1, 12));
      const s = singleMeteorScore(t, u);
      expect(s).toBeGreaterThanOrEqual(0);
      expect(s).toBeLessThanOrEqual(1);
    }
  });

  it('numpy mean / percentile / bootstrap stream', () => {
    const a = Array.from({ length: R.int(1, 700) }, () => R.normal() * 10 ** R.int(-3, 3));
    close(npSum(a), sumRef(a), 'pairwise sum vs compensated sum', 1e-12 * a.reduce((s, x) => s + Math.abs(x), 1));
    close(npMean(a), sumRef(a) / a.length, 'mean', 1e-12 * a.reduce((s, x) => s + Math.abs(x), 1));
    const v = Array.from({ length: 11 }, (_, i) => i * 2);
    expect(npPercentile(v, 50)).toBe(10);
    expect(npPercentile(v, 25)).toBe(5);
    close(npPercentile([1, 2], 30), 1.3, 'lerp');
    // Bounded draws stay in range and cover it; one-element "populations" draw nothing.
    const r = new LegacyRandomState(R.int(0, 2 ** 31));
    const hits = new Set<number>();
    for (let i = 0; i < 2000; i++) hits.add(r.randintBelow(40));
    expect([...hits].every((x) => x >= 0 && x < 40) && hits.size === 40).toBe(true);
    const f = Array.from({ length: 7 }, () => R.next());
    const [b] = bootstrapF([f], 7, 3, 200);
    expect(b!.low).toBeLessThanOrEqual(b!.mid);
    expect(b!.mid).toBeLessThanOrEqual(b!.high);
    expect(bootstrapF([[0.25]], 1, 5, 10)[0]).toEqual({ low: 0.25, mid: 0.25, high: 0.25 });
  });

  it('edge cases: empty and punctuation-only predictions are scored 0, an empty first prediction does not crash', () => {
    const m = computeMetrics(['', 'the lungs are clear .'], ['no effusion .', 'the lungs are clear .']);
    expect(m.meteor).toBe((0 + singleMeteorScore(juryTokenize('the lungs are clear .'), juryTokenize('the lungs are clear .'))) / 2);
    expect(m.rougeL_mean).toBe(0.5);
    expect(m.bleu1).toBeGreaterThan(0);
    const j = computeMetrics(['. .'], ['no focal consolidation .']);
    expect([j.bleu1, j.meteor, j.rougeL, j.rougeL_mean]).toEqual([0, 0, 0, 0]);
    expect(() => computeMetrics(['a'], [])).toThrow(/1 predictions vs 0 references/);
  });
});
