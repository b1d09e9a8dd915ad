// Kernel family `resize` (shaders/resize.wgsl): bilinear resize and its backward; the uniform
// schema shared by FWD and BWD.
import { uniformSchema } from './uniforms.ts';

export const resizeParams = uniformSchema('resize', {
  NC: 'u32', H: 'u32', W: 'u32', OH: 'u32',
  OW: 'u32', total: 'u32', // threads
  scaleY: 'f32', scaleX: 'f32', // in / out
});
