// The generated src/gpu/shader-sources.ts must hold exactly the shaders/**/*.wgsl files (run
// `npm run gen:shaders` after editing a shader), and loadShader serves it.
import { describe, expect, it } from 'vitest';
import { GENERATED, readShaderTree, shaderModuleText } from '../scripts/gen-shaders.ts';
import { SHADER_SOURCES } from '../src/gpu/shader-sources.ts';
import { loadShader } from '../src/gpu/shaders.ts';

declare const Deno: { readTextFile(p: URL): Promise<string> };

describe('generated shader module', () => {
  it('is current with shaders/ (else: npm run gen:shaders)', async () => {
    const tree = await readShaderTree();
    const want = shaderModuleText(tree);
    const have = await Deno.readTextFile(GENERATED);
    const stale = tree.filter(([n, s]) => SHADER_SOURCES[n] !== s).map(([n]) => n);
    const extra = Object.keys(SHADER_SOURCES).filter((n) => !tree.some(([m]) => m === n));
    expect({ stale, extra }, 'src/gpu/shader-sources.ts is stale: run `npm run gen:shaders`').toEqual({ stale: [], extra: [] });
    expect(have === want, 'src/gpu/shader-sources.ts differs from what scripts/gen-shaders.ts writes: run `npm run gen:shaders`').toBe(true);
  });

  it('loadShader returns the generated sources; an unknown name is a clear error', async () => {
    for (const [name, src] of Object.entries(SHADER_SOURCES)) expect(await loadShader(name), name).toBe(src);
    await expect(loadShader('no-such-kernel')).rejects.toThrow(/no shader "no-such-kernel"/);
  });
});
