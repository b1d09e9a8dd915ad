// Kernel family `batchnorm` (shaders/batchnorm.wgsl): BatchNorm2d over NCHW; the uniform
// schema shared by STATS, APPLY, BWD_REDUCE, BWD_DX and UPDATE.
import { uniformSchema } from './uniforms.ts';

export const batchnormParams = uniformSchema('batchnorm', {
  N: 'u32', C: 'u32', HW: 'u32',
  total: 'u32', // N·C·HW
  eps: 'f32',
  momentum: 'f32', // UPDATE: running = (1 − momentum)·running + momentum·batch
});
