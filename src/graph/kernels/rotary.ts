// Kernel family `rotary` (shaders/rotary.wgsl): rotary position embedding; its uniform schema.
import { uniformSchema } from './uniforms.ts';

export const rotaryParams = uniformSchema('rotary', {
  total: 'u32', // elements of x
  n: 'u32', // positions (size of axis -2)
  dh: 'u32', // features per row
  start: 'u32', // first rotated feature
  m: 'u32', // rotated pairs
  sign: 'f32', // +1 forward, −1 for the inverse rotation (backward)
  offset: 'u32', // position of row 0 (incremental decoding with a key/value cache)
});
