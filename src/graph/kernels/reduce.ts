// Kernel family `reduce` (shaders/reduce.wgsl): sums and maxima over one axis and their
// backward; the uniform schema shared by SUM, BCAST, MAX and MAX_GRAD.
import { uniformSchema } from './uniforms.ts';

export const reduceParams = uniformSchema('reduce', {
  outer: 'u32', n: 'u32', inner: 'u32', // x viewed as [outer, n, inner], reduced over n
  tiles: 'u32', // ceil(inner / COLS)
  scale: 'f32', // SUM / BCAST: factor on the result (1 or 1/n for a mean)
  total: 'u32', // elements of x (BCAST, MAX_GRAD)
});
