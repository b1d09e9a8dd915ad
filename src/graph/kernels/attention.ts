// Kernel family `attention` (shaders/attention.wgsl): fused scaled-dot-product attention; the
// uniform schema shared by all its kinds.
import { uniformSchema } from './uniforms.ts';

export const attentionParams = uniformSchema('attention', {
  BH: 'u32', H: 'u32', Sq: 'u32', Sk: 'u32', // batch·heads, heads, query and key rows
  scale: 'f32',
  mb: 'u32', mq: 'u32', mk: 'u32', // mask element strides over (batch, query, key); 0 = broadcast
});
