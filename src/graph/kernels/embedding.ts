// Kernel family `embedding` (shaders/embedding.wgsl): lookup and its deterministic backward;
// the uniform schema shared by GATHER, LINK and SCATTER.
import { uniformSchema } from './uniforms.ts';

export const embeddingParams = uniformSchema('embedding', {
  N: 'u32', // tokens
  V: 'u32', // table rows
  D: 'u32', // features
  total: 'u32', // threads needed
});
