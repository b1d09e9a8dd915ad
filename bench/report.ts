// End-to-end report benchmark on the whole paper config (resnet101, one 224×224 image,
// beam 3, 80 tokens): seconds per report split into image encoding (backbone + FPN +
// projection + encoder + each decoder layer's cross K/V) and decoding, and the encoder's
// arithmetic rate against the adapter's measured FMA ceiling.
//
// Weights: the golden paper case, generated (not committed, 314 MB) with
//   apt-get install -y python3-torch python3-torchvision   # if /usr/bin/python3 lacks them
//   /usr/bin/python3 ../shared/golden/gen.py --case paper --weights-only --out /tmp/paperw
// Usage: npm run bench -- report [weights.safetensors] [--authors[=literal|gather]]
//   (weights also from MICAR_PAPER_WEIGHTS; default /tmp/paperw/paper/weights.safetensors;
//   config ../shared/golden/paper/config.json). --authors also times the authors' PyTorch
//   model on the same image size, beam and length right after (bench/authors_report.py; needs
//   /usr/bin/python3 with torch; their original MoE runs every expert on every token and the
//   whole prefix is recomputed each step, so this takes minutes) and prints the ratio.
import { dispose, fromData, init, sync } from '../src/graph/runtime.ts';
import type { Tensor } from '../src/graph/tensor.ts';
import { readSafetensors } from '../src/io/safetensors.ts';
import { backboneLayout, type MicarConfig, normaliseConfig } from '../src/model/config.ts';
import { Weights } from '../src/model/weights.ts';
import { CachedDecoder } from '../src/generate/generator.ts';
import { beamSearch } from '../src/generate/decode.ts';
import { now, peakGflops, printHeader, printJson, setup } from './harness.ts';

declare const Deno: {
  Command: new (cmd: string, o: { args: string[]; env?: Record<string, string>; stdout?: 'piped'; stderr?: 'piped' }) => {
    output(): Promise<{ code: number; stdout: Uint8Array; stderr: Uint8Array }>;
  };
  readFileSync(p: string | URL): Uint8Array;
  readTextFileSync(p: string | URL): string;
  statSync(p: string): unknown;
  env: { get(k: string): string | undefined };
  exit(code: number): never;
};

/** Multiply-adds of encoding one image (convolutions and matmuls; norms and elementwise ops left out). */
export function encodeMacs(cfg: MicarConfig): number {
  const S = cfg.image_size;
  const { bottleneck, blocks } = backboneLayout(cfg.backbone);
  let macs = 0;
  const conv = (hw: number, cin: number, cout: number, k: number) => (macs += hw * hw * cin * cout * k * k);
  let hw = S / 2;
  conv(hw, 3, 64, 7); // stem
  hw /= 2; // maxpool
  let cin = 64;
  const widths = [64, 128, 256, 512];
  const stageOut: { hw: number; c: number }[] = [];
  blocks.forEach((n, s) => {
    const w = widths[s], out = bottleneck ? w * 4 : w;
    for (let b = 0; b < n; b++) {
      const stride = b === 0 && s > 0 ? 2 : 1;
      const ohw = hw / stride;
      if (bottleneck) {
        conv(hw, cin, w, 1);
        conv(ohw, w, w, 3);
        conv(ohw, w, out, 1);
      } else {
        conv(ohw, cin, w, 3);
        conv(ohw, w, out, 3);
      }
      if (b === 0 && (stride !== 1 || cin !== out)) conv(ohw, cin, out, 1);
      hw = ohw;
      cin = out;
    }
    stageOut.push({ hw, c: cin });
  });
  for (const st of stageOut) conv(st.hw, st.c, cfg.d_v, 1); // FPN laterals
  conv(stageOut[0].hw, cfg.d_v, cfg.d_v, 3); // fused 3×3 at C2's size
  const N = 49, d = cfg.d_model, dl = cfg.d_latent, dk = d / cfg.num_heads;
  macs += N * cfg.d_v * d; // proj
  for (let l = 0; l < cfg.num_layers; l++) {
    macs += N * (d * 3 * dk + 3 * dk * 3 * dl) + 2 * N * N * dl + N * dl * d; // MHLA
    macs += 3 * N * d * cfg.d_ff; // FFN
  }
  for (let l = 0; l < cfg.num_layers; l++) macs += N * (d * 2 * dk + 2 * dk * 2 * dl) + 2 * d * d; // cross K/V + global vector
  return macs;
}

/** The authors' PyTorch timings (bench/authors_report.py), or null with the reason printed. */
async function authorsTimings(weights: string, impl: string): Promise<Record<string, number | string> | null> {
  const script = new URL('./authors_report.py', import.meta.url).pathname;
  console.log(`timing the authors' PyTorch model (moe ${impl}, 2 threads, OPENBLAS_NUM_THREADS=1); this takes minutes …`);
  let out;
  try {
    out = await new Deno.Command('/usr/bin/python3', { args: [script, weights, '2', impl], env: { OPENBLAS_NUM_THREADS: '1' }, stdout: 'piped', stderr: 'piped' }).output();
  } catch (e) {
    console.log(`authors' model not timed: cannot run /usr/bin/python3 (${(e as Error).message})`);
    return null;
  }
  const text = new TextDecoder().decode(out.stdout).trim().split('\n').pop() ?? '';
  if (out.code !== 0 || !text.startsWith('{')) {
    console.log(`authors' model not timed (exit ${out.code}): ${new TextDecoder().decode(out.stderr).trim().split('\n').slice(-3).join(' | ')}`);
    return null;
  }
  return JSON.parse(text);
}

export async function main(argv: string[]): Promise<void> {
  const flag = argv.find((a) => a.startsWith('--authors'));
  const authorsImpl = flag ? (flag.split('=')[1] ?? 'literal') : null;
  if (authorsImpl && !['literal', 'gather'].includes(authorsImpl)) throw new Error(`--authors=${authorsImpl}: use literal or gather`);
  const args = argv.filter((a) => !a.startsWith('--'));
  const path = args[0] ?? Deno.env.get('MICAR_PAPER_WEIGHTS') ?? '/tmp/paperw/paper/weights.safetensors';
  try {
    Deno.statSync(path);
  } catch {
    console.error(`bench report: paper weights not found at ${path}. Make them (314 MB, ~25 s; do not commit) with:\n` +
      '  apt-get install -y python3-torch python3-torchvision   # only if /usr/bin/python3 cannot import them\n' +
      '  /usr/bin/python3 ../shared/golden/gen.py --case paper --weights-only --out /tmp/paperw\n' +
      'then: npm run bench -- report /tmp/paperw/paper/weights.safetensors   (or set MICAR_PAPER_WEIGHTS)');
    Deno.exit(2);
  }
  await init();
  await setup();
  printHeader('report');
  const peak = await peakGflops();
  const rawCfg = JSON.parse(Deno.readTextFileSync(new URL('../../shared/golden/paper/config.json', import.meta.url)));
  const cfg = normaliseConfig({ ...rawCfg, dropout: 0, attention_dropout: 0 }, 'golden paper config');
  const t0 = now();
  const w = Weights.fromStateDict(cfg, readSafetensors(Deno.readFileSync(path), path).tensors, path);
  await sync();
  console.log(`loaded ${path} in ${((now() - t0) / 1000).toFixed(1)} s (${cfg.backbone}, ${cfg.image_size}², d_model ${cfg.d_model}, vocab ${cfg.vocab_size})`);
  let s = 99;
  const rnd = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32) * 4 - 2;
  const S = cfg.image_size;
  const image: Tensor = fromData(Float32Array.from({ length: 3 * S * S }, rnd), [1, 3, S, S], 'f32', 'image');

  // Encoding time = CachedDecoder.encode up to the GPU finishing it.
  const proto = CachedDecoder.prototype;
  const encode = proto.encode;
  let encodeMs = 0;
  proto.encode = async function (this: CachedDecoder, img: Tensor) {
    const a = now();
    const r = await encode.call(this, img);
    await sync();
    encodeMs += now() - a;
    return r;
  };
  const beam = cfg.beam_width ?? 3, T = cfg.text_seq_len;
  // Untimed warm-up: compiles every pipeline (Mesa caches them on disk afterwards).
  const w0 = now();
  await beamSearch(w, image, { beamWidth: beam, maxLen: 2, stopAtEos: false });
  console.log(`warm-up (pipelines, pool) ${((now() - w0) / 1000).toFixed(1)} s`);
  encodeMs = 0;
  const r0 = now();
  // The authors decode all text_seq_len positions (past <eos>); so does this run.
  const hyps = await beamSearch(w, image, { beamWidth: beam, maxLen: T, stopAtEos: false });
  const totalMs = now() - r0;
  proto.encode = encode;
  if (hyps[0][0].tokens.length !== T) throw new Error(`bench report: ${hyps[0][0].tokens.length} tokens, expected ${T}`);
  dispose(image);
  const encS = encodeMs / 1000, decS = (totalMs - encodeMs) / 1000;
  const gflop = (2 * encodeMacs(cfg)) / 1e9;
  console.log(`encode ${encS.toFixed(2)} s (${gflop.toFixed(1)} GFLOP, ${(gflop / encS).toFixed(2)} GFLOP/s; FMA ceiling ${peak.gflops.toFixed(2)} GFLOP/s), ` +
    `decode ${decS.toFixed(2)} s (${T} positions, beam ${beam}, ${(T / decS).toFixed(2)} tokens/s). ` +
    'Reference given in issue 5 (authors\' PyTorch on this CPU): encode ~1.6 s, decode ~6.8 s; --authors measures it side by side. Shared machine: timings vary with load.');
  const authors = authorsImpl ? await authorsTimings(path, authorsImpl) : null;
  if (authors) {
    console.log(`authors' PyTorch (moe ${authorsImpl}): encode ${Number(authors.authors_encode_s).toFixed(2)} s, decode ${Number(authors.authors_decode_s).toFixed(2)} s ` +
      `(${authors.authors_steps} positions) → decoding ${(Number(authors.authors_decode_s) / decS).toFixed(1)}× faster here`);
  }
  printJson({
    bench: 'report', seconds: totalMs / 1000, encode_s: encS, decode_s: decS, encode_fraction_of_peak: gflop / encS / peak.gflops, encode_gflop: gflop, peak_gflops: peak.gflops,
    ...(authors ? { authors_moe_impl: authorsImpl, authors_encode_s: authors.authors_encode_s, authors_decode_s: authors.authors_decode_s, decode_speedup_vs_authors: Number(authors.authors_decode_s) / decS } : {}),
  });
}
