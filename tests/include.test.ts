import { describe, expect, it } from 'vitest';
import { expandIncludes, includesOf } from '../src/gpu/include.ts';
import { loadShader, specialise } from '../src/gpu/shaders.ts';
import { convParams } from '../src/graph/kernels/conv.ts';

describe('#include step for shaders/lib pieces', () => {
  const lib: Record<string, string> = {
    'lib/a': 'fn a() {}\n#include "lib/b"',
    'lib/b': 'fn b() {}',
    'lib/loop': '#include "lib/loop2"',
    'lib/loop2': '#include "lib/loop"',
  };
  const source = (n: string) => {
    if (!(n in lib)) throw new Error(`no piece ${n}`);
    return lib[n];
  };
  it('expands nested pieces once each, and leaves other lines alone', () => {
    const out = expandIncludes('k', 'x\n#include "lib/a"\n  #include "lib/b"\ny', source);
    expect(out.match(/fn a\(\)/g)?.length).toBe(1);
    expect(out.match(/fn b\(\)/g)?.length).toBe(1);
    expect(out.startsWith('x\n')).toBe(true);
    expect(out.endsWith('\ny')).toBe(true);
    expect(includesOf('#include "lib/a"\n#include "lib/b"')).toEqual(['lib/a', 'lib/b']);
  });
  it('allows a trailing line comment, and nothing else after the name', () => {
    expect(includesOf('#include "lib/a"   // a, b\n#include "lib/b" x\n// #include "lib/b"')).toEqual(['lib/a']);
    const out = expandIncludes('k', '#include "lib/b"   // why\ny', source);
    expect(out).toContain('fn b()');
    expect(out).not.toContain('why');
  });
  it('expands a piece again in each exclusive arm of an #if chain, once where it is already present', () => {
    const count = (out: string, re: RegExp) => out.match(re)?.length ?? 0;
    const arms = expandIncludes('k', '#if ${A}\n#include "lib/a"\n#elif ${B}\n#include "lib/a"\n#else\n#include "lib/b"\n#include "lib/a"\n#endif', source);
    expect(count(arms, /fn a\(\)/g)).toBe(3);
    expect(count(arms, /fn b\(\)/g)).toBe(3);   // by lib/a in the first two arms, then directly and covered in the third
    expect(count(arms, /lib\/b included above/g)).toBe(1);
    const covered = expandIncludes('k', '#include "lib/a"\n#if ${A}\n#if ${B}\n#include "lib/a"\n#endif\n#endif', source);
    expect(count(covered, /fn a\(\)/g)).toBe(1);
    expect(count(covered, /lib\/a included above/g)).toBe(1);
    // Nested blocks inside different arms are still exclusive.
    const nested = expandIncludes('k', '#if ${A}\n#if ${C}\n#include "lib/b"\n#endif\n#else\n#include "lib/b"\n#endif', source);
    expect(count(nested, /fn b\(\)/g)).toBe(2);
  });
  it('refuses an include that may be active together with an earlier one it does not cover', () => {
    const err = /k\.wgsl: #include "lib\/a" may be active together with an earlier include/;
    expect(() => expandIncludes('k', '#if ${A}\n#include "lib/a"\n#endif\n#if ${B}\n#include "lib/a"\n#endif', source)).toThrow(err);
    expect(() => expandIncludes('k', '#if ${A}\n#include "lib/a"\n#endif\n#include "lib/a"', source)).toThrow(err);
    expect(() => expandIncludes('k', '#include "lib/a"\n#endif', source)).toThrow(/k\.wgsl: #endif without its #if/);
  });
  it('reports cycles, missing pieces and pieces outside lib/ with the file names', () => {
    expect(() => expandIncludes('k', '#include "lib/loop"', source)).toThrow(/k\.wgsl: #include cycle k → lib\/loop → lib\/loop2 → lib\/loop/);
    expect(() => expandIncludes('k', '#include "lib/none"', source)).toThrow(/k\.wgsl: #include "lib\/none": no piece/);
    expect(() => expandIncludes('k', '#include "matmul"', source)).toThrow(/shaders\/lib/);
  });
  it('real shaders load their lib pieces and specialise', async () => {
    const src = await loadShader('embedding');
    expect(includesOf(src)).toContain('lib/grid');
    const code = specialise('conv', await loadShader('conv'), { LAYOUT: true, LAYOUT_ROWS: false, WEIGHT: false, WEIGHT_ROWS: false, WEIGHT_FLIP_T: false, GEMM4: false, GEMMR: false, DW4: false, DWR: false, BIAS_GRAD: false, IM2COL: false, IM2COL_ROWS: false, FWD: true, HAS_BIAS: false, KH: 3, KW: 3, STRIDE: 1, PAD: 1, WG: 8, RM: 1, RN: 8, REG_BODY: '', PARAMS: convParams.wgsl, T: 'f32', F16: false, SUBGROUPS: false });
    expect(code).toContain('fn flat_id(');
    expect(code).not.toContain('#include');
  });
});
