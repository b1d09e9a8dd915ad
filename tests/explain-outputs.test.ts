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
import { type AttentionTrace, attentionOutputs, type ExplainMap, explainSteps, findingSentenceMaps, inputGeometry, minMax, overlayHeatmap, shrinkSquare, upsample } from '../src/viz/index.ts';
import { formatReport } from '../src/data/findings.ts';
import { relL2, rng } from './util.ts';
import { launchChromium, openPage, Pace, waitForState } from './browser-harness.ts';

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
      // Up to --max-len 3 words: a random model may end its report sooner (seed 1184337535: after one).
      const T = json.words.length;
      expect(T).toBeGreaterThanOrEqual(1);
      expect(T).toBeLessThanOrEqual(3);
      // One map per word and method (word_<t>_<word>_<method>.png); a report whose words form a
      // finding sentence also gets sentence_<k>_<method>.png (seed 330526953: "left lower fundus").
      for (const m of ['gradcam', 'saliency']) expect(names.filter((n) => n.startsWith('word_') && n.endsWith(`_${m}.png`)).length, m).toBe(T);
      expect(names.filter((n) => /_(rollout|grad-attention)\.png$/.test(n))).toEqual([]);
      expect(Object.keys(json.explain.maps).sort()).toEqual(['gradcam', 'saliency']);
      expect(json.explain.initial).toBe('attention');
      // the page's maps are the API's (same tokens, same image)
      const pixels = preprocess(picture, inputGeometry(cfg));
      const tokens = JSON.parse(new TextDecoder().decode(await Deno.readFile(`${dir}/out/routing.json`))).words.map((x: string) => tok.id(x));
      const direct = await explainSteps(w, pixels, tokens, Array.from({ length: T }, (_, i) => i), ['gradcam', 'saliency']);
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
        const { page, problems, loadMs } = await openPage(chrome.browser, `file://${dir}/out/attention.html`, 'explain page');
        // (a static page: its script draws once the image has decoded; 20 load times, at least 10 s)
        await waitForState(page, 'the page to draw its first map (#hi filled in)', new Pace(loadMs, 'the page\'s load').budget(20), () => document.getElementById('hi')!.textContent !== '');
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

describe('finding sentences', () => {
  it('a two-finding report: per finding sentence and method its mean map and its specific map as PNGs, the specific ones on the page', () => {
    const report = formatReport('xray', [
      { location: 'upper left', size: 'small', shape: 'round', intensity: 'bright' },
      { location: 'lower right', size: 'large', shape: 'irregular', intensity: 'dark' },
    ]);
    const tok = Tokenizer.build([report], 1, 'whitespace');
    const tokens = [...tok.clean(report).map((w) => tok.id(w)), tok.id('<eos>')];
    const words = tokens.map((id) => tok.tokens[id]);
    const S = 32, cfg = normaliseConfig({ backbone: 'resnet10', image_size: S, resize_size: S, d_v: 16, d_model: 32, d_latent: 12, num_heads: 1, qk_nope_dim: 4, qk_rope_dim: 8, d_ff: 32, num_layers: 1, num_experts: 2, k: 1, act_fn: 'silu', moe_mode: 'weighted', text_seq_len: 40, vocab_size: tok.vocabSize });
    const tr: AttentionTrace = {
      layers: 1, heads: 1, grid: 7, numExperts: 2, tokens,
      cross: tokens.map(() => [new Float32Array(49).fill(1 / 49)]),
      self: tokens.map((_, t) => [new Float32Array(t + 1).fill(1 / (t + 1))]),
      experts: tokens.map(() => [{ indices: [0], weights: [1] }]),
    };
    // Words of the first finding sentence look at the upper left and, half as much, at the lower
    // right; those of the second only at the lower right (a shared lesion-like pull); the rest
    // nowhere in particular. The first sentence's specific map keeps the upper left only.
    const first = words.indexOf('upper'), second = words.indexOf('lower');
    const sentenceOf = (t: number) => (words.slice(0, t + 1).filter((w) => w === '.').length);
    const [k1, k2] = [sentenceOf(first), sentenceOf(second)];
    const map = (t: number): ExplainMap => {
      const v = new Float64Array(S * S).fill(sentenceOf(t) === k1 || sentenceOf(t) === k2 ? 0 : 1);
      if (sentenceOf(t) === k1) v[1 * S + 1] = 2, v[(S - 2) * S + S - 2] = 1;
      if (sentenceOf(t) === k2) v[(S - 2) * S + S - 2] = 1;
      return { method: 'saliency', step: t, token: tokens[t], grid: new Float64Array(49), fine: { level: 'pixels', height: S, width: S, values: v }, logit: 0 };
    };
    const explain = new Map([['saliency' as const, tokens.map((_, t) => map(t))]]);
    const picture = { width: S, height: S, data: Uint8Array.from({ length: S * S * 3 }, () => R.int(0, 255)) };
    const out = attentionOutputs(tr, tok.tokens, cfg, picture, { explain, displaySize: 32 });
    const names = [...out.files.keys()].filter((n) => n.startsWith('sentence_')).sort();
    expect(names).toEqual(['sentence_1_saliency.png', 'sentence_1_saliency_specific.png', 'sentence_2_saliency.png', 'sentence_2_saliency_specific.png']);
    const per = findingSentenceMaps(words, explain, S);
    expect(per.map((x) => x.text)).toEqual(['a small round bright lesion in the upper left region', 'a large irregular dark lesion in the lower right region']);
    // mean (2/3, 1/3) at the two pixels; specific: max(0, d − o) keeps the upper left alone.
    expect(per[0].mean[1 * S + 1]).toBeCloseTo(2 / 3, 12);
    expect(per[0].specific[1 * S + 1]).toBe(1);
    expect(per[1].specific[(S - 2) * S + S - 2]).toBe(1);
    // The mean and the specific PNGs of the first sentence differ (the lower-right pull is gone).
    expect(out.files.get('sentence_1_saliency.png')).not.toEqual(out.files.get('sentence_1_saliency_specific.png'));
    const json = JSON.parse(/<script type="application\/json" id="micar-data">([\s\S]*?)<\/script>/.exec(out.html)![1]);
    expect(json.figures.filter((f: { name: string }) => /specific to it/.test(f.name)).length).toBe(2);
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
