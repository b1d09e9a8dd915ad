// `npm run bench -- trainstep [config] [batch] [steps] [ab]`: time of one training step (forward, backward,
// AdamW, BatchNorm updates in one submission) on the local adapter, with a per-op GPU profile.
// Last line JSON: {"bench":"trainstep","config":…,"batch":…,"step_ms":…,"images_per_s":…}.
// `ab`: steps alternate between the hand-picked kernels and matmul's register kernel only (the
// choice before the WINDOW kernel), and the JSON adds both best times and their ratio. `abconv`:
// the same against convs on their direct kernels only (GEMMR/DWR on CPU adapters: no matmul kind).
// Every run also reports the CPU time of encoding a step (realize: schedule, record, bind,
// submit; the GPU's work is waited for by the read after it). `encode`: steps alternate between
// the runtime's bind group cache and none (every group made again, as before the cache), and
// the JSON adds both medians, their ratio and the groups a cached step still had to make.
import { dispose, fromData, init, lastProfile, lastStats, read, realize, runtime } from '../src/graph/runtime.ts';
import { BindGroupCache } from '../src/gpu/bindgroups.ts';
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
  const abConv = args.includes('abconv'), ab = args.includes('ab') || abConv, encodeAb = args.includes('encode');
  const steps = Math.max(ab || encodeAb ? 6 : 2, Number(args[2] ?? 4));
  const cache = r.bindGroups, noCache = new BindGroupCache(r.device, 0);
  const encodeMs: Record<'cached' | 'uncached', number[]> = { cached: [], uncached: [] };
  let createdCached = 0;
  for (let it = 0; it < steps; it++) {
    // A B B A A B B …: each arm gets odd and even steps alike (with plain alternation the odd
    // steps of a tiny run here were ~5% faster whatever ran in them: 0.94× and 1.04× for the same
    // two arms with the parity swapped).
    const base = ab && (it + (it >> 1)) % 2 === 1;
    const uncached = encodeAb && (it + (it >> 1)) % 2 === 1;
    runtime().bindGroups = uncached ? noCache : cache;
    setKernelOverrides(abConv ? { conv: base ? 'register' : undefined } : { matmul: base ? 'register' : undefined });
    const img = fromData(Float32Array.from({ length: B * 3 * S * S }, (_, i) => Math.sin(i * 0.37 + it)), [B, 3, S, S]);
    const ids = fromData(Int32Array.from({ length: B * T }, (_, i) => 4 + ((i * 7 + it) % (cfg.vocab_size - 4))), [B, T], 'i32');
    const t0 = performance.now();
    const out = forward(w, { image: img, inputIds: ids, labelIds: ids, padMask: new Int32Array(B * T).fill(1) }, { training: true, seed: it });
    const ps: Tensor[] = [...vision, ...other];
    const g = grad(out.loss, ps);
    const effects = opt.step(new Map(ps.map((p, i) => [p, g[i]])), { guard: out.loss });
    const e0 = performance.now();
    const st = await realize([out.loss], { effects: [...effects, ...out.f.bnUpdates], profile: !ab && !encodeAb && it === steps - 1 });
    const encode = performance.now() - e0;
    const loss = (await read(out.loss))[0];
    const ms = performance.now() - t0;
    // (the trainer disposes these too: a freed buffer returns to the pool now, not when collected)
    dispose(out.loss, img, ids);
    if (it > 1) {
      encodeMs[uncached ? 'uncached' : 'cached'].push(encode);
      if (!uncached) createdCached = Math.max(createdCached, lastStats.bindGroupsCreated);
    }
    if (!uncached && (it > 1 || (!ab && it > 0))) (base ? baseline : times).push(ms);
    console.log(`step ${it}${base ? (abConv ? ' (convs direct only)' : ' (matmul register only)') : ''}${uncached ? ' (no bind group cache)' : ''}: ${ms.toFixed(0)} ms, encoding ${encode.toFixed(0)} ms, loss ${loss.toFixed(4)}, ${st.dispatches} dispatches, ${st.bindGroupsCreated} bind groups made, peak ${(st.peakBytes / 2 ** 20).toFixed(1)} MiB`);
  }
  if (lastProfile) {
    const rows = [...lastProfile].sort((a, b) => b[1].ms - a[1].ms);
    const total = rows.reduce((s, x) => s + x[1].ms, 0);
    console.log(`GPU time by op (last step, timestamp queries): total ${total.toFixed(0)} ms`);
    for (const [k, v] of rows.slice(0, 15)) console.log(`  ${k.padEnd(36)} ${v.ms.toFixed(1).padStart(8)} ms  ${(100 * v.ms / total).toFixed(1).padStart(5)}%  ${v.count}×`);
  }
  const best = Math.min(...times);
  setKernelOverrides({ matmul: undefined, conv: undefined });
  runtime().bindGroups = cache;
  const median = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1];
  const enc = encodeMs.cached.length ? { encode_ms: +median(encodeMs.cached).toFixed(1) } : {};
  const encAb = encodeMs.uncached.length ? {
    encode_ms_uncached: +median(encodeMs.uncached).toFixed(1),
    encode_speedup_cache: +(median(encodeMs.uncached) / median(encodeMs.cached)).toFixed(3),
    bind_groups_made_cached_step: createdCached,
  } : {};
  const ratio = !baseline.length ? {}
    : abConv ? { step_ms_convs_direct: Math.round(Math.min(...baseline)), speedup_vs_convs_direct: +(Math.min(...baseline) / best).toFixed(3) }
    : { step_ms_matmul_register: Math.round(Math.min(...baseline)), speedup_vs_matmul_register: +(Math.min(...baseline) / best).toFixed(3) };
  console.log(JSON.stringify({ bench: 'trainstep', config: name, batch: B, step_ms: Math.round(best), images_per_s: +(B / (best / 1000)).toFixed(2), ...ratio, ...enc, ...encAb }));
}
