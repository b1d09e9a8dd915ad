// Kernel family `softmax` (shaders/softmax.wgsl): softmax / log-softmax over the last axis with
// an optional broadcast mask, and their backward; the uniform schema shared by all kinds.
import { uniformSchema } from './uniforms.ts';

export const softmaxParams = uniformSchema('softmax', {
  rows: 'u32',
  K: 'u32', // row length (last axis)
  lrank: 'u32', // number of leading (row) axes of x
  mlast: 'u32', // mask stride along the last axis (0 or 1)
  dims: 'array<vec4<u32>, 2>', // x.shape[:-1]
  ms: 'array<vec4<u32>, 2>', // mask strides for those axes (0 = broadcast)
});
