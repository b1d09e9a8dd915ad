// Kernel family `optim` (shaders/optim.wgsl): AdamW and clip_grad_norm_; the uniform schema
// shared by ADAMW, SUMSQ, NORM and SCALE. Each kind reads only its own fields (the others are
// packed as 0). Scalars are computed in double on the CPU and rounded to f32 by the packing
// (torch casts Python scalars likewise).
import { uniformSchema } from './uniforms.ts';

export const optimParams = uniformSchema('optim', {
  n: 'u32', // elements (ADAMW, SUMSQ, SCALE)
  slot: 'u32', // SUMSQ: slot of `sums` written
  count: 'u32', // NORM: slots summed
  // ADAMW: p *= decay (= 1 − lr·wd); m = m·beta1 + omb1·g; v = v·beta2 + omb2·g·g;
  // p += −stepSize · (m / (sqrt(v)/bc2sqrt + eps)).
  decay: 'f32', beta1: 'f32', omb1: 'f32', beta2: 'f32', omb2: 'f32', stepSize: 'f32', bc2sqrt: 'f32', eps: 'f32',
  gradScale: 'f32', // ADAMW, SUMSQ, SCALE: each gradient is read as f32(g)·gradScale
  maxNorm: 'f32', // SCALE: out = g·min(1, maxNorm / (total + 1e-6))
});
