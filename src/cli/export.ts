// `micar export --to authors|hf|safetensors --out DIR [--dtype f32|f16]` from a micar checkpoint
// (--checkpoint C) or a state dict with its config (--weights W --config preset|file [--vocab DIR]),
// or a Hugging Face / authors' folder. Runs on the CPU: no GPU is needed to convert.
import { joinPath, localFiles } from '../data/fs.ts';
import { writeFileAtomic } from '../io/files.ts';
import { type ExportFormat, exportModel } from '../model/export.ts';
import { readHostModel } from '../model/load.ts';
import { parseArgs, str } from './args.ts';

const USAGE = 'usage: micar export --to authors|hf|safetensors --out DIR [--dtype f32|f16] (--checkpoint C | --weights W --config preset|file [--vocab DIR])';
const KNOWN = ['to', 'out', 'dtype', 'checkpoint', 'weights', 'config', 'vocab'];

export async function exportCommand(argv: string[]): Promise<void> {
  const a = parseArgs(argv);
  for (const k of Object.keys(a)) if (k !== '_' && !KNOWN.includes(k)) throw new Error(`export: unknown option --${k}\n${USAGE}`);
  if (a._.length) throw new Error(`export: unexpected argument "${a._[0]}"\n${USAGE}`);
  const to = str(a, 'to', '') as ExportFormat;
  if (!['authors', 'hf', 'safetensors'].includes(to)) throw new Error(`export: --to must be authors, hf or safetensors\n${USAGE}`);
  const out = str(a, 'out', '');
  if (!out) throw new Error(`export: --out DIR is required\n${USAGE}`);
  const dtype = str(a, 'dtype', 'f32');
  if (dtype !== 'f32' && dtype !== 'f16') throw new Error(`export: --dtype must be f32 or f16, got "${dtype}"`);
  const source = typeof a.checkpoint === 'string' ? a.checkpoint : typeof a.weights === 'string' ? a.weights : undefined;
  if (!source) throw new Error(`export: give --checkpoint C or --weights W\n${USAGE}`);
  const model = await readHostModel(source, {
    vocab: typeof a.vocab === 'string' ? a.vocab : undefined,
    config: typeof a.config === 'string' ? a.config : undefined,
    vocabOptional: true,
  });
  const { files, warning } = exportModel(model, to, { dtype });
  const fs = await localFiles();
  await fs.mkdirp(out);
  for (const [name, bytes] of files) await writeFileAtomic(joinPath(out, name), bytes);
  console.log(`exported ${model.source} as ${to} (${dtype}) to ${out}: ${[...files].map(([n, b]) => `${n} (${b.length} bytes)`).join(', ')}`);
  if (warning) console.warn(`warning: ${warning}`);
}
