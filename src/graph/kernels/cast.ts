// Kernel family `cast` (shaders/cast.wgsl): f32 ↔ f16 conversion; its uniform schema.
import { uniformSchema } from './uniforms.ts';

export const castParams = uniformSchema('cast', { n: 'u32' });
