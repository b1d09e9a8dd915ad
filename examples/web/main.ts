// A minimal web page on the public API only (src/mod.ts; `micar-webgpu` once installed):
// `npx vite examples/web`, open the printed URL in a browser with WebGPU. To run a trained
// model instead, `loadModel('https://…/model-folder/')` or `loadModel(fileFromAnInput)`.
import { builtInExamples, computeMetrics, createModel } from '../../src/mod.ts';

const status = document.getElementById('status')!;
const say = (text: string, state?: string) => {
  status.textContent = text;
  if (state) status.dataset.state = state;
};

async function run(): Promise<void> {
  if (!('gpu' in navigator)) return say('this browser has no WebGPU', 'unsupported');
  const data = builtInExamples({ count: 20, seed: 7, size: 48 });
  const train = data.slice(0, 16), test = data.slice(16);
  const model = await createModel('tiny', { reports: train.map((d) => d.report) }, { seed: 1 });
  const losses: number[] = [];
  await model.fineTune(train, { steps: 2, batchSize: 4, onProgress: (p) => (losses.push(p.loss), say(`fine-tuning: step ${p.step}/${p.steps}, loss ${p.loss.toFixed(3)}`)) });
  const report = document.getElementById('report')!;
  const words: string[] = [];
  for await (const w of model.generateStream(test[0].image, { maxLen: 8 })) {
    words.push(w.word);
    report.textContent = words.join(' ');
  }
  const [best] = await model.beamSearch(test[0].image, { beamWidth: 2, maxLen: 8 });
  const att = await model.attention(test[0].image, { maxLen: 8 });
  const metrics = computeMetrics([report.textContent || '.'], [test[0].report]);
  const result = { losses, streamed: words.join(' '), beam: best.text, words: att.words, experts: att.routing.map((r) => r.layers.map((l) => l.experts)), bleu1: metrics.bleu1 };
  document.getElementById('out')!.textContent = JSON.stringify(result, null, 1);
  say('done', 'done');
}

run().catch((e) => {
  say(`error: ${(e as Error).message}`, 'error');
  console.error(e);
});
