// `micar generate --checkpoint C --image I [--beam K] [--max-len N] [--length-penalty A]`:
// writes the report for one image. Greedy (the default, beam 1) streams the words as they
// are produced; a beam prints the best hypothesis (and the n-best with --nbest).
import { fromData, init } from '../graph/runtime.ts';
import { decodeImage } from '../data/images.ts';
import { preprocess } from '../data/preprocess.ts';
import { Tokenizer, type TokenizerJSON } from '../data/tokenizer.ts';
import { readFileBytes } from '../io/files.ts';
import { type HostTensor, readSafetensors } from '../io/safetensors.ts';
import { normaliseConfig } from '../model/config.ts';
import { Weights } from '../model/weights.ts';
import { CHECKPOINT_FORMAT, parseCheckpoint } from '../train/checkpoint.ts';
import { beamSearch, generateStream } from './decode.ts';

declare const Deno: { stdout: { writeSync(b: Uint8Array): number } };

const USAGE = 'usage: micar generate --checkpoint <model.safetensors> --image <png|jpeg> [--beam K] [--max-len N] [--length-penalty A] [--nbest N]';

/** Model + tokenizer from a checkpoint: a micar training checkpoint, or any safetensors state dict with `config` and `tokenizer` metadata. */
export async function loadModel(path: string): Promise<{ weights: Weights; tokenizer: Tokenizer }> {
  const bytes = await readFileBytes(path);
  const { tensors, metadata } = readSafetensors(bytes, path);
  if (metadata.format === CHECKPOINT_FORMAT) {
    const ck = parseCheckpoint(bytes, path);
    return { weights: ck.weights, tokenizer: ck.tokenizer };
  }
  for (const k of ['config', 'tokenizer'])
    if (metadata[k] === undefined) throw new Error(`${path}: safetensors metadata has no "${k}" (a checkpoint needs the model config and the tokenizer JSON)`);
  const cfg = normaliseConfig(JSON.parse(metadata.config), `${path} (config)`);
  const tokenizer = Tokenizer.fromJSON(JSON.parse(metadata.tokenizer) as TokenizerJSON);
  if (tokenizer.tokens.length !== cfg.vocab_size) throw new Error(`${path}: tokenizer has ${tokenizer.tokens.length} tokens but config vocab_size is ${cfg.vocab_size}`);
  const model = new Map<string, HostTensor>([...tensors].filter(([k]) => !k.startsWith('optim.')));
  return { weights: Weights.fromStateDict(cfg, model, path), tokenizer };
}

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  if (i >= 0) return args[i + 1];
  const eq = args.find((a) => a.startsWith(`--${name}=`));
  return eq?.slice(name.length + 3);
}

export async function generateCommand(args: string[]): Promise<void> {
  const ckPath = flag(args, 'checkpoint'), imagePath = flag(args, 'image');
  if (!ckPath || !imagePath) throw new Error(USAGE);
  const beam = Number(flag(args, 'beam') ?? 1);
  if (!Number.isInteger(beam) || beam < 1) throw new Error(`--beam must be a positive integer (${USAGE})`);
  await init();
  const { weights: w, tokenizer } = await loadModel(ckPath);
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
