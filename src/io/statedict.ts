// Checking a loaded state_dict against the names and shapes a model expects, with a report
// precise enough to fix the file (missing / unexpected / mis-shaped names, and likely causes).

import { type HostTensor, numelOf, toFloat32 } from './safetensors.ts';

export interface StateDictReport {
  ok: boolean;
  fileName: string;
  /** Expected names absent from the file, in the expected order. */
  missing: string[];
  /** Names in the file the model does not have, in file order. */
  unexpected: string[];
  misShaped: { name: string; expected: number[]; got: number[] }[];
}

const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((d, i) => d === b[i]);

export function checkStateDict(
  expected: Map<string, { shape: number[] }>,
  got: Map<string, HostTensor | { shape: number[] }>,
  fileName = '<memory>',
): StateDictReport {
  const missing: string[] = [], unexpected: string[] = [];
  const misShaped: StateDictReport['misShaped'] = [];
  for (const [name, e] of expected) {
    const g = got.get(name);
    if (!g) missing.push(name);
    else if (!sameShape(e.shape, g.shape)) misShaped.push({ name, expected: e.shape.slice(), got: g.shape.slice() });
  }
  for (const name of got.keys()) if (!expected.has(name)) unexpected.push(name);
  return { ok: missing.length === 0 && unexpected.length === 0 && misShaped.length === 0, fileName, missing, unexpected, misShaped };
}

/** Indented names, at most `max` of them. */
function listNames(names: string[], max: number): string {
  const shown = names.slice(0, max).map((n) => `    ${n}`);
  if (names.length > max) shown.push(`    … and ${names.length - max} more`);
  return shown.join('\n');
}

/** A human-readable account of a StateDictReport; `maxPerList` names per section. */
export function formatStateDictReport(r: StateDictReport, maxPerList = 40): string {
  if (r.ok) return `${r.fileName}: state_dict matches the model (all names and shapes agree)`;
  const parts = [
    `${r.fileName}: state_dict does not match the model: ${r.missing.length} missing, ${r.unexpected.length} unexpected, ${r.misShaped.length} mis-shaped`,
  ];
  if (r.missing.length) parts.push(`  missing (the model needs them, the file lacks them):\n${listNames(r.missing, maxPerList)}`);
  if (r.unexpected.length) parts.push(`  unexpected (in the file, not in the model):\n${listNames(r.unexpected, maxPerList)}`);
  if (r.misShaped.length) {
    const lines = r.misShaped.slice(0, maxPerList).map((m) => `    ${m.name}: model [${m.expected.join(', ')}], file [${m.got.join(', ')}]`);
    if (r.misShaped.length > maxPerList) lines.push(`    … and ${r.misShaped.length - maxPerList} more`);
    parts.push(`  mis-shaped:\n${lines.join('\n')}`);
  }
  const hints = diagnose(r);
  if (hints.length) parts.push(`  likely cause:\n${hints.map((h) => `    ${h}`).join('\n')}`);
  return parts.join('\n');
}

function diagnose(r: StateDictReport): string[] {
  const hints: string[] = [];
  if (r.unexpected.length && r.unexpected.every((n) => n.startsWith('module.'))) {
    hints.push('every unexpected name starts with "module." (saved from nn.DataParallel): strip that prefix');
  }
  const tv = /^(conv1\.|bn1\.|layer[1-4]\.|fc\.)/;
  if (r.unexpected.some((n) => tv.test(n)) && r.missing.some((n) => n.startsWith('vis_enc.'))) {
    hints.push('the file has torchvision ResNet names (conv1, bn1, layerN, fc): map them with mapTorchvisionBackbone (src/io/backbone.ts)');
  }
  if (r.misShaped.some((m) => numelOf(m.expected) === numelOf(m.got))) {
    hints.push('some mis-shaped tensors have the right number of elements: a reshape/transpose on export?');
  }
  if (r.misShaped.some((m) => /fpn_c[2-5]\.0\.weight$/.test(m.name))) {
    hints.push('fpn_c* lateral input channels differ: the config\'s backbone does not match the checkpoint\'s');
  }
  return hints;
}

/** Throws with formatStateDictReport's text unless the state_dict matches. */
export function assertStateDict(expected: Map<string, { shape: number[] }>, got: Map<string, HostTensor>, fileName = '<memory>'): void {
  const r = checkStateDict(expected, got, fileName);
  if (!r.ok) throw new Error(formatStateDictReport(r));
}

/** Every tensor as float32 values (F16/BF16/F64 widened or rounded, I64 counters converted). */
export function stateDictToFloat32(sd: Map<string, HostTensor>): Map<string, { shape: number[]; data: Float32Array }> {
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, t] of sd) {
    try {
      out.set(name, { shape: t.shape.slice(), data: toFloat32(t) });
    } catch (e) {
      throw new Error(`stateDictToFloat32: tensor "${name}": ${(e as Error).message}`);
    }
  }
  return out;
}
