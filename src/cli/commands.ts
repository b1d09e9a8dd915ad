// CLI verbs for training and evaluation, and the README's main job.
import { parsePrecision, resolvePrecision } from '../model/precision.ts';
import { init } from '../graph/runtime.ts';
import { type DatasetFormat, loadDataset, loadSampleImage, type Sample } from '../data/datasets.ts';
import type { PhantomSample } from '../data/phantom.ts';
import { attentionForPixels, attentionOutputs, evaluateGrounding, writeOutputs } from '../viz/index.ts';
import type { GroundingSummary } from '../viz/grounding.ts';
import { evaluateExplanations, type ExplainEvaluation, explainTable } from '../viz/explain-scores.ts';
import { EXPLAIN_METHODS, type ExplainMethod, type ExplainOptions, type ExplainTarget, isExplainMethod, type SmoothGradKind } from '../viz/explain.ts';
import { Tokenizer } from '../data/tokenizer.ts';
import { type MicarConfig, normaliseConfig } from '../model/config.ts';
import { train } from '../train/trainer.ts';
import { prepareExamples } from '../train/data.ts';
import { joinPath } from '../data/fs.ts';
import { writeCsv } from '../data/csv.ts';
import { pixelsOf } from '../train/batches.ts';
import { loadCheckpoint } from '../train/checkpoint.ts';
import { readConfig, readModel } from '../model/load.ts';
import { type EvalExample, type EvalScores, mostFrequentReport, nearestNeighbourReports, nearestNeighbourSpace, predictReports, scorePredictions } from '../train/evaluate.ts';
import { trainingPlotHtml } from '../train/plot.ts';
import { readFileBytes, writeFileAtomic } from '../io/files.ts';
import { readSafetensors } from '../io/safetensors.ts';
import { readPth } from '../io/pth.ts';
import { Weights } from '../model/weights.ts';
import { loadBackboneWeights } from '../model/pretrained.ts';
import { DATA_FORMATS, type Parsed, parseCommand, UsageError } from './args.ts';

declare const Deno: {
  readTextFile(p: string | URL): Promise<string>;
  mkdir(p: string, o?: { recursive?: boolean }): Promise<void>;
};

/** A preset name (configs/<name>.json) or a path to a JSON file, with CLI overrides. */
export async function loadConfig(nameOrPath: string, overrides: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
  // The loader's reader: presets come from the module (src/model/presets.ts), files from disk.
  return { ...(await readConfig(nameOrPath)).raw, ...overrides };
}

interface Prepared {
  cfg: MicarConfig;
  tok: Tokenizer;
  train: EvalExample[];
  val: EvalExample[];
  test: EvalExample[];
  /** The loader's test samples (images and, for the phantom set, findings with boxes). */
  testSamples: Sample[];
}

async function prepareData(a: Parsed, rawCfg: Record<string, unknown>, tok?: Tokenizer, dataDirDefault?: string): Promise<Prepared> {
  const format = (a.str('data', 'optional') ?? 'phantom') as DatasetFormat;
  if (!(DATA_FORMATS as readonly string[]).includes(format)) throw new UsageError(`--data must be one of ${DATA_FORMATS.join(', ')}`, a.verb);
  const dir = a.str('data-dir', 'optional') ?? dataDirDefault ?? (format === 'phantom' ? 'runs/phantom' : a.str('data-dir'));
  const size = Number(rawCfg.image_size);
  const splits = await loadDataset(format, dir, {
    phantom: format === 'phantom' ? { count: a.num('phantom-count'), seed: a.num('phantom-seed'), size: a.num('phantom-size', 'optional') ?? size } : undefined,
    // ROCO's images live inside its parquet files: extract them once instead of holding them all in memory.
    rocoImages: format === 'roco' ? a.str('roco-images', 'optional') ?? joinPath(dir, 'images') : undefined,
  });
  const minFreq = Number(rawCfg.min_frequency ?? 3);
  const tokenizer = tok ?? Tokenizer.build(splits.train.map((s) => s.report), minFreq, format === 'phantom' ? 'whitespace' : 'generic');
  const cfg = normaliseConfig({ ...rawCfg, vocab_size: tokenizer.vocabSize }, 'config');
  const limit = (n: number) => Math.min(n, a.num('limit', 'optional') ?? n);
  // Preprocessed images kept in memory per split, in MiB; larger splits are decoded per batch.
  const pixelMemory = a.num('pixel-memory-mb') * 1024 * 1024;
  const prep = async (name: string, samples: Sample[]) => {
    const ex = await prepareExamples(samples, cfg, undefined, { pixelMemory });
    if (ex.length && !ex[0].pixels) {
      console.log(`${name}: ${ex.length} images × ${((3 * cfg.image_size ** 2 * 4) / 1024).toFixed(0)} KiB exceed --pixel-memory-mb ${pixelMemory / 1024 / 1024}; decoded again for each batch`);
    }
    return ex;
  };
  return {
    cfg, tok: tokenizer,
    train: await prep('train', splits.train.slice(0, limit(splits.train.length))),
    val: await prep('val', splits.val.slice(0, limit(splits.val.length))),
    test: await prep('test', splits.test.slice(0, limit(splits.test.length))),
    testSamples: splits.test.slice(0, limit(splits.test.length)),
  };
}

export async function trainCommand(argv: string[]): Promise<{ out: string; data: Prepared; best: number }> {
  return trainWith(parseCommand('train', argv));
}

/** `train` from parsed options (`main` passes its own, which include every `train` option). */
async function trainWith(a: Parsed, opts: { timeBudgetS?: number; dataDirDefault?: string } = {}): Promise<{ out: string; data: Prepared; best: number }> {
  await init();
  const rawCfg = await loadConfig(a.str('config'), a.configOverrides());
  const out = a.str('out');
  await Deno.mkdir(out, { recursive: true });
  let initial: Weights | undefined;
  let tok: Tokenizer | undefined;
  const initPath = a.str('init', 'optional');
  if (initPath !== undefined) {
    // A micar checkpoint, or the authors' .pth with --vocab (its config: --config, the training one).
    const m = await readModel(initPath, { vocab: a.str('vocab', 'optional'), config: rawCfg });
    initial = m.weights;
    tok = m.tokenizer;
  }
  const data = await prepareData(a, rawCfg, tok, opts.dataDirDefault);
  const seed = a.num('seed', 'optional') ?? data.cfg.seed ?? 1;
  const backbone = a.str('backbone-weights', 'optional');
  if (backbone !== undefined) {
    // ImageNet-pretrained torchvision ResNet weights (.pth or .safetensors) for vis_enc only.
    const bytes = await readFileBytes(backbone);
    const sd = backbone.endsWith('.safetensors') ? readSafetensors(bytes, backbone).tensors : readPth(bytes, backbone).stateDict;
    initial = initial ?? Weights.init(data.cfg, seed);
    console.log(`backbone: ${loadBackboneWeights(initial, sd, backbone)} tensors from ${backbone}`);
  }
  console.log(`data: ${data.train.length} train / ${data.val.length} val / ${data.test.length} test, vocabulary ${data.tok.vocabSize}; ` +
    `model ${data.cfg.backbone} d_model ${data.cfg.d_model}, ${data.cfg.num_layers}+${data.cfg.num_layers} layers, ${data.cfg.num_experts} experts (k ${data.cfg.k}, ${data.cfg.moe_mode}), image ${data.cfg.image_size}px`);
  const res = await train({
    cfg: data.cfg, tokenizer: data.tok, train: data.train, val: data.val, outDir: out,
    seed, resume: a.flag('resume'),
    checkpointEvery: a.num('checkpoint-every'),
    maxSteps: a.num('max-steps', 'optional'),
    timeBudgetS: opts.timeBudgetS ?? a.num('time-budget', 'optional'),
    valLimit: a.num('val-limit', 'optional'),
    initial,
    precision: trainPrecision(a.str('precision')),
  });
  await writeFileAtomic(`${out}/history.json`, new TextEncoder().encode(JSON.stringify(res.history, null, 1)));
  await writeFileAtomic(`${out}/training.html`, new TextEncoder().encode(trainingPlotHtml(res.history)));
  console.log(`checkpoints: ${out}/best.safetensors, ${out}/last.safetensors; curves: ${out}/training.html`);
  return { out, data, best: res.best };
}

const KEYS = ['bleu1', 'bleu2', 'bleu3', 'bleu4', 'meteor', 'rougeL', 'cider', 'finding_accuracy'] as const;

export function metricsTable(rows: Record<string, Partial<EvalScores> & { grounding?: number | null }>): string {
  const cols = [...KEYS, 'grounding'];
  const head = `${'model'.padEnd(20)}${cols.map((c) => c.padStart(17)).join('')}`;
  const lines = Object.entries(rows).map(([name, r]) =>
    `${name.padEnd(20)}${cols.map((c) => {
      const v = (r as Record<string, number | null | undefined>)[c];
      return (v === null || v === undefined || Number.isNaN(v) ? '—' : v.toFixed(4)).padStart(17);
    }).join('')}`);
  return [head, ...lines].join('\n');
}

export interface EvalResult {
  test: EvalScores;
  baselines: { most_frequent: EvalScores; nearest_neighbour: EvalScores };
  predictions: string[];
}

/** Scores the model's reports and the two baselines' (most frequent training report, nearest image). */
function scoreAgainstBaselines(predictions: string[], train: EvalExample[], test: EvalExample[]): EvalResult {
  const mf = mostFrequentReport(train);
  if (nearestNeighbourSpace(train, test) === 'thumbnails') console.log('nearest-neighbour baseline: compares 16×16 thumbnails (the splits are decoded per batch)');
  return {
    test: scorePredictions(predictions, test),
    baselines: {
      most_frequent: scorePredictions(test.map(() => mf), test),
      nearest_neighbour: scorePredictions(nearestNeighbourReports(train, test), test),
    },
    predictions,
  };
}

async function phantomOf(samples: Sample[]): Promise<PhantomSample[]> {
  const out: PhantomSample[] = [];
  for (const s of samples) {
    if (!s.meta) throw new Error(`sample ${s.id} has no findings (not a built-in dataset sample)`);
    out.push({ id: s.id, image: await loadSampleImage(s), report: s.report, modality: s.meta.modality, findings: s.meta.findings });
  }
  return out;
}

/**
 * Test-split evaluation: metrics, baselines and — on the built-in dataset, where findings and
 * their boxes are known — finding accuracy and grounding from the same traced generation.
 */
export async function evaluateTest(
  ck: { weights: import('../model/weights.ts').Weights; tokenizer: Tokenizer },
  data: { train: EvalExample[] }, test: EvalExample[], samples: Sample[],
  opts: { explainLimit?: number; explainDeadline?: number; explainMethods?: readonly ExplainMethod[]; explain?: ExplainOptions } = {},
): Promise<{ r: EvalResult; g: GroundingSummary | null; explain: ExplainEvaluation | null }> {
  if (!samples.every((s) => s.meta)) {
    return { r: scoreAgainstBaselines(await predictReports(ck.weights, ck.tokenizer, test), data.train, test), g: null, explain: null };
  }
  const phantom = await phantomOf(samples);
  const g = await evaluateGrounding(ck.weights, ck.tokenizer.tokens, phantom, { batch: 16 });
  const predictions = g.tokens.map((t) => ck.tokenizer.decode(t, { stopAtEos: true }));
  // Explanation methods scored on the first `explainLimit` test images (each costs a batched
  // forward + backward per method family, a deletion forward and the sanity model's pass).
  const limit = opts.explainLimit ?? 100;
  const explain = limit > 0 ? await evaluateExplanations(ck.weights, ck.tokenizer.tokens, phantom, g.tokens, { limit, deadline: opts.explainDeadline, methods: opts.explainMethods, explain: opts.explain }) : null;
  return { r: scoreAgainstBaselines(predictions, data.train, test), g: g.summary, explain };
}

/** Columns of predictions.csv: the authors' gen_reports.csv (actual_report, generated_report) with the image id first. */
export const PREDICTION_COLUMNS = ['image_id', 'actual_report', 'generated_report'] as const;

/**
 * Writes `predictions.csv` (one row per test image: id, the reference the metrics score against,
 * the model's report) and `metrics.json` (the model's and the baselines' scores) to `out`.
 */
export async function writeEvalOutputs(out: string, test: EvalExample[], r: EvalResult, g: GroundingSummary | null, about: Record<string, unknown> = {}, explain: ExplainEvaluation | null = null): Promise<Record<string, unknown>> {
  await Deno.mkdir(out, { recursive: true });
  const rows = test.map((e, i) => [e.id, e.report, r.predictions[i]]);
  await writeFileAtomic(joinPath(out, 'predictions.csv'), new TextEncoder().encode(writeCsv(PREDICTION_COLUMNS, rows)));
  const metrics = {
    eval: 'test', n: r.predictions.length, ...about, test: { ...r.test, grounding: g?.share ?? null, grounding_uniform: g?.uniform ?? null }, baselines: r.baselines,
    ...(explain ? { explain: explain.scores, explain_meta: { findings: explain.findings, images: explain.images, seconds: Math.round(explain.seconds * 10) / 10 } } : {}),
  };
  await writeFileAtomic(joinPath(out, 'metrics.json'), new TextEncoder().encode(JSON.stringify(metrics, null, 1) + '\n'));
  return metrics;
}

export async function evalCommand(argv: string[]): Promise<void> {
  const a = parseCommand('eval', argv);
  await init();
  const ck = await readModel(a.str('checkpoint'), { vocab: a.str('vocab', 'optional'), config: a.str('config', 'optional'), precision: parsePrecision(a.str('precision')) });
  if (ck.precision.note) console.error(ck.precision.note);
  const data = await prepareData(a, { ...ck.cfg }, ck.tokenizer);
  const list = a.str('explain-methods');
  const explainMethods = (list === 'all' ? [...EXPLAIN_METHODS] : list.split(',').map((m) => m.trim())) as ExplainMethod[];
  for (const m of explainMethods) if (!isExplainMethod(m)) throw new UsageError(`--explain-methods: unknown method "${m}"; choose from ${EXPLAIN_METHODS.join(', ')} or all`, a.verb);
  const sg = a.num('explain-smoothgrad');
  const explainOpts: ExplainOptions = {
    target: a.str('explain-target') as ExplainTarget,
    integratedGradients: { steps: a.num('explain-ig-steps'), baseline: a.str('explain-ig-baseline') as 'mean' | 'black' },
    ...(sg > 0 ? { smoothGrad: { samples: sg, sigma: a.num('explain-smoothgrad-sigma'), kind: a.str('explain-smoothgrad-kind') as SmoothGradKind } } : {}),
  };
  const { r, g, explain } = await evaluateTest(ck, data, data.test, data.testSamples, { explainLimit: a.num('explain-limit'), explainMethods, explain: explainOpts });
  console.log(metricsTable({ model: { ...r.test, grounding: g?.share ?? null }, most_frequent: r.baselines.most_frequent, nearest_neighbour: r.baselines.nearest_neighbour }));
  if (explain) console.log(explainTable(explain));
  const out = a.str('out');
  const metrics = await writeEvalOutputs(out, data.test, r, g, { checkpoint: a.str('checkpoint'), data: a.str('data') }, explain);
  console.log(`predictions: ${joinPath(out, 'predictions.csv')}; metrics: ${joinPath(out, 'metrics.json')}`);
  console.log(JSON.stringify(metrics));
}

/** The README's main job: built-in dataset → train tiny → evaluate against baselines. */
export async function mainJob(argv: string[]): Promise<void> {
  const t0 = Date.now();
  const a = parseCommand('main', argv);
  const budget = a.num('budget');
  const out = a.str('out');
  // Leave time for the final evaluation and the attention pages (about a quarter of the budget).
  const timeBudgetS = Math.max(30, budget * 0.76 - (Date.now() - t0) / 1000);
  const { data } = await trainWith(a, { timeBudgetS: Math.min(timeBudgetS, a.num('time-budget', 'optional') ?? Infinity), dataDirDefault: `${out}/data` });
  const ck = (await loadCheckpoint(`${out}/best.safetensors`))!;
  // Explanation scores stop taking new images 60 s before the budget ends (the attention pages follow).
  const { r, g, explain } = await evaluateTest(ck, data, data.test, data.testSamples, { explainLimit: a.num('explain-limit'), explainDeadline: t0 + (budget - 60) * 1000 });
  console.log(metricsTable({ 'micar (tiny)': { ...r.test, grounding: g?.share ?? null }, most_frequent: r.baselines.most_frequent, nearest_neighbour: r.baselines.nearest_neighbour }));
  if (explain) console.log(explainTable(explain));
  await writeEvalOutputs(out, data.test, r, g, { checkpoint: `${out}/best.safetensors`, data: 'phantom' }, explain);
  console.log(`predictions: ${out}/predictions.csv; metrics: ${out}/metrics.json`);
  const phantom = await phantomOf(data.testSamples.slice(0, 3));
  if (g && g.n) console.log(`grounding: ${(100 * g.share).toFixed(1)}% of the cross-attention mass falls inside the finding's box while its words are written, against ${(100 * g.uniform).toFixed(1)}% for uniform attention (${g.n} findings)`);
  else if (g) console.log('grounding: not scored (no generated report named a finding of its image)');
  // Attention maps for a few test images (PNG per word + one HTML page each).
  for (const s of phantom) {
    const ex = data.test.find((e) => e.id === s.id)!;
    const tr = await attentionForPixels(ck.weights, await pixelsOf(ex));
    const pages = attentionOutputs(tr, ck.tokenizer.tokens, ck.cfg, s.image, { title: s.id });
    await writeOutputs(pages, `${out}/attention/${s.id.replace(/\.[a-z]+$/, '')}`);
  }
  console.log(`attention maps: ${out}/attention/*/attention.html`);
  for (let i = 0; i < Math.min(3, data.test.length); i++) console.log(`  ${data.test[i].id}: "${r.predictions[i]}"\n  ${' '.repeat(data.test[i].id.length)}  truth "${data.test[i].report}"`);
  const pick = (s: EvalScores) => ({ bleu1: s.bleu1, bleu4: s.bleu4, meteor: s.meteor, rougeL: s.rougeL, cider: s.cider, finding_accuracy: s.finding_accuracy });
  console.log(JSON.stringify({
    job: 'main',
    wall_s: Math.round((Date.now() - t0) / 100) / 10,
    test: { ...pick(r.test), grounding: g?.share ?? null, grounding_uniform: g?.uniform ?? null },
    baselines: { most_frequent: { ...pick(r.baselines.most_frequent), grounding: null }, nearest_neighbour: { ...pick(r.baselines.nearest_neighbour), grounding: null } },
    ...(explain ? { explain: explain.scores, explain_meta: { findings: explain.findings, images: explain.images, seconds: Math.round(explain.seconds * 10) / 10 } } : {}),
  }));
}

/** --precision for training: f16 = mixed precision (f32 master weights, f16 compute, loss scaling). */
function trainPrecision(v: string): 'f32' | 'f16' {
  const r = resolvePrecision(parsePrecision(v, '--precision'));
  if (r.note) console.error(r.note);
  if (r.dtype === 'f16') console.log('precision f16: mixed-precision training (f32 master weights and AdamW state, f16 forward/backward, dynamic loss scaling)');
  return r.dtype;
}
