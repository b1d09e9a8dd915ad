import { describe, expect, it } from 'vitest';
import { generatePhantom, generatePhantomSample, PHANTOM_SIZE_RADIUS, rawPhantomReport, writePhantomDataset } from '../src/data/phantom.ts';
import { formatReport, LOCATIONS, parseFindings, scoreFindings, summarizeFindingScores, type Finding, MODALITIES } from '../src/data/findings.ts';
import { cleanCovctr, loadDataset, loadSampleImage } from '../src/data/datasets.ts';
import { memoryFiles } from '../src/data/fs.ts';
import { rng } from './util.ts';

const strip = (f: Finding & { box?: unknown }): Finding => ({ location: f.location, size: f.size, shape: f.shape, intensity: f.intensity });

describe('phantom generator', () => {
  const R = rng('phantom');

  it('is deterministic: same seed → identical bytes and reports; sample i depends only on (seed, i)', () => {
    const seed = R.int(0, 2 ** 31 - 1), size = R.int(16, 64);
    const a = generatePhantom({ count: 12, seed, size });
    const b = generatePhantom({ count: 12, seed, size });
    expect(b.map((s) => s.report)).toEqual(a.map((s) => s.report));
    a.forEach((s, i) => expect(b[i].image.data).toEqual(s.image.data));
    const tail = generatePhantom({ count: 4, seed, size, start: 8 });
    tail.forEach((s, i) => {
      expect(s.id).toBe(a[8 + i].id);
      expect(s.image.data).toEqual(a[8 + i].image.data);
    });
    const other = generatePhantom({ count: 12, seed: seed + 1, size });
    expect(other.some((s, i) => s.report !== a[i].report || s.image.data.some((v, k) => v !== a[i].image.data[k]))).toBe(true);
  });

  it('findings parse back exactly from the generated reports', () => {
    const seed = R.int(0, 2 ** 31 - 1);
    for (const s of generatePhantom({ count: 200, seed, size: 16 })) {
      const parsed = parseFindings(s.report);
      expect(parsed.modality).toBe(s.modality);
      expect(parsed.findings).toEqual(s.findings.map(strip));
      expect(scoreFindings(parsed, { modality: s.modality, findings: s.findings }).exact).toBe(true);
      expect(s.report).toBe(formatReport(s.modality, s.findings));
      // the on-disk text becomes the report again under the COVCTR cleaning
      expect(cleanCovctr(rawPhantomReport(s.report))).toBe(s.report);
    }
  });

  it('has 0/1/2 findings with probabilities ≈ 0.2/0.4/0.4, every modality, distinct locations, boxes inside the image', () => {
    const seed = R.int(0, 2 ** 31 - 1), size = 12, n = 1500;
    const counts = [0, 0, 0];
    const modalities = new Set<string>();
    for (const s of generatePhantom({ count: n, seed, size })) {
      counts[s.findings.length]++;
      modalities.add(s.modality);
      expect(new Set(s.findings.map((f) => f.location)).size).toBe(s.findings.length);
      for (const f of s.findings) {
        const [x0, y0, x1, y1] = f.box;
        expect(0 <= x0 && x0 < x1 && x1 <= size && 0 <= y0 && y0 < y1 && y1 <= size).toBe(true);
      }
    }
    // binomial sd at n=1500 is ≈ 0.013: allow 4 sd
    expect(Math.abs(counts[0] / n - 0.2)).toBeLessThan(0.05);
    expect(Math.abs(counts[1] / n - 0.4)).toBeLessThan(0.055);
    expect(Math.abs(counts[2] / n - 0.4)).toBeLessThan(0.055);
    expect([...modalities].sort()).toEqual([...MODALITIES].sort());
  });

  it('lesions are visible at 48×48: intensity at the lesion centre, size in the box, location in its grid cell', () => {
    const seed = R.int(0, 2 ** 31 - 1), size = 48;
    const widths = { small: [] as number[], large: [] as number[] };
    for (const s of generatePhantom({ count: 120, seed, size })) {
      for (const f of s.findings) {
        const [x0, y0, x1, y1] = f.box;
        const cx = Math.floor((x0 + x1) / 2), cy = Math.floor((y0 + y1) / 2);
        const o = (cy * size + cx) * 3, d = s.image.data;
        const lum = (0.299 * d[o] + 0.587 * d[o + 1] + 0.114 * d[o + 2]) / 255;
        if (f.intensity === 'bright') expect(lum, `${s.id} ${f.location}`).toBeGreaterThan(0.75);
        else expect(lum, `${s.id} ${f.location}`).toBeLessThan(0.25);
        const li = LOCATIONS.indexOf(f.location);
        expect(Math.floor((3 * cx) / size)).toBe(li % 3);
        expect(Math.floor((3 * cy) / size)).toBe(Math.floor(li / 3));
        if (x0 > 0 && x1 < size) widths[f.size].push(x1 - x0);
      }
    }
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(mean(widths.large) / mean(widths.small)).toBeGreaterThan(0.8 * (PHANTOM_SIZE_RADIUS.large / PHANTOM_SIZE_RADIUS.small));
    expect(Math.max(...widths.small)).toBeLessThan(Math.min(...widths.large));
  });

  it('round lesions cover about πR², irregular (star) ones about half of that', () => {
    const seed = R.int(0, 2 ** 31 - 1), size = 64;
    const cover = { round: [] as number[], irregular: [] as number[] };
    for (const s of generatePhantom({ count: 80, seed, size })) {
      // one lesion, not touching the border: count pixels near the lesion colour inside its box
      if (s.findings.length !== 1) continue;
      const f = s.findings[0], [x0, y0, x1, y1] = f.box, d = s.image.data;
      if (x0 === 0 || y0 === 0 || x1 === size || y1 === size) continue;
      let hit = 0;
      for (let y = y0; y < y1; y++)
        for (let x = x0; x < x1; x++) {
          const o = (y * size + x) * 3, lum = (0.299 * d[o] + 0.587 * d[o + 1] + 0.114 * d[o + 2]) / 255;
          if (f.intensity === 'bright' ? lum > 0.75 : lum < 0.25) hit++;
        }
      const r = PHANTOM_SIZE_RADIUS[f.size] * size;
      cover[f.shape].push(hit / (Math.PI * r * r));
    }
    // radius jitter ±5% → area ±10%; a 4-point star with inner radius 0.5 R has area 0.45 πR².
    // Quantiles, not extremes: a background pixel of lesion-like luminance inside the box (some
    // modalities have bright or dark structures) can push a single sample across.
    const q = (a: number[], p: number) => [...a].sort((x, y) => x - y)[Math.floor(p * (a.length - 1))];
    expect(q(cover.round, 0.5)).toBeGreaterThan(0.75);
    expect(q(cover.irregular, 0.5)).toBeLessThan(0.65);
    expect(q(cover.round, 0.1)).toBeGreaterThan(q(cover.irregular, 0.9));
  });

  it('rejects bad options', () => {
    expect(() => generatePhantomSample(1, 0, 4)).toThrow(/size/);
    expect(() => generatePhantom({ count: -1, seed: 1, size: 32 })).toThrow(/count/);
  });
});

describe('parseFindings / scoreFindings', () => {
  const R = rng('findings');
  const randomFinding = (loc?: (typeof LOCATIONS)[number]): Finding => ({
    location: loc ?? LOCATIONS[R.int(0, 8)],
    size: R.next() < 0.5 ? 'small' : 'large',
    shape: R.next() < 0.5 ? 'round' : 'irregular',
    intensity: R.next() < 0.5 ? 'bright' : 'dark',
  });

  it('tolerates case, punctuation, "center", repeats, and word order', () => {
    const f = randomFinding();
    const text = `CT scan.   A ${f.size.toUpperCase()} ${f.shape}, ${f.intensity} lesion in the ${f.location.replace('centre', 'center')} region. ${f.intensity} ${f.location} ${f.size} lesion ${f.shape}. no other abnormality`;
    const p = parseFindings(text);
    expect(p.modality).toBe('ct');
    expect(p.findings).toEqual([f]);
    expect(parseFindings('mri scan of the head . no abnormality is seen .')).toEqual({ modality: 'mri', findings: [] });
    expect(parseFindings('chest x-ray . no lesion .').findings).toEqual([]);
    expect(parseFindings('a small lesion in the upper region .').findings).toEqual([{ size: 'small', location: undefined, shape: undefined, intensity: undefined }]);
  });

  it('exact only when count and all attributes agree; per-attribute counts follow the best matching', () => {
    const locs = [...LOCATIONS].sort(() => R.next() - 0.5);
    const truth = [randomFinding(locs[0]), randomFinding(locs[1])];
    const perfect = scoreFindings({ modality: 'xray', findings: [...truth].reverse() }, { modality: 'xray', findings: truth });
    expect(perfect.exact && perfect.modality && perfect.count).toBe(true);
    for (const attr of ['size', 'shape', 'intensity'] as const) {
      const pred = truth.map((t) => ({ ...t }));
      const k = R.int(0, 1);
      (pred[k] as Record<string, string>)[attr] = pred[k][attr] === 'small' ? 'large' : pred[k][attr] === 'large' ? 'small' : pred[k][attr] === 'round' ? 'irregular' : pred[k][attr] === 'irregular' ? 'round' : pred[k][attr] === 'bright' ? 'dark' : 'bright';
      const s = scoreFindings({ modality: 'ct', findings: pred }, { modality: 'xray', findings: truth });
      expect(s.exact).toBe(false);
      expect(s.modality).toBe(false);
      expect(s.perAttribute[attr]).toEqual({ correct: 1, total: 2 });
      expect(s.perAttribute.location).toEqual({ correct: 2, total: 2 });
    }
    const extra = scoreFindings({ findings: [...truth, randomFinding(locs[2])] }, { findings: truth });
    expect([extra.exact, extra.count, extra.extra, extra.missing]).toEqual([false, false, 1, 0]);
    const missing = scoreFindings({ findings: [truth[1]] }, { findings: truth });
    expect([missing.exact, missing.missing, missing.perAttribute.location.correct]).toEqual([false, 1, 1]);
    // a wrong location is matched to the finding it agrees with most, never counted as the right location
    const moved = scoreFindings({ findings: [{ ...truth[0], location: locs[2] }] }, { findings: [truth[0]] });
    expect(moved.perAttribute.location.correct).toBe(0);
    expect(moved.perAttribute.size.correct).toBe(1);
    const summary = summarizeFindingScores([perfect, extra, missing]);
    expect(summary.exact).toBeCloseTo(1 / 3, 12);
    expect(summary.location).toBeCloseTo((2 + 2 + 1) / 6, 12);
  });
});

describe('phantom dataset on disk (COVCTR layout)', () => {
  const R = rng('phantom-disk');
  it('writes and loads back through the COVCTR loader with findings attached', async () => {
    const seed = R.int(0, 2 ** 31 - 1), count = R.int(20, 40), size = 16;
    const files = memoryFiles();
    const samples = generatePhantom({ count, seed, size });
    await writePhantomDataset('ph', samples, files);
    const splits = await loadDataset('phantom', 'ph', { files, verifyImages: true });
    const all = [...splits.train, ...splits.val, ...splits.test];
    expect(all.length).toBe(count);
    expect(splits.test.length + splits.val.length).toBe(Math.ceil(0.2 * count));
    const byImage = new Map(samples.map((s) => [`${s.id}.png`, s]));
    for (const s of all) {
      const truth = byImage.get(s.id)!;
      expect(s.report).toBe(truth.report);
      expect(s.meta).toEqual({ modality: truth.modality, findings: truth.findings });
      expect((await loadSampleImage(s, files)).data).toEqual(truth.image.data);
    }
  });

  it('generates the dataset when asked and the folder is empty', async () => {
    const files = memoryFiles();
    const seed = R.int(0, 1000);
    const splits = await loadDataset('phantom', 'gen', { files, phantom: { count: 30, seed, size: 12 } });
    expect(splits.train.length + splits.val.length + splits.test.length).toBe(30);
    await expect(loadDataset('phantom', 'none', { files })).rejects.toThrow(/none\/reports\.csv not found/);
  });
});
