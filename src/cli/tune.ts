// `micar tune --config C [--batch B]`: measures the kernels of a model's shapes ahead of time (one
// training step and one evaluation forward at batch B), so later runs start from the cache; and
// the shape collection `npm run bench -- tune` shares.
import { fromData, init, read, realize } from '../graph/runtime.ts';
import { grad } from '../graph/autograd.ts';
import { misses, setRecordMisses } from '../graph/kernels/catalogue.ts';
import { cachePath, configureTuning, type TuneMode, tuneEntries, tunePending, type TuneResult, tuningMode } from '../graph/tuner.ts';
import { normaliseConfig, type MicarConfig } from '../model/config.ts';
import { readConfig } from '../model/load.ts';
import { Weights } from '../model/weights.ts';
import { forward } from '../model/micar.ts';
import type { Tensor } from '../graph/tensor.ts';
import { parseCommand } from './args.ts';

/** A config from a preset name or a JSON file, with a vocabulary size for shape-only runs. */
export async function shapeConfig(config: string): Promise<MicarConfig> {
  const { raw } = await readConfig(config);
  return normaliseConfig({ ...raw, vocab_size: (raw.vocab_size as number) || 64 });
}

/** A synthetic batch of B images and token rows for `cfg` (shape-only runs: tuning, benchmarks). */
export function syntheticBatch(cfg: MicarConfig, B: number): { image: Tensor; inputIds: Tensor; labelIds: Tensor; padMask: Int32Array } {
  const S = cfg.image_size, T = cfg.text_seq_len;
  const image = fromData(Float32Array.from({ length: B * 3 * S * S }, (_, i) => Math.sin(i * 0.37)), [B, 3, S, S]);
  const ids = fromData(Int32Array.from({ length: B * T }, (_, i) => 4 + ((i * 7) % (cfg.vocab_size - 4))), [B, T], 'i32');
  return { image, inputIds: ids, labelIds: ids, padMask: new Int32Array(B * T).fill(1) };
}

/** Runs one training step (forward + backward) and one evaluation forward of `cfg` at batch B on synthetic data. */
export async function runModelShapes(cfg: MicarConfig, B: number): Promise<void> {
  const w = Weights.init(cfg, 1);
  const { vision, other } = w.trainable();
  const batch = syntheticBatch(cfg, B);
  const out = forward(w, batch, { training: true, seed: 1 });
  const ps: Tensor[] = [...vision, ...other];
  const g = grad(out.loss, ps);
  await realize([out.loss, ...g.filter((x): x is Tensor => !!x)]);
  const ev = forward(w, batch, { training: false, seed: 1 });
  await read(ev.loss);
}

/**
 * The geometry classes a model meets (nothing is measured): `[id, geometry]` per tunable class.
 */
export async function modelGeometries(cfg: MicarConfig, B: number): Promise<{ id: string; family: string; geometry: unknown }[]> {
  const mode = tuningMode();
  await configureTuning('off');
  misses.clear();
  setRecordMisses(true);
  try {
    await runModelShapes(cfg, B);
    return [...misses].map(([id, m]) => ({ id, family: m.family.name, geometry: m.geometry }));
  } finally {
    misses.clear();
    await configureTuning(mode);
  }
}

export async function tuneCommand(args: string[]): Promise<void> {
  const p = parseCommand('tune', args);
  const r = await init();
  const mode = p.str('mode') as TuneMode;
  const budgetS = p.num('budget');
  const cfg = await shapeConfig(p.str('config'));
  const B = p.given('batch') ? p.num('batch') : (cfg.batch_size ?? 16);
  console.log(`adapter: ${r.profile.adapterName}; tuning ${p.str('config')} at batch ${B} (${mode}, budget ${budgetS} s); cache ${cachePath()}`);
  const t0 = performance.now();
  const results: TuneResult[] = [];
  // Tuning runs after each realize: collect the results of every pass.
  await configureTuning({ mode, budgetS, log: (l) => console.log(`  ${l}`) });
  await runModelShapes(cfg, B);
  results.push(...(await tunePending(budgetS)));
  const s = (performance.now() - t0) / 1000;
  const speedups = [...tuneEntries().values()].map((e) => e.handMs / e.ms);
  const geo = speedups.length ? Math.exp(speedups.reduce((a, x) => a + Math.log(x), 0) / speedups.length) : 1;
  console.log(JSON.stringify({ tune: p.str('config'), batch: B, adapter: r.profile.adapterName, classes: tuneEntries().size, measured_now: results.length, geomean_vs_hand: +geo.toFixed(3), seconds: +s.toFixed(1), cache: cachePath() }));
}
