// `micar eval` writes predictions.csv (image_id + the authors' gen_reports.csv columns
// actual_report, generated_report) and metrics.json to --out: the rows are the test split in
// order with the references the metrics score against, the generated reports are the model's
// (the greedy reports computed here directly), and metrics.json's scores are those of the CSV's
// own columns (recomputed here), for the built-in data (findings, grounding) and for the same
// folder read as plain COVCTR (no findings).
import { beforeAll, describe, expect, it } from 'vitest';
import { init } from '../src/graph/runtime.ts';
import { normaliseConfig } from '../src/model/config.ts';
import { Weights } from '../src/model/weights.ts';
import { Tokenizer } from '../src/data/tokenizer.ts';
import { loadDataset, phantomSamples } from '../src/data/datasets.ts';
import { parseCsv } from '../src/data/csv.ts';
import { checkpointBytes } from '../src/train/checkpoint.ts';
import { prepareExamples } from '../src/train/data.ts';
import { predictReports, scorePredictions } from '../src/train/evaluate.ts';
import { evalCommand, PREDICTION_COLUMNS } from '../src/cli/commands.ts';
import { rng } from './util.ts';

declare const Deno: {
  readTextFile(p: string | URL): Promise<string>;
  writeFile(p: string, b: Uint8Array): Promise<void>;
  makeTempDir(): Promise<string>;
  remove(p: string, o: { recursive: boolean }): Promise<void>;
};

const repo = new URL('..', import.meta.url);
const PHANTOM = { count: 40, seed: 7, size: 32 };
let dir = '';
let ckPath = '';
let weights: Weights;
let tok: Tokenizer;

beforeAll(async () => {
  await init();
  const R = rng('eval outputs');
  const raw = JSON.parse(await Deno.readTextFile(new URL('tests/fixtures/micro.json', repo)));
  tok = Tokenizer.build(phantomSamples(PHANTOM).map((s) => s.report), 1, 'whitespace');
  const cfg = normaliseConfig({ ...raw, vocab_size: tok.vocabSize });
  weights = Weights.init(cfg, R.int(1, 1e6));
  dir = await Deno.makeTempDir();
  ckPath = `${dir}/model.safetensors`;
  await Deno.writeFile(ckPath, await checkpointBytes(weights, null, tok, null));
});

async function readOutputs(out: string) {
  const csv = parseCsv(await Deno.readTextFile(`${out}/predictions.csv`), 'predictions.csv');
  const metrics = JSON.parse(await Deno.readTextFile(`${out}/metrics.json`));
  return { csv, metrics };
}

describe('micar eval outputs', () => {
  it('built-in data: predictions.csv is the test split with the model\'s reports; metrics.json scores that CSV', async () => {
    const out = `${dir}/eval-phantom`;
    await evalCommand(['--checkpoint', ckPath, '--data-dir', `${dir}/data`, '--phantom-count', String(PHANTOM.count), '--phantom-seed', String(PHANTOM.seed), '--phantom-size', String(PHANTOM.size), '--limit', '4', '--out', out]);
    const { csv, metrics } = await readOutputs(out);
    expect(csv.header).toEqual([...PREDICTION_COLUMNS]);
    const test = (await loadDataset('phantom', `${dir}/data`)).test.slice(0, 4);
    expect(csv.rows.map((r) => r[0])).toEqual(test.map((s) => s.id));
    expect(csv.rows.map((r) => r[1])).toEqual(test.map((s) => s.report));
    const examples = await prepareExamples(test, weights.cfg);
    const recomputed = scorePredictions(csv.rows.map((r) => r[2]), examples);
    expect(metrics.n).toBe(test.length);
    expect(metrics.data).toBe('phantom');
    for (const [k, v] of Object.entries(recomputed)) expect(metrics.test[k], k).toBe(v);
    // Grounding is scored where the generated report names a finding (a random model may name none).
    expect(metrics.test).toHaveProperty('grounding');
    expect(metrics.test.finding_accuracy).toBe(recomputed.finding_accuracy);
    expect(Object.keys(metrics.baselines)).toEqual(['most_frequent', 'nearest_neighbour']);
  });

  it('plain COVCTR folder: generated_report is the greedy report computed directly', async () => {
    const out = `${dir}/eval-covctr`;
    await evalCommand(['--checkpoint', ckPath, '--data', 'covctr', '--data-dir', `${dir}/data`, '--limit', '4', '--out', out]);
    const { csv, metrics } = await readOutputs(out);
    const test = (await loadDataset('covctr', `${dir}/data`)).test.slice(0, 4);
    const examples = await prepareExamples(test, weights.cfg);
    const direct = await predictReports(weights, tok, examples);
    expect(csv.rows.map((r) => r[0])).toEqual(test.map((s) => s.id));
    expect(csv.rows.map((r) => r[2])).toEqual(direct);
    const recomputed = scorePredictions(direct, examples);
    for (const [k, v] of Object.entries(recomputed)) expect(metrics.test[k], k).toBe(v);
    expect(metrics.test.finding_accuracy).toBeNull();
    expect(metrics.test.grounding).toBeNull();
    await Deno.remove(dir, { recursive: true });
  });
});
