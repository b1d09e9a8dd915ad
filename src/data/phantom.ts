// The built-in dataset: seeded synthetic medical-style images with templated reports, so training
// runs on a fresh machine with no download.
//
// Five modalities with their own look (CT slice, MRI head, chest X-ray: grayscale; retinal fundus,
// gross specimen: colour). Each image has 0, 1 or 2 lesions (probability 0.2 / 0.4 / 0.4) in distinct
// cells of a 3×3 grid, each with a size, a shape and an intensity. Visibility at 48×48 (see
// ../shared/CALIBRATION.md: texture-level differences are not learnt by the tiny model):
//  - size: circumradius 0.08 vs 0.14 of the image side (≈ 4 vs 7 px at 48×48), ±5%;
//  - shape: "round" is a filled disc, "irregular" a four-pointed star (inner radius 0.5 of the outer,
//    within ±0.25 rad of axis-aligned) — about half the disc's area, an outline difference of several
//    pixels, not a texture;
//  - intensity: bright ≈ 0.94 / dark ≈ 0.06 luminance on tissue kept between ≈ 0.3 and 0.65.
// Sample i depends only on (seed, i), so a larger count extends a smaller one with the same seed.

import { writeCsv } from './csv.ts';
import { formatReport, LOCATIONS, MODALITIES, type Finding, type Location, type Modality, INTENSITIES, SHAPES, SIZES } from './findings.ts';
import { type DataFiles, joinPath, localFiles } from './fs.ts';
import { encodePng, type RGBImage } from './images.ts';

export type Box = [x0: number, y0: number, x1: number, y1: number];
/** A lesion with its bounding box in pixels: [x0, y0) to [x1, y1) (end exclusive), clipped to the image. */
export interface PhantomFinding extends Finding {
  box: Box;
}
export interface PhantomSample {
  id: string;
  image: RGBImage;
  /** Report in cleaned form, as the COVCTR loader returns it ("ct scan . a small … region . no other abnormality ."). */
  report: string;
  modality: Modality;
  findings: PhantomFinding[];
}
export interface PhantomOptions {
  count: number;
  seed: number;
  /** Image side in pixels (square). */
  size: number;
  /** Index of the first sample (default 0): generate disjoint ranges of one seed for separate splits. */
  start?: number;
}

export const PHANTOM_SIZE_RADIUS: Record<Finding['size'], number> = { small: 0.08, large: 0.14 };
const STAR_INNER = 0.5;

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** mulberry32, seeded per sample from (seed, index). */
class SampleRng {
  private s: number;
  constructor(seed: number, index: number) {
    this.s = fmix32((fmix32(seed >>> 0) ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0) || 1;
  }
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Uniform in [-a, a]. */
  jitter(a: number): number {
    return (this.next() * 2 - 1) * a;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.min(xs.length - 1, Math.floor(this.next() * xs.length))];
  }
  normal(): number {
    const u = 1 - this.next(), v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
}

type RGB = [number, number, number];
type Field = (u: number, v: number) => RGB;

/** A smooth random texture: a few low-frequency waves, total amplitude `amp`. */
function waves(rng: SampleRng, amp: number, n = 4, maxFreq = 4): (u: number, v: number) => number {
  const comps = Array.from({ length: n }, () => ({ fx: rng.jitter(maxFreq), fy: rng.jitter(maxFreq), ph: rng.next() * 2 * Math.PI, a: (amp / n) * (0.5 + rng.next()) }));
  return (u, v) => {
    let s = 0;
    for (const c of comps) s += c.a * Math.sin(2 * Math.PI * (c.fx * u + c.fy * v) + c.ph);
    return s;
  };
}

const gray = (x: number): RGB => [x, x, x];

function ctField(rng: SampleRng): Field {
  const cx = 0.5 + rng.jitter(0.02), cy = 0.5 + rng.jitter(0.02), rx = 0.6 + rng.jitter(0.03), ry = 0.56 + rng.jitter(0.03);
  const lungDx = 0.2 + rng.jitter(0.02), lungY = 0.47 + rng.jitter(0.03), tex = waves(rng, 0.05);
  return (u, v) => {
    const d = ((u - cx) / rx) ** 2 + ((v - cy) / ry) ** 2;
    if (d > 1) return gray(0.03);
    if (d > 0.9) return gray(0.72);
    const inLung = ((u - (cx - lungDx)) / 0.13) ** 2 + ((v - lungY) / 0.22) ** 2 < 1 || ((u - (cx + lungDx)) / 0.13) ** 2 + ((v - lungY) / 0.22) ** 2 < 1;
    return gray((inLung ? 0.38 : 0.5) + tex(u, v));
  };
}

function mriField(rng: SampleRng): Field {
  const cx = 0.5 + rng.jitter(0.02), cy = 0.5 + rng.jitter(0.02), rx = 0.56 + rng.jitter(0.03), ry = 0.62 + rng.jitter(0.03);
  const gyri = 14 + rng.jitter(3), ph = rng.next() * 6.28, tex = waves(rng, 0.04);
  return (u, v) => {
    const d = ((u - cx) / rx) ** 2 + ((v - cy) / ry) ** 2;
    if (d > 1) return gray(0.02);
    if (d > 0.9) return gray(0.8);
    if (Math.abs(u - cx) < 0.008) return gray(0.4);
    return gray(0.52 + 0.06 * Math.sin(gyri * u + 5 * Math.sin(gyri * v + ph)) + tex(u, v));
  };
}

function xrayField(rng: SampleRng): Field {
  const lungDx = 0.22 + rng.jitter(0.02), ribFreq = 7 + rng.jitter(1), ribPh = rng.next() * 6.28, tex = waves(rng, 0.04);
  return (u, v) => {
    const inLung = ((Math.abs(u - 0.5) - lungDx) / 0.17) ** 2 + ((v - 0.5) / 0.32) ** 2 < 1;
    if (Math.abs(u - 0.5) < 0.08) return gray(0.62 + tex(u, v));
    if (inLung) return gray(0.35 + 0.05 * Math.sin(2 * Math.PI * ribFreq * v + 3 * (u - 0.5) ** 2 + ribPh) + tex(u, v));
    return gray(0.55 - 0.1 * v + tex(u, v));
  };
}

function fundusField(rng: SampleRng): Field {
  const cx = 0.5 + rng.jitter(0.02), cy = 0.5 + rng.jitter(0.02), R = 0.62 + rng.jitter(0.02), tex = waves(rng, 0.05);
  const vessels = Array.from({ length: 4 }, () => ({ y0: 0.2 + rng.next() * 0.6, a: rng.jitter(1.2), ph: rng.next() * 6.28 }));
  return (u, v) => {
    const r2 = (u - cx) ** 2 + (v - cy) ** 2;
    if (r2 > R * R) return gray(0.01);
    const shade = 1 - (0.35 * r2) / (R * R) + tex(u, v);
    for (const ves of vessels) {
      if (Math.abs(v - (ves.y0 + ves.a * (u - 0.5) ** 2 + 0.03 * Math.sin(8 * u + ves.ph))) < 0.012) return [0.45 * shade, 0.1 * shade, 0.06 * shade];
    }
    return [0.82 * shade, 0.4 * shade, 0.17 * shade];
  };
}

function grossField(rng: SampleRng): Field {
  const p1 = rng.next() * 6.28, p2 = rng.next() * 6.28, R = 0.58 + rng.jitter(0.03), drape = waves(rng, 0.04), mottle = waves(rng, 0.08, 6, 6);
  return (u, v) => {
    const th = Math.atan2(v - 0.5, u - 0.5), r = Math.hypot(u - 0.5, v - 0.5);
    const edge = R * (1 + 0.08 * Math.sin(3 * th + p1) + 0.05 * Math.sin(5 * th + p2));
    if (r > edge) {
      const t = drape(u, v);
      return [0.12 + t, 0.32 + t, 0.38 + t];
    }
    const m = mottle(u, v);
    return [0.72 + m, 0.42 + m, 0.4 + m];
  };
}

const FIELDS: Record<Modality, (rng: SampleRng) => Field> = { ct: ctField, mri: mriField, xray: xrayField, fundus: fundusField, gross: grossField };
const COLOUR_MODALITIES = new Set<Modality>(['fundus', 'gross']);

interface LesionGeometry {
  inside(u: number, v: number): boolean;
  /** Extent in normalised coordinates. */
  bounds: [number, number, number, number];
}

function lesionGeometry(f: Finding, rng: SampleRng): LesionGeometry {
  const li = LOCATIONS.indexOf(f.location), row = Math.floor(li / 3), col = li % 3;
  const cx = (col + 0.5) / 3 + rng.jitter(0.02), cy = (row + 0.5) / 3 + rng.jitter(0.02);
  const R = PHANTOM_SIZE_RADIUS[f.size] * (1 + rng.jitter(0.05));
  if (f.shape === 'round') {
    return { inside: (u, v) => (u - cx) ** 2 + (v - cy) ** 2 <= R * R, bounds: [cx - R, cy - R, cx + R, cy + R] };
  }
  // near axis-aligned (a '+' with pointed arms): one consistent outline is easier to learn than all rotations
  const rot = rng.jitter(0.25);
  const vx: number[] = [], vy: number[] = [];
  for (let k = 0; k < 8; k++) {
    const a = rot + (k * Math.PI) / 4, r = k % 2 === 0 ? R : STAR_INNER * R;
    vx.push(cx + r * Math.cos(a));
    vy.push(cy + r * Math.sin(a));
  }
  const inside = (u: number, v: number) => {
    let c = false;
    for (let i = 0, j = 7; i < 8; j = i++) {
      if (vy[i] > v !== vy[j] > v && u < ((vx[j] - vx[i]) * (v - vy[i])) / (vy[j] - vy[i]) + vx[i]) c = !c;
    }
    return c;
  };
  return { inside, bounds: [Math.min(...vx), Math.min(...vy), Math.max(...vx), Math.max(...vy)] };
}

function lesionColour(modality: Modality, intensity: Finding['intensity'], rng: SampleRng): RGB {
  const j = rng.jitter(0.03);
  if (COLOUR_MODALITIES.has(modality)) return intensity === 'bright' ? [0.98 + j, 0.95 + j, 0.85 + j] : [0.12 + j, 0.04 + j, 0.04 + j];
  return gray(intensity === 'bright' ? 0.94 + j : 0.06 + j);
}

function sampleFindings(rng: SampleRng): Finding[] {
  const r = rng.next();
  const count = r < 0.2 ? 0 : r < 0.6 ? 1 : 2;
  const free = [...LOCATIONS];
  const out: Finding[] = [];
  for (let k = 0; k < count; k++) {
    const location = free.splice(Math.min(free.length - 1, Math.floor(rng.next() * free.length)), 1)[0] as Location;
    out.push({ location, size: rng.pick(SIZES), shape: rng.pick(SHAPES), intensity: rng.pick(INTENSITIES) });
  }
  return out.sort((a, b) => LOCATIONS.indexOf(a.location) - LOCATIONS.indexOf(b.location));
}

const SUPERSAMPLE = 4;

/** Generates sample `index` of the phantom dataset with `seed` at `size`×`size` pixels. */
export function generatePhantomSample(seed: number, index: number, size: number): PhantomSample {
  if (!Number.isInteger(size) || size < 8) throw new Error(`generatePhantom: size must be an integer ≥ 8, got ${size}`);
  const rng = new SampleRng(seed, index);
  const modality = rng.pick(MODALITIES);
  const findings = sampleFindings(rng);
  const field = FIELDS[modality](rng);
  const px = new Float64Array(size * size * 3);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const c = field((x + 0.5) / size, (y + 0.5) / size);
      px.set(c, (y * size + x) * 3);
    }
  }
  const boxed: PhantomFinding[] = [];
  for (const f of findings) {
    const g = lesionGeometry(f, rng), colour = lesionColour(modality, f.intensity, rng);
    const x0 = Math.max(0, Math.floor(g.bounds[0] * size)), y0 = Math.max(0, Math.floor(g.bounds[1] * size));
    const x1 = Math.min(size, Math.ceil(g.bounds[2] * size)), y1 = Math.min(size, Math.ceil(g.bounds[3] * size));
    for (let y = y0; y < y1; y++) {
      for (let x = x0; x < x1; x++) {
        let hits = 0;
        for (let sy = 0; sy < SUPERSAMPLE; sy++) {
          for (let sx = 0; sx < SUPERSAMPLE; sx++) if (g.inside((x + (sx + 0.5) / SUPERSAMPLE) / size, (y + (sy + 0.5) / SUPERSAMPLE) / size)) hits++;
        }
        const a = hits / (SUPERSAMPLE * SUPERSAMPLE), o = (y * size + x) * 3;
        for (let c = 0; c < 3; c++) px[o + c] = (1 - a) * px[o + c] + a * colour[c];
      }
    }
    boxed.push({ ...f, box: [x0, y0, x1, y1] });
  }
  const data = new Uint8Array(size * size * 3);
  const colour = COLOUR_MODALITIES.has(modality);
  for (let i = 0; i < size * size; i++) {
    const n = 0.02 * rng.normal();
    for (let c = 0; c < 3; c++) {
      const v = px[i * 3 + c] + (colour ? 0.02 * rng.normal() : n);
      data[i * 3 + c] = Math.round(Math.min(1, Math.max(0, v)) * 255);
    }
  }
  return {
    id: `phantom-${seed}-${String(index).padStart(6, '0')}`,
    image: { width: size, height: size, data },
    report: formatReport(modality, findings),
    modality,
    findings: boxed,
  };
}

export function generatePhantom(opts: PhantomOptions): PhantomSample[] {
  const { count, seed, size, start = 0 } = opts;
  if (!Number.isInteger(count) || count < 0) throw new Error(`generatePhantom: count must be a non-negative integer, got ${count}`);
  if (!Number.isInteger(seed)) throw new Error(`generatePhantom: seed must be an integer, got ${seed}`);
  return Array.from({ length: count }, (_, i) => generatePhantomSample(seed, start + i, size));
}

/** The report as written to disk: COVCTR-style raw text ("ct scan. a small … region. no other abnormality."), which the COVCTR cleaning turns back into `report`. */
export function rawPhantomReport(report: string): string {
  return report.replace(/ \./g, '.');
}

export const PHANTOM_FINDINGS_FILE = 'findings.json';

export interface PhantomFindingsFile {
  format: 'micar-phantom-findings';
  version: 1;
  samples: Record<string, { image: string; modality: Modality; findings: PhantomFinding[] }>;
}

/**
 * Writes samples in the COVCTR layout (`reports.csv` with columns image_id, reports_En; PNGs in
 * `images/`) plus `findings.json` (modality, findings with boxes, per image id), so training reads
 * the built-in dataset through the COVCTR loader.
 */
export async function writePhantomDataset(dir: string, samples: readonly PhantomSample[], files?: DataFiles): Promise<void> {
  const fs = files ?? (await localFiles());
  await fs.mkdirp(joinPath(dir, 'images'));
  const rows: string[][] = [];
  const meta: PhantomFindingsFile = { format: 'micar-phantom-findings', version: 1, samples: {} };
  for (const s of samples) {
    const image = `${s.id}.png`;
    await fs.writeFile(joinPath(dir, 'images', image), encodePng(s.image));
    rows.push([image, rawPhantomReport(s.report)]);
    meta.samples[image] = { image, modality: s.modality, findings: s.findings };
  }
  await fs.writeFile(joinPath(dir, 'reports.csv'), new TextEncoder().encode(writeCsv(['image_id', 'reports_En'], rows)));
  await fs.writeFile(joinPath(dir, PHANTOM_FINDINGS_FILE), new TextEncoder().encode(JSON.stringify(meta)));
}

export { parseFindings, scoreFindings, summarizeFindingScores } from './findings.ts';
