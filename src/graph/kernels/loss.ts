// Kernel family `loss` (shaders/loss.wgsl): cross entropy with an ignored label; the uniform
// schema shared by CE_ROWS, CE_MEAN and CE_GRAD.
import { uniformSchema } from './uniforms.ts';

export const lossParams = uniformSchema('loss', {
  N: 'u32', // rows
  V: 'u32', // classes
  ignore: 'i32', // the ignored label
  total: 'u32', // threads (CE_GRAD: N·V)
});
