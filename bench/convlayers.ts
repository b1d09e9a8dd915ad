// `npm run bench -- convlayers [batch]`: GPU time of the forward, dX and dW of every conv in the
// tiny config's ResNet10 + FPN (48×48), per layer, from timestamp queries (best of 3 runs).
// Last line JSON: {"bench":"convlayers","fwd_ms":…,"dx_ms":…,"dw_ms":…,"total_ms":…}.
import { setKernelOverrides } from '../src/graph/kernels/overrides.ts';
import { fromData, init, lastProfile, realize } from '../src/graph/runtime.ts';
import { grad } from '../src/graph/autograd.ts';
import { conv2d } from '../src/graph/ops/conv.ts';

// [C, O, H, K, stride, pad, needs dX]
const LAYERS: [number, number, number, number, number, number, boolean][] = [
  [3, 64, 48, 7, 2, 3, false],
  [64, 64, 12, 3, 1, 1, true], [64, 64, 12, 3, 1, 1, true],
  [64, 128, 12, 3, 2, 1, true], [128, 128, 6, 3, 1, 1, true], [64, 128, 12, 1, 2, 0, true],
  [128, 256, 6, 3, 2, 1, true], [256, 256, 3, 3, 1, 1, true], [128, 256, 6, 1, 2, 0, true],
  [256, 512, 3, 3, 2, 1, true], [512, 512, 2, 3, 1, 1, true], [256, 512, 3, 1, 2, 0, true],
  [512, 64, 2, 1, 1, 0, true], [256, 64, 3, 1, 1, 0, true], [128, 64, 6, 1, 1, 0, true], [64, 64, 12, 1, 1, 0, true],
  [64, 64, 12, 3, 1, 1, true],
];

export async function main(args: string[]): Promise<void> {
  await init();
  const B = Number(args.find((a) => /^\d+$/.test(a)) ?? 16);
  // --compare: alternate the default kernels with the GPU-style ones (GEMM4, DW4) in the same process.
  const compare = args.includes('--compare');
  const rnd = (n: number) => Float32Array.from({ length: n }, () => Math.random() * 2 - 1);
  let tf = 0, tx = 0, tw = 0;
  for (const [C, O, H, K, s, p, dx] of LAYERS) {
    const OH = Math.floor((H + 2 * p - K) / s) + 1;
    const best = { fwd: Infinity, dx: Infinity, dw: Infinity };
    const other = { fwd: Infinity, dx: Infinity, dw: Infinity };
    for (let r = 0; r < (compare ? 6 : 3); r++) {
      const alt = compare && r % 2 === 1;
      setKernelOverrides({ conv: alt ? 'gemm4' : undefined });
      const x = fromData(rnd(B * C * H * H), [B, C, H, H]);
      x.requiresGrad = dx;
      const w = fromData(rnd(O * C * K * K), [O, C, K, K]);
      w.requiresGrad = true;
      const y = conv2d(x, w, null, { stride: s, padding: p });
      const gy = fromData(rnd(B * O * OH * OH), [B, O, OH, OH]);
      const g = grad(y, dx ? [x, w] : [w], gy).filter((t) => t !== null);
      await realize([y, ...g], { profile: true });
      const pr = lastProfile!;
      const ms = (k: string) => [...pr].filter(([n]) => n.startsWith(k + '/')).reduce((a, [, v]) => a + v.ms, 0);
      if (alt) {
        other.fwd = Math.min(other.fwd, ms('conv2d'));
        other.dx = Math.min(other.dx, ms('conv2d_grad_input'));
        other.dw = Math.min(other.dw, ms('conv2d_grad_weight'));
        continue;
      }
      best.fwd = Math.min(best.fwd, ms('conv2d'));
      best.dx = Math.min(best.dx, ms('conv2d_grad_input'));
      best.dw = Math.min(best.dw, ms('conv2d_grad_weight'));
    }
    const flops = 2 * B * OH * OH * O * C * K * K / 1e6;
    tf += best.fwd; tx += best.dx; tw += best.dw;
    console.log(`${C}->${O} ${H}px k${K} s${s}: fwd ${best.fwd.toFixed(1)} ms (${(flops / best.fwd).toFixed(1)} GF/s), dX ${best.dx.toFixed(1)} ms, dW ${best.dw.toFixed(1)} ms (${(flops / best.dw).toFixed(1)} GF/s)${compare ? `; GEMM4 fwd ${other.fwd.toFixed(1)} dX ${other.dx.toFixed(1)} DW4 ${other.dw.toFixed(1)}` : ''}`);
  }
  console.log(JSON.stringify({ bench: 'convlayers', batch: B, fwd_ms: +tf.toFixed(1), dx_ms: +tx.toFixed(1), dw_ms: +tw.toFixed(1), total_ms: +(tf + tx + tw).toFixed(1) }));
}
