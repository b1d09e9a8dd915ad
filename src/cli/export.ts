// `micar export --to authors|hf|safetensors --out DIR [--dtype f32|f16]` from a micar checkpoint
// (--checkpoint C) or a state dict with its config (--weights W --config preset|file [--vocab DIR]),
// or a Hugging Face / authors' folder. Runs on the CPU: no GPU is needed to convert.
import { joinPath, localFiles } from '../data/fs.ts';
import { writeFileAtomic } from '../io/files.ts';
import { type ExportFormat, exportModel } from '../model/export.ts';
import { readHostModel } from '../model/load.ts';
import { parseCommand } from './args.ts';

export async function exportCommand(argv: string[]): Promise<void> {
  const a = parseCommand('export', argv);
  const to = a.str('to') as ExportFormat, out = a.str('out'), dtype = a.str('dtype') as 'f32' | 'f16';
  const model = await readHostModel(a.str('checkpoint'), { vocab: a.str('vocab', 'optional'), config: a.str('config', 'optional'), vocabOptional: true });
  const { files, warning } = exportModel(model, to, { dtype });
  await (await localFiles()).mkdirp(out);
  for (const [name, bytes] of files) await writeFileAtomic(joinPath(out, name), bytes);
  console.log(`exported ${model.source} as ${to} (${dtype}) to ${out}: ${[...files].map(([n, b]) => `${n} (${b.length} bytes)`).join(', ')}`);
  if (warning) console.warn(`warning: ${warning}`);
}
