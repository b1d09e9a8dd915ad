// `npm run bench -- trainstep [config] [batch] [steps] [ab]`: time of one training step (forward, backward,
// AdamW, BatchNorm updates in one submission) on the local adapter, with a per-op GPU profile.
// Last line JSON: {"bench":"trainstep","config":…,"batch":…,"step_ms":…,"images_per_s":…}.
// `ab`: steps alternate between the hand-picked kernels and matmul's register kernel only (the
// choice before the WINDOW kernel), and the JSON adds both best times and their ratio.
import { fromData, init, lastProfile, read, realize } from '../src/graph/runtime.ts';
import { setKernelOverrides } from '../src/graph/kernels/overrides.ts';
import { grad } from '../src/graph/autograd.ts';
import { AdamW } from '../src/graph/ops/optim.ts';
import { normaliseConfig } from '../src/model/config.ts';
import { Weights } from '../src/model/weights.ts';
import { forward } from '../src/model/micar.ts';
import type { Tensor } from '../src/graph/tensor.ts';

declare const Deno: { readTextFile(p: URL): Promise<string> };

export async function main(args: string[]): Promise<void> {
  const r = await init();
  const name = args[0] ?? 'tiny';
  const raw = JSON.parse(await Deno.readTextFile(new URL(`../configs/${name}.json`, import.meta.url)));
  const B = Number(args[1] ?? raw.batch_size ?? 16);
  const cfg = normaliseConfig({ ...raw, vocab_size: raw.vocab_size || 64 });
  const S = cfg.image_size, T = cfg.text_seq_len;
  const w = Weights.init(cfg, 1);
  const { vision, other } = w.trainable();
  const opt = new AdamW([{ params: vision, lr: 1e-4 }, { params: other, lr: 1e-4 }], { betas: [0.9, 0.999], eps: 1e-8, weightDecay: 5e-5, amsgrad: true });
  console.log(`adapter: ${r.gpu.adapterName}; config ${name}: ${cfg.backbone}, ${S}px, batch ${B}, T ${T}`);
  const times: number[] = [], baseline: number[] = [];
  const ab = args.includes('ab');
  const steps = Math.max(ab ? 6 : 2, Number(args[2] ?? 4));
  for (let it = 0; it < steps; it++) {
    const base = ab && it % 2 === 1;
    setKernelOverrides({ matmul: base ? 'register' : undefined });
    const img = fromData(Float32Array.from({ length: B * 3 * S * S }, (_, i) => Math.sin(i * 0.37 + it)), [B, 3, S, S]);
    const ids = fromData(Int32Array.from({ length: B * T }, (_, i) => 4 + ((i * 7 + it) % (cfg.vocab_size - 4))), [B, T], 'i32');
    const t0 = performance.now();
    const out = forward(w, { image: img, inputIds: ids, labelIds: ids, padMask: new Int32Array(B * T).fill(1) }, { training: true, seed: it });
    const ps: Tensor[] = [...vision, ...other];
    const g = grad(out.loss, ps);
    const effects = opt.step(new Map(ps.map((p, i) => [p, g[i]])), { guard: out.loss });
    const st = await realize([out.loss], { effects: [...effects, ...out.f.bnUpdates], profile: !ab && it === steps - 1 });
    const loss = (await read(out.loss))[0];
    const ms = performance.now() - t0;
    if (it > 1 || (!ab && it > 0)) (base ? baseline : times).push(ms);
    console.log(`step ${it}${base ? ' (matmul register only)' : ''}: ${ms.toFixed(0)} ms, loss ${loss.toFixed(4)}, ${st.dispatches} dispatches, peak ${(st.peakBytes / 2 ** 20).toFixed(1)} MiB`);
  }
  if (lastProfile) {
    const rows = [...lastProfile].sort((a, b) => b[1].ms - a[1].ms);
    const total = rows.reduce((s, x) => s + x[1].ms, 0);
    console.log(`GPU time by op (last step, timestamp queries): total ${total.toFixed(0)} ms`);
    for (const [k, v] of rows.slice(0, 15)) console.log(`  ${k.padEnd(36)} ${v.ms.toFixed(1).padStart(8)} ms  ${(100 * v.ms / total).toFixed(1).padStart(5)}%  ${v.count}×`);
  }
  const best = Math.min(...times);
  setKernelOverrides({ matmul: undefined });
  const ratio = baseline.length ? { step_ms_matmul_register: Math.round(Math.min(...baseline)), speedup_vs_matmul_register: +(Math.min(...baseline) / best).toFixed(3) } : {};
  console.log(JSON.stringify({ bench: 'trainstep', config: name, batch: B, step_ms: Math.round(best), images_per_s: +(B / (best / 1000)).toFixed(2), ...ratio }));
}
