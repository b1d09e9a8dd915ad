// Kernel family `norm` (shaders/norm.wgsl): RMS norm over the last axis; the uniform schema
// shared by FWD, DX and DW.
import { uniformSchema } from './uniforms.ts';

export const normParams = uniformSchema('norm', { rows: 'u32', D: 'u32', eps: 'f32' });
