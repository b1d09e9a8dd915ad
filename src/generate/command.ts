// `micar generate --checkpoint C [--vocab DIR --config preset|file] --image I [--beam K] [--max-len N] [--length-penalty A]`:
// writes the report for one image. Greedy (the default, beam 1) streams the words as they
// are produced; a beam prints the best hypothesis (and the n-best with --nbest).
import { fromData, init } from '../graph/runtime.ts';
import { decodeImage } from '../data/images.ts';
import { preprocess } from '../data/preprocess.ts';
import { readFileBytes } from '../io/files.ts';
import { readModel } from '../model/load.ts';
import { beamSearch, generateStream } from './decode.ts';

declare const Deno: { stdout: { writeSync(b: Uint8Array): number } };

const USAGE = 'usage: micar generate --checkpoint <checkpoint | model_snapshot.pth | HF folder | URL> [--vocab DIR] [--config preset|file] --image <png|jpeg> [--beam K] [--max-len N] [--length-penalty A] [--nbest N]';

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  if (i >= 0) return args[i + 1];
  const eq = args.find((a) => a.startsWith(`--${name}=`));
  return eq?.slice(name.length + 3);
}

export async function generateCommand(args: string[]): Promise<void> {
  const ckPath = flag(args, 'checkpoint') ?? flag(args, 'weights'), imagePath = flag(args, 'image');
  if (!ckPath || !imagePath) throw new Error(USAGE);
  const beam = Number(flag(args, 'beam') ?? 1);
  if (!Number.isInteger(beam) || beam < 1) throw new Error(`--beam must be a positive integer (${USAGE})`);
  await init();
  const { weights: w, tokenizer } = await readModel(ckPath, { vocab: flag(args, 'vocab'), config: flag(args, 'config') });
  const cfg = w.cfg;
  const maxLen = Number(flag(args, 'max-len') ?? cfg.text_seq_len);
  const rgb = decodeImage(await readFileBytes(imagePath), imagePath);
  const pixels = preprocess(rgb, { resize: cfg.resize_size ?? cfg.image_size, crop: cfg.image_size });
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
  const nBest = Number(flag(args, 'nbest') ?? 1);
  const hyps = (await beamSearch(w, image, { beamWidth: beam, maxLen, lengthPenalty: Number(flag(args, 'length-penalty') ?? 1), nBest: Math.min(nBest, beam) }))[0];
  console.log(tokenizer.decode(hyps[0].tokens));
  if (nBest > 1) for (const h of hyps) console.log(`  ${h.score.toFixed(4)} (logp ${h.logp.toFixed(3)}, ${h.tokens.length} tokens${h.finished ? '' : ', unfinished'}): ${tokenizer.decode(h.tokens)}`);
}
