// `npm run bench -- browser-tune [budget_s] [pairs]`: the autotuner in headless Chromium (WebGPU
// on SwiftShader), through a bench page served by Vite (bench/browser/): one tiny training step
// (forward + backward, batch of the preset) and one greedy report, hand-picked kernels against the
// ones the tuner chose in that page, timed in alternating pairs (best of each) after tuning within
// budget_s (default 300); also against the fixed choice SwiftShader had before the accumulator
// limit (conv GEMM4, MoE tiles). The tuner's cache lives in the page's OPFS, empty in a fresh profile.
// Last line: {"bench":"browser-tune","adapter":…,"step_speedup":…,"report_speedup":…,…}
import { launchChromium, openPage, startDevServer, waitForState } from '../tests/browser-harness.ts';
import type { BrowserTuneResult } from './browser/entry.ts';

export async function main(args: string[]): Promise<void> {
  const budgetS = Number(args[0] ?? 300);
  const pairs = Number(args[1] ?? 2);
  const [{ server, url }, ch] = await Promise.all([startDevServer(), launchChromium()]);
  try {
    const { page, problems } = await openPage(ch.browser, `${url}bench/browser/index.html`, 'bench page');
    await waitForState(page, 'the bench page to load its modules (window.micarBench)', 280_000, () => !!window.micarBench);
    // Progress every 30 s (tuning on SwiftShader takes minutes); no overall timeout beyond the
    // tuning budget the page itself keeps.
    const ticker = setInterval(async () => console.log(`  page: ${await page.evaluate(() => window.micarBench?.progress).catch(() => '?')}`), 30_000);
    let r: BrowserTuneResult;
    try {
      r = await page.evaluate((b: number, p: number) => window.micarBench!.run(b, p), budgetS, pairs);
    } finally {
      clearInterval(ticker);
    }
    if (problems.length) console.log(`page problems:\n${problems.join('\n')}`);
    console.log(`adapter: ${r.adapter}; batch ${r.batch}; tuned ${r.classes} classes in ${r.tune_s.toFixed(1)} s; switched:`);
    for (const s of r.switched) console.log(`  ${s}`);
    console.log(`training step: earlier fixed choice ${r.step_ms_before.toFixed(0)} ms, hand ${r.step_ms_hand.toFixed(0)} ms, tuned ${r.step_ms_tuned.toFixed(0)} ms; greedy report: earlier ${r.report_ms_before.toFixed(0)} ms, hand ${r.report_ms_hand.toFixed(0)} ms, tuned ${r.report_ms_tuned.toFixed(0)} ms`);
    console.log(JSON.stringify({
      bench: 'browser-tune', adapter: r.adapter, classes: r.classes, switched: r.switched.length, tune_s: +r.tune_s.toFixed(1),
      step_ms_hand: Math.round(r.step_ms_hand), step_ms_tuned: Math.round(r.step_ms_tuned), step_speedup: +(r.step_ms_hand / r.step_ms_tuned).toFixed(3),
      report_ms_hand: Math.round(r.report_ms_hand), report_ms_tuned: Math.round(r.report_ms_tuned), report_speedup: +(r.report_ms_hand / r.report_ms_tuned).toFixed(3),
      step_ms_before: Math.round(r.step_ms_before), report_ms_before: Math.round(r.report_ms_before),
      step_speedup_vs_before: +(r.step_ms_before / r.step_ms_tuned).toFixed(3), report_speedup_vs_before: +(r.report_ms_before / r.report_ms_tuned).toFixed(3),
    }));
  } finally {
    await ch.close();
    await server.close();
  }
}
