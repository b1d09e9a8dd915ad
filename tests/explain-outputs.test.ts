// `micar explain` and `micar attention --method`: the files they write, the page's method
// selector (its data and, in Chromium, the drawn pixels against heatmap.ts), and shrinking of
// large maps for the page.
import { beforeAll, describe, expect, it } from 'vitest';
import { init } from '../src/graph/runtime.ts';
import { normaliseConfig } from '../src/model/config.ts';
import { Weights } from '../src/model/weights.ts';
import { Tokenizer } from '../src/data/tokenizer.ts';
import { generatePhantom } from '../src/data/phantom.ts';
import { decodeImage, encodePng } from '../src/data/images.ts';
import { preprocess } from '../src/data/preprocess.ts';
import { writeSafetensors } from '../src/io/safetensors.ts';
import { attentionCommand, explainCommand } from '../src/cli/viz.ts';
import { explainSteps, inputGeometry, minMax, overlayHeatmap, shrinkSquare, upsample } from '../src/viz/index.ts';
import { relL2, rng } from './util.ts';
import { launchChromium, openPage } from './browser-harness.ts';

declare const Deno: {
  makeTempDir(): Promise<string>;
  readDir(p: string): AsyncIterable<{ name: string }>;
  readFile(p: string): Promise<Uint8Array>;
  remove(p: string, o?: { recursive?: boolean }): Promise<void>;
};

beforeAll(async () => {
  await init();
});

const R = rng('explain-outputs');

describe('page data', () => {
  it('shrinkSquare averages over adaptive bins and leaves small maps alone', () => {
    const v = Array.from({ length: 16 }, (_, i) => i);
    expect(shrinkSquare(v, 4, 2)).toEqual({ size: 2, values: [2.5, 4.5, 10.5, 12.5] });
    expect(shrinkSquare(v, 4, 4).values).toEqual(v);
    expect(shrinkSquare(new Float64Array(25).fill(3), 5, 2)).toEqual({ size: 2, values: [3, 3, 3, 3] }); // overlapping bins
  });
});

describe('micar explain / attention --method', () => {
  it('writes per-method PNGs and a page whose method selector draws the method\'s map', async () => {
    const reports = generatePhantom({ count: 40, seed: 3, size: 16 }).map((s) => s.report);
    const tok = Tokenizer.build(reports, 1, 'whitespace');
    const cfg = normaliseConfig({
      backbone: 'resnet10', image_size: 32, d_v: 16, d_model: 32, d_latent: 48, num_heads: 4, qk_nope_dim: 4, qk_rope_dim: 8,
      d_ff: 32, num_layers: 2, num_experts: 4, k: 2, act_fn: 'silu', moe_mode: 'weighted', text_seq_len: 8, vocab_size: tok.vocabSize,
    });
    const w = Weights.init(cfg, R.int(1, 1 << 30));
    const dir = await Deno.makeTempDir();
    try {
      const { writeFileAtomic } = await import('../src/io/files.ts');
      await writeFileAtomic(`${dir}/ck.safetensors`, writeSafetensors(await w.toStateDict(), { format: 'micar-checkpoint/1', config: JSON.stringify(cfg), tokenizer: JSON.stringify(tok.toJSON()) }));
      const picture = { width: 40, height: 40, data: Uint8Array.from({ length: 40 * 40 * 3 }, () => R.int(0, 255)) };
      await writeFileAtomic(`${dir}/img.png`, encodePng(picture));
      await explainCommand(['--checkpoint', `${dir}/ck.safetensors`, '--image', `${dir}/img.png`, '--out', `${dir}/out`, '--max-len', '3', '--size', '64', '--methods', 'attention,gradcam,saliency']);
      const names: string[] = [];
      for await (const e of Deno.readDir(`${dir}/out`)) names.push(e.name);
      const html = new TextDecoder().decode(await Deno.readFile(`${dir}/out/attention.html`));
      const json = JSON.parse(/<script type="application\/json" id="micar-data">([\s\S]*?)<\/script>/.exec(html)![1]);
      const T = json.words.length;
      expect(T).toBe(3);
      for (const m of ['gradcam', 'saliency']) expect(names.filter((n) => n.endsWith(`_${m}.png`)).length, m).toBe(T);
      expect(names.filter((n) => /_(rollout|grad-attention)\.png$/.test(n))).toEqual([]);
      expect(Object.keys(json.explain.maps).sort()).toEqual(['gradcam', 'saliency']);
      expect(json.explain.initial).toBe('attention');
      // the page's maps are the API's (same tokens, same image)
      const pixels = preprocess(picture, inputGeometry(cfg));
      const tokens = JSON.parse(new TextDecoder().decode(await Deno.readFile(`${dir}/out/routing.json`))).words.map((x: string) => tok.id(x));
      const direct = await explainSteps(w, pixels, tokens, [0, 1, 2], ['gradcam', 'saliency']);
      const t = T - 1;
      expect(json.explain.maps.gradcam[t].fine.size).toBe(8); // 32 px / stride 4
      expect(relL2(json.explain.maps.gradcam[t].fine.values, direct.get('gradcam')![t].fine!.values)).toBeLessThan(1e-6);
      expect(relL2(json.explain.maps.saliency[t].fine.values, direct.get('saliency')![t].fine!.values)).toBeLessThan(1e-6);

      // attention --method gradcam: the word figures show gradcam, the page opens on it
      await attentionCommand(['--checkpoint', `${dir}/ck.safetensors`, '--image', `${dir}/img.png`, '--out', `${dir}/a`, '--max-len', '3', '--size', '64', '--method', 'gradcam']);
      const page2 = new TextDecoder().decode(await Deno.readFile(`${dir}/a/attention.html`));
      expect(JSON.parse(/id="micar-data">([\s\S]*?)<\/script>/.exec(page2)![1]).explain.initial).toBe('gradcam');
      await expect(attentionCommand(['--checkpoint', `${dir}/ck.safetensors`, '--image', `${dir}/img.png`, '--out', `${dir}/b`, '--method', 'lime'])).rejects.toThrow(/--method/);

      // the page in Chromium: choosing gradcam draws the overlay heatmap.ts makes of its 8×8 map
      const chrome = await launchChromium();
      try {
        const { page, problems } = await openPage(chrome.browser, `file://${dir}/out/attention.html`, 'explain page');
        await page.waitForFunction(() => document.getElementById('hi')!.textContent !== '');
        await page.select('#method', 'gradcam');
        await page.hover(`#words .w:nth-child(${T})`);
        const got = await page.evaluate(() => {
          const c = document.getElementById('map') as HTMLCanvasElement;
          return { caption: document.getElementById('caption')!.textContent, px: Array.from(c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data) };
        });
        expect(problems).toEqual([]);
        expect(got.caption).toBe(`word ${t}: "${json.words[t]}" (gradcam, 8×8 map)`);
        const img = await decodeImage(await Deno.readFile(`${dir}/out/image.png`));
        const up = upsample(json.explain.maps.gradcam[t].fine.values, 8, 8, 64, 64);
        const want = overlayHeatmap(img, up, { alpha: 0.6, range: minMax(up) });
        let maxDiff = 0;
        for (let i = 0; i < 64 * 64; i++) for (let c = 0; c < 3; c++) maxDiff = Math.max(maxDiff, Math.abs(got.px[4 * i + c] - want.data[3 * i + c]));
        expect(maxDiff).toBeLessThanOrEqual(1); // f32 printed to 9 digits: a colour-table index may flip at a boundary
      } finally {
        await chrome.close();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});

describe('public API', () => {
  it('MicarModel.explain gives explainSteps\' maps for every word of a report, and attentionPage takes them', async () => {
    const api = await import('../src/mod.ts');
    const reports = generatePhantom({ count: 20, seed: 4, size: 16 }).map((s) => s.report);
    const m = await api.createModel({
      backbone: 'resnet10', image_size: 32, d_v: 16, d_model: 32, d_latent: 48, num_heads: 4, qk_nope_dim: 4, qk_rope_dim: 8,
      d_ff: 32, num_layers: 2, num_experts: 4, k: 2, act_fn: 'silu', moe_mode: 'weighted', text_seq_len: 6,
    }, { reports }, { seed: R.int(1, 1 << 30) });
    const picture = { width: 32, height: 32, data: Uint8Array.from({ length: 32 * 32 * 3 }, () => R.int(0, 255)) };
    const rep = await m.attention(picture, { maxLen: 3 });
    const maps = await m.explain(picture, rep, ['rollout', 'saliency']);
    expect(maps.get('rollout')!.length).toBe(rep.tokens.length);
    const direct = await explainSteps(m.weights, preprocess(picture, inputGeometry(m.config)), rep.tokens, rep.tokens.map((_, i) => i), ['rollout']);
    // explain() also ran saliency, so its attention was the unfused (differentiable) one; the fused
    // kernel rounds differently in f32: ~1e-7 relative per layer over a few layers.
    for (let t = 0; t < rep.tokens.length; t++) expect(relL2(maps.get('rollout')![t].grid, direct.get('rollout')![t].grid)).toBeLessThan(1e-5);
    const page = await m.attentionPage(picture, rep, { explain: maps, method: 'saliency' });
    expect([...page.files.keys()].filter((n) => n.endsWith('_rollout.png')).length).toBe(rep.tokens.length);
  });
});
