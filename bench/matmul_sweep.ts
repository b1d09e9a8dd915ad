// `npm run bench -- matmul_sweep <n> '<[[WG,RM,RN],…]>' [rounds]`: tunes the REGISTER matmul
// block on this adapter. Compiles each block once, then times them in alternating rounds
// (best of all rounds: the machine may be shared) and reports GFLOP/s and the fraction of the
// FMA ceiling. Example: npm run bench -- matmul_sweep 1024 '[[8,8,16],[8,16,16]]' 3
import { setKernelOverrides } from '../src/graph/kernels/overrides.ts';
import { setup, timeRealize, gflops, peakGflops } from './harness.ts';
import { fromData, realize } from '../src/graph/runtime.ts';
import { matmul } from '../src/graph/ops/matmul.ts';
export async function main(args: string[]): Promise<void> {
  const env = await setup();
  const n = Number(args[0] ?? 1024);
  const configs = JSON.parse(args[1]);
  const rounds = Number(args[2] ?? 4);
  const data = new Float32Array(n * n).map(() => Math.random());
  const a = fromData(data, [n, n]), b = fromData(data, [n, n]);
  const use = (c: [number, number, number]) => {
    setKernelOverrides({ matmulRegisterBlock: { WG: c[0], RM: c[1], RN: c[2] } });
  };
  for (const c of configs) { use(c); const t0 = performance.now(); await realize([matmul(a, b)]); await env.device.queue.onSubmittedWorkDone(); console.log(`compiled ${JSON.stringify(c)} in ${(performance.now() - t0).toFixed(0)} ms`); }
  const best = configs.map(() => Infinity);
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < configs.length; i++) {
      use(configs[i]);
      const t = await timeRealize(() => [matmul(a, b)], { reps: 2, warmup: 0 });
      best[i] = Math.min(best[i], t.bestMs);
    }
  }
  const peak = await peakGflops({ targetMs: 100, reps: 2 });
  for (let i = 0; i < configs.length; i++) console.log(`${JSON.stringify(configs[i])}: ${gflops(2 * n ** 3, best[i]).toFixed(2)} GFLOP/s (${(gflops(2 * n ** 3, best[i]) / peak.gflops).toFixed(3)} of peak ${peak.gflops.toFixed(1)})`);
}
