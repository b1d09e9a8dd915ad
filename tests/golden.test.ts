// Whole-model check against the authors' PyTorch model: every golden case that ships its
// weights (../shared/golden/*/weights.safetensors) must pass `runGolden`.
import { describe, expect, it } from 'vitest';
import { runGolden } from '../src/cli/golden.ts';

declare const Deno: { readDirSync(p: string | URL): Iterable<{ name: string; isDirectory: boolean }>; statSync(p: string | URL): unknown };

const root = new URL('../../shared/golden/', import.meta.url);
const cases: string[] = [];
for (const e of Deno.readDirSync(root)) {
  if (!e.isDirectory) continue;
  try {
    Deno.statSync(new URL(`${e.name}/weights.safetensors`, root));
    Deno.statSync(new URL(`${e.name}/io.safetensors`, root));
    cases.push(e.name);
  } catch {
    // no weights: the paper case (314 MB) is generated on demand, see the issue note
  }
}

describe('golden cases', () => {
  it('finds the shipped cases', () => {
    expect(cases).toContain('tiny');
  });
  for (const c of cases.sort()) {
    it(`reproduces ${c}`, async () => {
      const lines: string[] = [];
      const r = await runGolden(decodeURIComponent(new URL(c, root).pathname), (s) => {
        lines.push(s);
        console.log(s);
      });
      expect(r.failures).toEqual([]);
      expect(r.pass).toBe(true);
    });
  }
});
