// `micar attention` and `micar explain`: one image → a report, its word maps (attention or an
// explanation method) as PNGs and one self-contained HTML page. Both share one body: load the
// model (any loader source, at the asked precision), decode and prepare the image, generate and
// trace the report, explain it with the methods asked for, write the outputs.
import { parseCommand, type Parsed } from './args.ts';
import { init } from '../graph/runtime.ts';
import { parsePrecision } from '../model/precision.ts';
import { inputGeometry } from '../model/config.ts';
import { readModel } from '../model/load.ts';
import { decodeImage } from '../data/images.ts';
import { preprocess } from '../data/preprocess.ts';
import { joinPath } from '../data/fs.ts';
import { readFileBytes } from '../io/files.ts';
import { attentionForPixels, attentionOutputs, explainTrace, writeOutputs } from '../viz/index.ts';
import type { ColormapName } from '../viz/colormap.ts';
import { EXPLAIN_METHODS, type ExplainMethod, type ExplainOptions, type ExplainTarget, isExplainMethod, type SmoothGradKind } from '../viz/explain.ts';

interface MapsRequest {
  /** Methods to compute beyond the raw attention the trace carries. */
  methods: ExplainMethod[];
  /** The method the page shows first. */
  shown: ExplainMethod;
  explainOpts: ExplainOptions;
  title: (imagePath: string) => string;
  note: string;
}

async function writeMaps(verb: 'attention' | 'explain', a: Parsed, req: MapsRequest): Promise<void> {
  const ckpt = a.str('checkpoint'), imagePath = a.str('image'), out = a.str('out');
  await init();
  const { cfg, tokenizer, weights, precision } = await readModel(ckpt, { vocab: a.str('vocab', 'optional'), config: a.str('config', 'optional'), precision: parsePrecision(a.str('precision')) });
  if (precision.note) console.error(precision.note);
  const original = await decodeImage(await readFileBytes(imagePath), imagePath);
  const pixels = preprocess(original, inputGeometry(cfg));
  const beam = a.num('beam');
  const t0 = performance.now();
  const tr = await attentionForPixels(weights, pixels, { beam, maxLen: a.num('max-len', 'optional') });
  const computed = req.methods.filter((m) => m !== 'attention');
  const explained = computed.length ? await explainTrace(weights, pixels, tr.tokens, computed, req.explainOpts) : undefined;
  const o = attentionOutputs(tr, tokenizer.tokens, cfg, original, {
    displaySize: a.num('size', 'optional'),
    colormap: a.str('colormap') as ColormapName,
    title: req.title(imagePath),
    notes: [`checkpoint ${ckpt}; ${beam > 1 ? `beam search (width ${beam}), best hypothesis re-traced` : 'greedy decoding'}; ${cfg.num_layers} decoder layers × ${cfg.num_heads} heads, ${cfg.num_experts} experts (top-${cfg.k}). ${req.note}`.trim()],
    explain: explained,
    method: req.shown,
  });
  const written = await writeOutputs(o, out);
  const what = verb === 'explain' ? `words × ${req.methods.length} methods` : 'words traced';
  console.log(`report: ${o.report}`);
  console.log(`${tr.tokens.length} ${what} in ${((performance.now() - t0) / 1000).toFixed(1)} s; wrote ${written.length} files to ${out} (page: ${joinPath(out, 'attention.html')})`);
}

/** `micar attention`: a report for one image with its attention (or `--method`) maps per word. */
export async function attentionCommand(args: string[]): Promise<void> {
  const a = parseCommand('attention', args);
  const method = a.str('method') as ExplainMethod;
  await writeMaps('attention', a, {
    methods: [method],
    shown: method,
    explainOpts: {},
    title: (img) => `MicarVLMoE ${method === 'attention' ? 'attention' : `explanations (${method})`}: ${img}`,
    note: '',
  });
}

/** `micar explain`: a report for one image, every word explained with each method. */
export async function explainCommand(args: string[]): Promise<void> {
  const a = parseCommand('explain', args);
  const list = a.str('methods');
  const methods = (list === 'all' ? [...EXPLAIN_METHODS] : list.split(',').map((m) => m.trim())) as ExplainMethod[];
  for (const m of methods) if (!isExplainMethod(m)) throw new Error(`--methods: unknown method "${m}"; choose from ${EXPLAIN_METHODS.join(', ')} or all`);
  const samples = a.num('smoothgrad'), sigma = a.num('smoothgrad-sigma'), kind = a.str('smoothgrad-kind') as SmoothGradKind;
  const target = a.str('target') as ExplainTarget, igSteps = a.num('ig-steps'), igBaseline = a.str('ig-baseline') as 'mean' | 'black';
  await writeMaps('explain', a, {
    methods,
    shown: methods.includes('attention') ? 'attention' : methods[0],
    explainOpts: { target, integratedGradients: { steps: igSteps, baseline: igBaseline }, ...(samples > 0 ? { smoothGrad: { samples, sigma, kind } } : {}) },
    title: (img) => `MicarVLMoE explanations: ${img}`,
    note: `Methods: ${methods.join(', ')}${samples > 0 ? `; saliency with SmoothGrad (${samples} samples, sigma ${sigma}, ${kind})` : ''}` +
      `${methods.includes('integrated-gradients') ? `; integrated gradients with ${igSteps} steps from the ${igBaseline === 'mean' ? 'mean-colour' : 'black'} image` : ''}. ` +
      `Each map explains the ${target === 'logprob' ? 'log-probability' : 'logit'} of the word at its position, the decoder reading <sos> and the words before it. Files: word_<t>_<word>_<method>.png per method; word_<t>_<word>.png is the raw attention; sentence_<k>_<method>.png per finding sentence (its words\' mean) and, with several findings, sentence_<k>_<method>_specific.png (minus the other findings\' mean, positive part).`,
  });
}
