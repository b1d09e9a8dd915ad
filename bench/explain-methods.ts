// `npm run bench -- explain-methods --checkpoint C [--split val|test] [--images N] [--sanity on|off]
//    [--data-dir runs/phantom] [--by-word-kind] [--specific difference,share|off] --configs "saliency;saliency:target=logprob;integrated-gradients:steps=16,baseline=mean"`
// Scores explanation-method variants (src/viz/explain.ts options) on the built-in dataset's val
// or test split with the scores and controls of src/viz/explain-scores.ts — one run per config,
// the reports generated once (greedy) and shared. Hyper-parameters (steps, σ, baseline, target)
// are chosen on --split val and reported on --split test.
// Config: method[:key=value,…] with keys target (logit|logprob), sg (SmoothGrad samples), sigma,
// kind (mean|squared|var), seed, steps, baseline (mean|black), window and stride (occlusion, pixels).
// --specific difference,share|off (default both): each config's maps also scored made specific to
// their sentence, as `<config>/specific` and `<config>/specific-share` (explain-scores.ts
// sentenceSpecific; no extra gradient passes).
// --by-word-kind: also mass and pointing of each config's mean map over the sentence's appearance,
// location, function (and other) words, and per word in the JSON line (explain-scores.ts byWordKind).
import { dispose, fromData, init } from '../src/graph/runtime.ts';
import { readModel } from '../src/model/load.ts';
import { loadDataset, loadSampleImage } from '../src/data/datasets.ts';
import { preprocess } from '../src/data/preprocess.ts';
import { generate } from '../src/generate/decode.ts';
import type { PhantomSample } from '../src/data/phantom.ts';
import { type ExplainMethod, type ExplainOptions, isExplainMethod } from '../src/viz/explain.ts';
import { evaluateExplanations, type ExplainEvaluation, type ExplainScoreRow, type SpecificKind, specificName, WORD_KINDS } from '../src/viz/explain-scores.ts';

function arg(args: string[], name: string, def?: string): string {
  const i = args.indexOf(`--${name}`);
  if (i >= 0 && args[i + 1] !== undefined) return args[i + 1];
  if (def === undefined) throw new Error(`bench explain-methods: missing --${name}`);
  return def;
}

export function parseConfig(text: string): { label: string; method: ExplainMethod; opts: ExplainOptions } {
  const [method, rest] = text.trim().split(':');
  if (!isExplainMethod(method)) throw new Error(`bench explain-methods: unknown method "${method}" in config "${text}"`);
  const kv = new Map((rest ?? '').split(',').filter(Boolean).map((p) => p.split('=') as [string, string]));
  for (const k of kv.keys()) if (!['target', 'sg', 'sigma', 'kind', 'seed', 'steps', 'baseline', 'window', 'stride'].includes(k)) throw new Error(`bench explain-methods: unknown key "${k}" in config "${text}"`);
  const opts: ExplainOptions = {};
  if (kv.has('target')) opts.target = kv.get('target') as ExplainOptions['target'];
  if (kv.has('sg')) opts.smoothGrad = { samples: Number(kv.get('sg')), sigma: Number(kv.get('sigma') ?? '0.5'), seed: Number(kv.get('seed') ?? '1'), kind: (kv.get('kind') ?? 'mean') as 'mean' };
  if (kv.has('window') || kv.has('stride')) opts.occlusion = { ...(kv.has('window') ? { window: Number(kv.get('window')) } : {}), ...(kv.has('stride') ? { stride: Number(kv.get('stride')) } : {}) };
  if (kv.has('steps') || kv.has('baseline')) opts.integratedGradients = { steps: Number(kv.get('steps') ?? '16'), baseline: (kv.get('baseline') ?? 'mean') as 'mean' };
  return { label: text.trim(), method, opts };
}

export async function main(args: string[]): Promise<void> {
  await init();
  const { cfg, tokenizer: tok, weights: w } = await readModel(arg(args, 'checkpoint'));
  const S = cfg.image_size, n = Number(arg(args, 'images', '100')), split = arg(args, 'split', 'val');
  if (split !== 'val' && split !== 'test') throw new Error(`bench explain-methods: --split ${split} is not val or test`);
  const sanity = arg(args, 'sanity', 'on') === 'on';
  const byWordKind = args.includes('--by-word-kind');
  const specificArg = arg(args, 'specific', 'difference,share');
  const specific = (specificArg === 'off' ? [] : specificArg.split(',')) as SpecificKind[];
  const configs = arg(args, 'configs').split(';').filter((c) => c.trim()).map(parseConfig);
  const splits = await loadDataset('phantom', arg(args, 'data-dir', 'runs/phantom'), { phantom: { count: Number(arg(args, 'phantom-count', '3000')), seed: 7, size: S } });
  const picked = splits[split].slice(0, n);
  const samples: PhantomSample[] = [];
  for (const s of picked) samples.push({ id: s.id, image: await loadSampleImage(s), report: s.report, modality: s.meta!.modality, findings: s.meta!.findings });
  const t0 = performance.now();
  const tokens: number[][] = [];
  for (const s of samples) {
    const image = fromData(preprocess(s.image, { resize: S, crop: S }), [1, 3, S, S], 'f32', 'image');
    try {
      tokens.push((await generate(w, image)).tokens[0]);
    } finally {
      dispose(image);
    }
  }
  console.log(`${split}: ${samples.length} images, reports generated in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const rows: Record<string, ExplainScoreRow & { seconds: number; byKind?: NonNullable<ExplainEvaluation['byKind']>[string]; byWord?: NonNullable<ExplainEvaluation['byWord']>[string] }> = {};
  let controls: Record<string, ExplainScoreRow> = {}, findings = 0;
  const fmt = (v: number | undefined) => (v === undefined ? '—' : v.toFixed(3)).padStart(8);
  const line = (label: string, r: ExplainScoreRow, sec?: number) =>
    console.log(`${label.padEnd(58)}${[r.mass_in_box, r.pointing, r.deletion_drop, r.random_drop, r.sanity_mass_in_box, r.sanity_pointing].map(fmt).join('')}${sec === undefined ? '' : `${sec.toFixed(1).padStart(8)} s`}`);
  console.log(`${'config'.padEnd(58)}${['mass', 'point', 'del', 'rand', 's.mass', 's.point'].map((c) => c.padStart(8)).join('')}`);
  for (const c of configs) {
    const ev = await evaluateExplanations(w, tok.tokens, samples, tokens, { methods: [c.method], sanity, explain: c.opts, byWordKind, specific });
    rows[c.label] = { ...ev.scores[c.method], seconds: Math.round(ev.seconds * 10) / 10 };
    if (byWordKind) Object.assign(rows[c.label], { byKind: ev.byKind![c.method], byWord: ev.byWord![c.method] });
    controls = Object.fromEntries(['uniform', 'random', 'centre'].map((k) => [k, ev.scores[k]]));
    findings = ev.findings;
    line(c.label, ev.scores[c.method], ev.seconds);
    // The same maps made specific to their sentence (explain-scores.ts sentenceSpecific): no extra gradient passes.
    for (const k of specific) {
      const name = specificName(c.method, k), label = specificName(c.label, k);
      rows[label] = { ...ev.scores[name], seconds: 0 };
      line(label, ev.scores[name]);
    }
  }
  for (const [k, r] of Object.entries(controls)) line(k, r);
  console.log(`(${findings} findings in ${samples.length} ${split} images)`);
  if (byWordKind) {
    // mass / pointing of the mean map over the sentence's words of each kind (n: words scored)
    console.log(`\nby word kind: mass / pointing (words)`);
    console.log(`${'config'.padEnd(58)}${['sentence', ...WORD_KINDS].map((k) => k.padStart(22)).join('')}`);
    const cell = (m: number, p: number, n?: number) => (Number.isNaN(m) ? '—' : `${m.toFixed(3)} / ${p.toFixed(3)}${n === undefined ? '' : ` (${n})`}`).padStart(22);
    for (const [label, r] of Object.entries(rows)) if (r.byKind) console.log(`${label.padEnd(58)}${cell(r.mass_in_box, r.pointing)}${WORD_KINDS.map((k) => cell(r.byKind![k].mass_in_box, r.byKind![k].pointing, r.byKind![k].words)).join('')}`);
  }
  console.log(JSON.stringify({ bench: 'explain-methods', split, images: samples.length, findings, sanity, configs: rows, controls }));
}
