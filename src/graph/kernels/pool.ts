// Kernel family `pool` (shaders/pool.wgsl): max pooling and adaptive average pooling with
// their backward; the uniform schema shared by all four kinds.
import { uniformSchema } from './uniforms.ts';

export const poolParams = uniformSchema('pool', {
  NC: 'u32', H: 'u32', W: 'u32', OH: 'u32', OW: 'u32',
  K: 'u32', S: 'u32', PAD: 'u32', // MAX_*: window, stride, padding (AVG_* read none of them)
  total: 'u32', // threads: output elements (FWD) or input elements (BWD)
});
