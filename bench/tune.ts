// `npm run bench -- tune [budget_s] [paper_batch] [paper_image_size]`: the autotuner on this
// adapter. Tunes the tiny config's shapes (the main job's) from an empty cache and times it
// (tune_s), reloads the cache as a new run would (cached_startup_s), tunes the paper config's
// shapes (its transformer at full size; the image at paper_image_size, default 64, because a
// resnet101 step at 224 px takes minutes on a CPU adapter), then times the
// tuned choice against today's hand-picked one for every shape class, side by side in the same
// process (10 pairs, the order alternating, best of each: one configuration's samples spread
// over ±30% on this VM).
// Last line: {"bench":"tune","adapter":…,"shapes":N,"geomean_vs_hand":…,"worst_vs_hand":…,"tune_s":…,"cached_startup_s":…}
import { init, runtime } from '../src/graph/runtime.ts';
import { chooseConfig } from '../src/graph/kernels/catalogue.ts';
import { configureTuning, resetTuning, tuneEntries, tuneGeometry, tunePending, tunableFamilies } from '../src/graph/tuner.ts';
import { modelGeometries, runModelShapes, shapeConfig } from '../src/cli/tune.ts';
import { timeTrialPair } from '../src/graph/tuner.ts';

declare const Deno: { makeTempDir(): Promise<string>; remove(p: string, o?: { recursive?: boolean }): Promise<void> };

export async function main(args: string[]): Promise<void> {
  const r = await init();
  const budgetS = Number(args[0] ?? 300);
  const paperBatch = Number(args[1] ?? 1);
  const paperImage = Number(args[2] ?? 64);
  const dir = await Deno.makeTempDir();
  console.log(`adapter: ${r.profile.adapterName}; empty tune cache in ${dir}; budget ${budgetS} s`);
  try {
    // 1. The main job's shapes (tiny config, its batch) from an empty cache.
    const tiny = await shapeConfig('tiny');
    const t0 = performance.now();
    await configureTuning({ mode: 'cached', cacheDir: dir, budgetS, log: (l) => console.log(`  ${l}`) });
    await runModelShapes(tiny, tiny.batch_size ?? 16);
    await tunePending();
    const tuneS = (performance.now() - t0) / 1000;
    const tinyClasses = tuneEntries().size;

    // 2. A new run: load the cache and meet every class again without measuring.
    const geoms = await modelGeometries(tiny, tiny.batch_size ?? 16);
    resetTuning();
    const t1 = performance.now();
    await configureTuning({ mode: 'cached', cacheDir: dir });
    const fams = new Map(tunableFamilies().map((t) => [t.family.name, t.family]));
    for (const g of geoms) chooseConfig(fams.get(g.family)!, g.geometry, runtime().profile);
    const measuredAgain = await tunePending();
    const cachedS = (performance.now() - t1) / 1000;
    if (measuredAgain.length) console.log(`  warning: ${measuredAgain.length} classes were measured again from a full cache`);

    // 3. The paper config's shapes.
    const paper = { ...(await shapeConfig('paper')), image_size: paperImage };
    const paperGeoms = await modelGeometries(paper, paperBatch);
    const paperDeadline = performance.now() + budgetS * 1000;
    for (const g of paperGeoms) {
      if (tuneEntries().has(g.id)) continue;
      if (performance.now() > paperDeadline) {
        console.log(`  paper: budget spent before ${g.id}`);
        break;
      }
      const res = await tuneGeometry(fams.get(g.family)!, g.geometry, paperDeadline);
      if (res) console.log(`  tune ${res.id}: ${res.entry.config} vs hand ${res.entry.hand} (${res.seconds.toFixed(1)} s)`);
      if (res) (await import('../src/graph/tuner.ts')).adoptResult(res);
    }

    // 4. Side by side: tuned vs hand-picked, every class.
    const rows: { id: string; hand: string; tuned: string; handMs: number; tunedMs: number; ratio: number }[] = [];
    for (const [id, e] of tuneEntries()) {
      const fam = fams.get(id.slice(0, id.indexOf('/')))!;
      if (e.config === e.hand) {
        rows.push({ id, hand: e.hand, tuned: e.config, handMs: e.handMs, tunedMs: e.handMs, ratio: 1 });
        continue;
      }
      const { aMs, bMs } = await timeTrialPair(fam, e.geometry, fam.parseConfig(e.hand), fam.parseConfig(e.config), 10);
      rows.push({ id, hand: e.hand, tuned: e.config, handMs: aMs, tunedMs: bMs, ratio: aMs / bMs });
    }
    console.log(`${'class'.padEnd(30)} ${'hand'.padEnd(22)} ${'tuned'.padEnd(22)} hand ms  tuned ms  speedup`);
    for (const x of rows) console.log(`${x.id.padEnd(30)} ${x.hand.padEnd(22)} ${x.tuned.padEnd(22)} ${x.handMs.toFixed(3).padStart(7)} ${x.tunedMs.toFixed(3).padStart(9)} ${x.ratio.toFixed(2).padStart(8)}`);
    const geo = Math.exp(rows.reduce((a, x) => a + Math.log(x.ratio), 0) / Math.max(1, rows.length));
    const worst = Math.min(...rows.map((x) => x.ratio));
    console.log(`tiny: ${tinyClasses} classes tuned in ${tuneS.toFixed(1)} s; paper (batch ${paperBatch}, ${paperImage} px) adds ${rows.length - tinyClasses}`);
    console.log(JSON.stringify({ bench: 'tune', adapter: r.profile.adapterName, shapes: rows.length, geomean_vs_hand: +geo.toFixed(3), worst_vs_hand: +worst.toFixed(3), tune_s: +tuneS.toFixed(1), cached_startup_s: +cachedS.toFixed(3) }));
  } finally {
    await configureTuning('off');
    await Deno.remove(dir, { recursive: true });
  }
}
