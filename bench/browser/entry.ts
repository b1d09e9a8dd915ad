// Entry of the browser bench page (bench/browser-tune.ts drives it through puppeteer): one tiny
// training step (forward + backward at the preset's batch) and one greedy report, with the
// hand-picked kernels, with the kernels the tuner chose on this adapter, and with the fixed
// choice this adapter had before the accumulator limit (conv GEMM4 and MoE tiles, forced through
// the kernel override map), timed in alternating rounds in the same page (best of each).
import { dispose, init, read, realize } from '../../src/graph/runtime.ts';
import { syntheticBatch } from '../../src/cli/tune.ts';
import { grad } from '../../src/graph/autograd.ts';
import { configureTuning, tuneEntries, tunePending } from '../../src/graph/tuner.ts';
import { generate } from '../../src/generate/decode.ts';
import { forward } from '../../src/model/micar.ts';
import { normaliseConfig } from '../../src/model/config.ts';
import { presetConfig } from '../../src/model/presets.ts';
import { Weights } from '../../src/model/weights.ts';
import type { Tensor } from '../../src/graph/tensor.ts';
import { clearKernelOverrides, setKernelOverrides } from '../../src/graph/kernels/overrides.ts';

export interface BrowserTuneResult {
  adapter: string;
  batch: number;
  step_ms_before: number;
  report_ms_before: number;
  step_ms_hand: number;
  step_ms_tuned: number;
  report_ms_hand: number;
  report_ms_tuned: number;
  tune_s: number;
  classes: number;
  switched: string[];
}

declare global {
  interface Window {
    micarBench?: { run(budgetS: number, pairs: number): Promise<BrowserTuneResult>; progress: string };
  }
}

const status = (s: string) => {
  document.getElementById('status')!.textContent = s;
  window.micarBench!.progress = s;
};

async function run(budgetS: number, pairs: number): Promise<BrowserTuneResult> {
  const r = await init();
  const cfg = normaliseConfig({ ...presetConfig('tiny'), vocab_size: 64 }, 'preset tiny');
  const B = cfg.batch_size ?? 16;
  const w = Weights.init(cfg, 1);
  const { vision, other } = w.trainable();
  const batch = syntheticBatch(cfg, B), one = syntheticBatch(cfg, 1).image;
  const step = async () => {
    const t0 = performance.now();
    const out = forward(w, batch, { training: true, seed: 1 });
    const g = grad(out.loss, [...vision, ...other]).filter((x): x is Tensor => !!x);
    await realize([out.loss, ...g]);
    await read(out.loss); // realize only submits: wait for the step's results
    dispose(out.loss, ...g);
    return performance.now() - t0;
  };
  // Greedy to the full length (no early stop: both runs decode the same number of steps).
  const report = async () => {
    const t0 = performance.now();
    await generate(w, one, { stopAtEos: false });
    return performance.now() - t0;
  };

  // The fixed choice before the accumulator limit (src/gpu/profile.ts registerBlockLimit).
  const before = { conv: 'gemm4', moe: 'tiled' } as const;
  status('the earlier fixed choice: warm-up (compiling)');
  await configureTuning('off');
  setKernelOverrides(before);
  await step();
  await report();
  clearKernelOverrides();
  status('hand-picked kernels: warm-up (compiling)');
  await step();
  await report();
  status('tuning this adapter');
  const t0 = performance.now();
  await configureTuning({ mode: 'cached', budgetS, log: (l) => console.log(l) });
  await step();
  await tunePending();
  await report();
  await tunePending();
  const tuneS = (performance.now() - t0) / 1000;
  await step(); // compile the tuned choices outside the timed runs
  await report();
  let stepHand = Infinity, stepTuned = Infinity, repHand = Infinity, repTuned = Infinity, stepBefore = Infinity, repBefore = Infinity;
  for (let p = 0; p < pairs; p++) {
    status(`timing round ${p + 1} of ${pairs}`);
    await configureTuning('off');
    setKernelOverrides(before);
    stepBefore = Math.min(stepBefore, await step());
    repBefore = Math.min(repBefore, await report());
    clearKernelOverrides();
    stepHand = Math.min(stepHand, await step());
    repHand = Math.min(repHand, await report());
    await configureTuning({ mode: 'cached' });
    stepTuned = Math.min(stepTuned, await step());
    repTuned = Math.min(repTuned, await report());
  }
  const entries = [...tuneEntries()];
  await configureTuning('off');
  status('done');
  return {
    adapter: r.profile.adapterName, batch: B,
    step_ms_before: stepBefore, report_ms_before: repBefore,
    step_ms_hand: stepHand, step_ms_tuned: stepTuned, report_ms_hand: repHand, report_ms_tuned: repTuned,
    tune_s: tuneS, classes: entries.length,
    switched: entries.filter(([, e]) => e.config !== e.hand).map(([id, e]) => `${id}: ${e.hand} -> ${e.config} (${(e.handMs / e.ms).toFixed(2)}x)`),
  };
}

window.micarBench = { run, progress: 'ready' };
document.getElementById('status')!.textContent = `ready: WebGPU ${'gpu' in navigator ? 'present' : 'missing'}`;
