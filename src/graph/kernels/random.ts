// Kernel family `random` (shaders/random.wgsl): counter-based random fills and dropout; the
// uniform schema shared by UNIFORM, NORMAL and DROPOUT. Each kind reads only its own floats
// (the others are packed as 0).
import { uniformSchema } from './uniforms.ts';

export const randomParams = uniformSchema('random', {
  n: 'u32', // elements
  k1: 'u32', k2: 'u32', // stream keys of the seed
  lo: 'f32', hi: 'f32', // UNIFORM: the range [lo, hi)
  stddev: 'f32', // NORMAL: standard deviation
  drop: 'f32', keepScale: 'f32', // DROPOUT: drop probability p, and 1 / (1 − p) on the kept elements
});
