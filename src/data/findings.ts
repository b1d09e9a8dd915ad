// Findings of the built-in phantom dataset: their vocabulary, the report template, parsing a
// (possibly model-written) report back into findings, and scoring predicted against true findings.
//
// Report template (after the COVCTR cleaning the loader applies, i.e. " ." separated):
//   "<modality phrase> . a <size> <shape> <intensity> lesion in the <row> <col> region . [second finding .]
//    no other abnormality ."   or, with no finding,   "<modality phrase> . no abnormality is seen ."
// Findings are written in reading order of their locations (upper left … lower right), so a report
// is a function of the image.

export const MODALITIES = ['ct', 'mri', 'xray', 'fundus', 'gross'] as const;
export type Modality = (typeof MODALITIES)[number];
export const MODALITY_PHRASES: Record<Modality, string> = {
  ct: 'ct scan',
  mri: 'mri scan of the head',
  xray: 'chest xray',
  fundus: 'retinal fundus photograph',
  gross: 'gross specimen photograph',
};

export const ROWS = ['upper', 'middle', 'lower'] as const;
export const COLS = ['left', 'centre', 'right'] as const;
export type Row = (typeof ROWS)[number];
export type Col = (typeof COLS)[number];
export type Location = `${Row} ${Col}`;
export const LOCATIONS: Location[] = ROWS.flatMap((r) => COLS.map((c) => `${r} ${c}` as Location));
export const SIZES = ['small', 'large'] as const;
export const SHAPES = ['round', 'irregular'] as const;
export const INTENSITIES = ['bright', 'dark'] as const;
export type Size = (typeof SIZES)[number];
export type Shape = (typeof SHAPES)[number];
export type Intensity = (typeof INTENSITIES)[number];

export interface Finding {
  location: Location;
  size: Size;
  shape: Shape;
  intensity: Intensity;
}
export const FINDING_ATTRIBUTES = ['location', 'size', 'shape', 'intensity'] as const;
export type FindingAttribute = (typeof FINDING_ATTRIBUTES)[number];

/** A finding as parsed from free text: attributes the text did not state are undefined. */
export type ParsedFinding = { [K in FindingAttribute]?: Finding[K] };
export interface ParsedFindings {
  modality?: Modality;
  findings: ParsedFinding[];
}

export function findingSentence(f: Finding): string {
  return `a ${f.size} ${f.shape} ${f.intensity} lesion in the ${f.location} region`;
}

/** The report in cleaned form (tokens separated by spaces, "." as its own token). */
export function formatReport(modality: Modality, findings: readonly Finding[]): string {
  const sorted = [...findings].sort((a, b) => LOCATIONS.indexOf(a.location) - LOCATIONS.indexOf(b.location));
  const parts = [MODALITY_PHRASES[modality], ...sorted.map(findingSentence), sorted.length ? 'no other abnormality' : 'no abnormality is seen'];
  return parts.join(' . ') + ' .';
}

const MODALITY_PATTERNS: [Modality, RegExp][] = [
  ['ct', /\bct\b/],
  ['mri', /\bmri\b/],
  ['xray', /\bx ?ray\b|\bradiograph\b/],
  ['fundus', /\bfundus\b|\bretinal\b/],
  ['gross', /\bgross\b|\bspecimen\b/],
];

function firstWord<T extends string>(words: string[], options: readonly T[]): T | undefined {
  for (const w of words) if ((options as readonly string[]).includes(w)) return w as T;
  return undefined;
}

/**
 * Parses a report into modality and findings, tolerating model mistakes: case, punctuation and
 * spacing are ignored, "center" counts as "centre", words may come in any order within a sentence,
 * a sentence with any finding word (lesion, an attribute or a location word) is a finding, and an
 * attribute the sentence does not name stays undefined (the first word found wins). A location
 * needs both its row and its column word. Sentences repeated verbatim (a decoder loop) count once.
 */
export function parseFindings(report: string): ParsedFindings {
  const text = report.toLowerCase().replace(/-/g, '').replace(/\bcenter\b/g, 'centre').replace(/\bcentral\b/g, 'centre');
  let modality: Modality | undefined, best = Infinity;
  for (const [m, re] of MODALITY_PATTERNS) {
    const hit = re.exec(text);
    if (hit && hit.index < best) {
      best = hit.index;
      modality = m;
    }
  }
  const findings: ParsedFinding[] = [];
  const seen = new Set<string>();
  for (const sentence of text.split(/[.;\n]/)) {
    const words = sentence.split(/[^a-z]+/).filter(Boolean);
    const row = firstWord(words, ROWS), col = firstWord(words, COLS);
    const f: ParsedFinding = {
      size: firstWord(words, SIZES),
      shape: firstWord(words, SHAPES),
      intensity: firstWord(words, INTENSITIES),
      location: row && col ? (`${row} ${col}` as Location) : undefined,
    };
    const hasAttribute = row !== undefined || col !== undefined || f.size || f.shape || f.intensity;
    // "no other abnormality", "no lesion": a negated sentence without attributes is not a finding
    if (!hasAttribute && (!words.includes('lesion') || words.includes('no'))) continue;
    const key = JSON.stringify([f.location, f.size, f.shape, f.intensity]);
    if (seen.has(key)) continue;
    seen.add(key);
    findings.push(f);
  }
  return { modality, findings };
}

export interface AttributeScore {
  correct: number;
  total: number;
}

export interface FindingScore {
  /** Same number of findings, and each true finding matched to a prediction agreeing on all four attributes (modality not included). */
  exact: boolean;
  /** Predicted modality equals the true one (undefined when the truth has none). */
  modality?: boolean;
  /** Same number of findings. */
  count: boolean;
  /** Per true finding: does its matched prediction state this attribute correctly (unmatched = wrong). */
  perAttribute: Record<FindingAttribute, AttributeScore>;
  /** Predictions left unmatched, and true findings left unmatched. */
  extra: number;
  missing: number;
}

/** Agreement of one predicted with one true finding; location weighs more than the other three together. */
function pairScore(p: ParsedFinding, t: Finding): number {
  return (p.location === t.location ? 4 : 0) + (p.size === t.size ? 1 : 0) + (p.shape === t.shape ? 1 : 0) + (p.intensity === t.intensity ? 1 : 0);
}

/**
 * Scores predicted against true findings. Matching: the one-to-one assignment of true findings to
 * distinct predictions (or to nothing) that maximises the total agreement, where agreeing on the
 * location counts 4 and on size, shape, intensity 1 each (so a prediction at the right location is
 * always preferred; ties go to the earlier prediction). Exhaustive search: findings per report are few.
 */
export function scoreFindings(pred: ParsedFindings, truth: { modality?: Modality; findings: readonly Finding[] }): FindingScore {
  const T = truth.findings, P = pred.findings;
  let bestScore = -1, bestAssign: number[] = [];
  const assign: number[] = new Array(T.length).fill(-1), used = new Array(P.length).fill(false);
  const search = (i: number, acc: number) => {
    if (i === T.length) {
      if (acc > bestScore) {
        bestScore = acc;
        bestAssign = assign.slice();
      }
      return;
    }
    for (let j = 0; j < P.length; j++) {
      if (used[j]) continue;
      used[j] = true;
      assign[i] = j;
      search(i + 1, acc + pairScore(P[j], T[i]));
      used[j] = false;
    }
    assign[i] = -1;
    search(i + 1, acc);
  };
  if (P.length > 8) throw new Error(`scoreFindings: ${P.length} predicted findings; at most 8 are scored (parseFindings removes repeats)`);
  search(0, 0);
  const perAttribute = Object.fromEntries(FINDING_ATTRIBUTES.map((a) => [a, { correct: 0, total: T.length }])) as Record<FindingAttribute, AttributeScore>;
  let allMatch = true;
  T.forEach((t, i) => {
    const j = bestAssign[i];
    for (const a of FINDING_ATTRIBUTES) {
      const ok = j >= 0 && P[j][a] === t[a];
      if (ok) perAttribute[a].correct++;
      else allMatch = false;
    }
  });
  const matched = bestAssign.filter((j) => j >= 0).length;
  const count = P.length === T.length;
  return {
    exact: count && allMatch,
    modality: truth.modality === undefined ? undefined : pred.modality === truth.modality,
    count,
    perAttribute,
    extra: P.length - matched,
    missing: T.length - matched,
  };
}

export interface FindingSummary {
  n: number;
  /** Fraction of reports whose findings match exactly ("finding accuracy"). */
  exact: number;
  modality: number;
  count: number;
  /** Per attribute: correct / total over all true findings. */
  location: number;
  size: number;
  shape: number;
  intensity: number;
}

export function summarizeFindingScores(scores: readonly FindingScore[]): FindingSummary {
  const n = scores.length;
  const frac = (k: number, d: number) => (d === 0 ? NaN : k / d);
  const attr = (a: FindingAttribute) => frac(scores.reduce((s, x) => s + x.perAttribute[a].correct, 0), scores.reduce((s, x) => s + x.perAttribute[a].total, 0));
  const withModality = scores.filter((s) => s.modality !== undefined);
  return {
    n,
    exact: frac(scores.filter((s) => s.exact).length, n),
    modality: frac(withModality.filter((s) => s.modality).length, withModality.length),
    count: frac(scores.filter((s) => s.count).length, n),
    location: attr('location'),
    size: attr('size'),
    shape: attr('shape'),
    intensity: attr('intensity'),
  };
}
