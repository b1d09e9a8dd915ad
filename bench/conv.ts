// Conv benchmark: micar conv2d (implicit GEMM) against tfjs-backend-webgpu's conv2d on the
// same device, and the adapter's FMA ceiling, for ResNet-like layers (batch 1).
// Usage: npm run bench -- conv [--quick]
import { fromData } from '../src/graph/runtime.ts';
import { conv2d } from '../src/graph/ops/conv.ts';
import { gflops, initTfjs, peakGflops, printHeader, printJson, printTable, setup, timeRealize, timeRealizeGpu, timeTfjs } from './harness.ts';

interface Case { name: string; C: number; O: number; H: number; K: number; pad: number }

const CASES: Case[] = [
  { name: '3x3 256->256 28x28', C: 256, O: 256, H: 28, K: 3, pad: 1 },
  { name: '3x3 64->64 56x56', C: 64, O: 64, H: 56, K: 3, pad: 1 },
  { name: '1x1 256->256 28x28', C: 256, O: 256, H: 28, K: 1, pad: 0 },
  { name: '1x1 64->64 56x56', C: 64, O: 64, H: 56, K: 1, pad: 0 },
];

function randn(n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.random() * 2 - 1;
  return a;
}

export async function main(args: string[]): Promise<void> {
  const quick = args.includes('--quick');
  await setup();
  printHeader('conv');
  const peak = await peakGflops();
  const tf = await initTfjs();
  const opts = { warmup: 1, reps: quick ? 2 : 3, minTotalMs: quick ? 0 : 1500, maxReps: 10 };
  const rows: Record<string, string | number>[] = [];
  let flopsAll = 0, msOurs = 0, msTf = 0, msGpu = 0;
  for (const c of CASES) {
    const X = randn(c.C * c.H * c.H), W = randn(c.O * c.C * c.K * c.K).map((v) => v / Math.sqrt(c.C * c.K * c.K));
    const flops = 2 * c.H * c.H * c.O * c.C * c.K * c.K;
    const x = fromData(X, [1, c.C, c.H, c.H]), w = fromData(W, [c.O, c.C, c.K, c.K]);
    // Enough convs per submission to amortise its overhead (~40 ms of work).
    const inner = Math.max(1, Math.min(8, Math.round((0.04 * peak.gflops * 1e9) / flops)));
    const ours = await timeRealize(() => [conv2d(x, w, null, { stride: 1, padding: c.pad })], { ...opts, inner });
    // The same conv on the ceiling's clock (timestamps around each dispatch: kernel time, no
    // submission wait; Deno's wait adds ~11 ms per submission on llvmpipe, `inner` convs share it).
    const gpuMs = await timeRealizeGpu(() => [conv2d(x, w, null, { stride: 1, padding: c.pad })], { reps: quick ? 2 : 3 });
    // tfjs: NHWC input, [kh,kw,in,out] filter (its only layout); same arithmetic.
    const tx = tf.tensor4d(randn(c.H * c.H * c.C), [1, c.H, c.H, c.C]);
    const tw = tf.tensor4d(randn(c.K * c.K * c.C * c.O), [c.K, c.K, c.C, c.O]);
    const theirs = await timeTfjs(() => tf.conv2d(tx, tw, 1, c.pad === 0 ? 'valid' : 'same'), { ...opts, inner });
    tf.dispose([tx, tw]);
    flopsAll += flops;
    msOurs += ours.bestMs;
    msTf += theirs.bestMs;
    msGpu += gpuMs ?? NaN;
    rows.push({
      case: c.name, ms: ours.bestMs, gflops: gflops(flops, ours.bestMs), 'GPU ms': gpuMs ?? '-', 'GPU gflops': gpuMs ? gflops(flops, gpuMs) : '-',
      tfjs_ms: theirs.bestMs, tfjs_gflops: gflops(flops, theirs.bestMs), ratio: theirs.bestMs / ours.bestMs,
    });
  }
  printTable(rows);
  console.log(`FMA ceiling ${peak.gflops.toFixed(2)} GFLOP/s (WG ${peak.config.WG}, chains ${peak.config.CHAINS}); totals: sum of flops over sum of best times; 'ms' by wall clock to the end of the submission, as tfjs is timed; 'GPU ms' by timestamps around each dispatch, the clock the FMA ceiling is read with`);
  const g = gflops(flopsAll, msOurs), gt = gflops(flopsAll, msTf);
  const perCase = Object.fromEntries(rows.map((r) => [`${String(r.case).replace(/[^\w]+/g, '_')}_gflops`, r.gflops]));
  printJson({
    bench: 'conv', adapter: (await setup()).adapterName, ...perCase,
    gflops: g, tfjs_gflops: gt, ratio_vs_tfjs: gt > 0 ? g / gt : 0, peak_gflops: peak.gflops, fraction_of_peak: g / peak.gflops,
    gpu_gflops: Number.isFinite(msGpu) ? gflops(flopsAll, msGpu) : null, fraction_of_peak_gpu: Number.isFinite(msGpu) ? gflops(flopsAll, msGpu) / peak.gflops : null,
  });
}
