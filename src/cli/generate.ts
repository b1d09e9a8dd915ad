// `micar generate --checkpoint C [--vocab DIR --config preset|file] --image I [--beam K] [--max-len N] [--length-penalty A]`:
// writes the report for one image. Greedy (the default, beam 1) streams the words as they
// are produced; a beam prints the best hypothesis (and the n-best with --nbest).
import { parsePrecision } from '../model/precision.ts';
import { fromData, init } from '../graph/runtime.ts';
import { decodeImage } from '../data/images.ts';
import { preprocess } from '../data/preprocess.ts';
import { readFileBytes } from '../io/files.ts';
import { readModel } from '../model/load.ts';
import { inputGeometry } from '../model/config.ts';
import { beamSearch, generateStream } from '../generate/decode.ts';
import { parseCommand } from './args.ts';

declare const Deno: { stdout: { writeSync(b: Uint8Array): number } };


export async function generateCommand(args: string[]): Promise<void> {
  const a = parseCommand('generate', args);
  const ckPath = a.str('checkpoint'), imagePath = a.str('image'), beam = a.num('beam');
  await init();
  const { weights: w, tokenizer, precision } = await readModel(ckPath, { vocab: a.str('vocab', 'optional'), config: a.str('config', 'optional'), precision: parsePrecision(a.str('precision')) });
  if (precision.note) console.error(precision.note);
  const cfg = w.cfg;
  const maxLen = a.num('max-len', 'optional') ?? cfg.text_seq_len;
  const rgb = await decodeImage(await readFileBytes(imagePath), imagePath);
  const pixels = preprocess(rgb, inputGeometry(cfg));
  const image = fromData(pixels, [1, 3, cfg.image_size, cfg.image_size], 'f32', 'image');
  const enc = new TextEncoder();
  if (beam === 1) {
    // Greedy: each word as soon as it is chosen.
    let first = true;
    for await (const t of generateStream(w, image, { maxLen })) {
      if (t.token === cfg.eos_id) break;
      const word = tokenizer.decode([t.token]);
      if (!word) continue;
      Deno.stdout.writeSync(enc.encode((first ? '' : ' ') + word));
      first = false;
    }
    Deno.stdout.writeSync(enc.encode('\n'));
    return;
  }
  const nBest = a.num('nbest');
  const hyps = (await beamSearch(w, image, { beamWidth: beam, maxLen, lengthPenalty: a.num('length-penalty'), nBest: Math.min(nBest, beam) }))[0];
  console.log(tokenizer.decode(hyps[0].tokens));
  if (nBest > 1) for (const h of hyps) console.log(`  ${h.score.toFixed(4)} (logp ${h.logp.toFixed(3)}, ${h.tokens.length} tokens${h.finished ? '' : ', unfinished'}): ${tokenizer.decode(h.tokens)}`);
}
