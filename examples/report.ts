// A Deno script that uses only the public API (src/mod.ts; `micar-webgpu` once installed).
//
//   deno run -A examples/report.ts MODEL IMAGE [--vocab DIR] [--config NAME|FILE]
//     MODEL: a micar checkpoint, the authors' model_snapshot.pth (with --vocab and --config),
//     a Hugging Face folder or a URL. Prints the greedy report, the beam search's 3 best, and
//     which experts wrote each word.
//   deno run -A examples/report.ts --demo [--steps N] [--max-len N]
//     Without files: a new tiny model on the built-in synthetic dataset, fine-tuned for N steps
//     (default 4), reports and metrics on held-out images, saved and loaded back.
// The last line is JSON.
import { builtInExamples, computeMetrics, createModel, loadModel, type MicarModel } from '../src/mod.ts';

declare const Deno: { args: string[]; exit(code: number): never; readFile(p: string): Promise<Uint8Array> };

const args = [...Deno.args];
const option = (name: string): string | undefined => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args.splice(i, 2)[1] : undefined;
};

async function explainImage(model: MicarModel, image: Uint8Array): Promise<Record<string, unknown>> {
  let streamed = '';
  for await (const w of model.generateStream(image)) streamed += (streamed ? ' ' : '') + w.word;
  console.log(`report: ${streamed}`);
  const beams = await model.beamSearch(image, { beamWidth: 3, nBest: 3 });
  for (const b of beams) console.log(`  beam ${b.score.toFixed(3)}: ${b.text}`);
  const att = await model.attention(image);
  for (const r of att.routing) console.log(`  ${att.words[r.step].padEnd(14)} experts ${r.layers.map((l) => `[${l.experts.join(',')}]`).join(' ')}`);
  return { report: streamed, beams: beams.map((b) => b.text), words: att.words };
}

if (args.includes('--demo')) {
  const steps = Number(option('steps') ?? 4), maxLen = Number(option('max-len') ?? 16);
  const size = 48; // the tiny preset's image size
  const data = builtInExamples({ count: 36, seed: 7, size });
  const train = data.slice(0, 32), test = data.slice(32);
  const model = await createModel('tiny', { reports: train.map((d) => d.report) }, { seed: 1 });
  const { losses } = await model.fineTune(train, {
    steps, batchSize: 8,
    onProgress: (p) => console.log(`step ${p.step}/${p.steps}: loss ${p.loss.toFixed(4)}`),
  });
  const predictions: string[] = [];
  for (const t of test) predictions.push((await model.generate(t.image, { maxLen })).text);
  const metrics = computeMetrics(predictions, test.map((t) => t.report));
  // Save and load back: the same report.
  const again = await loadModel(await model.checkpoint(), { name: 'demo.safetensors' });
  const same = (await again.generate(test[0].image, { maxLen })).text === predictions[0];
  const att = await model.attention(test[0].image, { maxLen });
  console.log(`first held-out report: ${predictions[0]}\n  reference: ${test[0].report}`);
  console.log(JSON.stringify({ example: 'demo', steps, losses, bleu4: metrics.bleu4, cider: metrics.cider, reloaded_same_report: same, words: att.words.length, experts_first_word: att.routing[0]?.layers.map((l) => l.experts) }));
} else {
  const [modelPath, imagePath] = args.filter((a, i) => !a.startsWith('--') && !(args[i - 1] ?? '').startsWith('--'));
  const vocab = option('vocab'), config = option('config');
  if (!modelPath || !imagePath) {
    console.error('usage: deno run -A examples/report.ts MODEL IMAGE [--vocab DIR] [--config NAME|FILE]  |  --demo [--steps N]');
    Deno.exit(2);
  }
  const model = await loadModel(modelPath, { vocab, config });
  console.log(`model: ${model.source}`);
  console.log(JSON.stringify({ example: 'report', ...(await explainImage(model, await Deno.readFile(imagePath))) }));
}
