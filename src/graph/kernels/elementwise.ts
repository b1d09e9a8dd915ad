// Kernel family `elementwise` (shaders/elementwise.wgsl): unary maps, broadcasting binary ops,
// fills and the broadcast reduction; the uniform schema shared by all kinds. (The operation
// itself is the OP specialisation, not a uniform.)
import { uniformSchema } from './uniforms.ts';

export const elementwiseParams = uniformSchema('elementwise', {
  n: 'u32', // output elements
  rank: 'u32',
  dims: 'array<vec4<u32>, 2>', // output shape, padded (dims[0].x = outermost)
  sa: 'array<vec4<u32>, 2>', // element strides of operand a (0 = broadcast)
  // BINARY: element strides of operand b (0 = broadcast). REDUCE_TO: the sizes of a along each
  // axis (reduced where the output's dim is 1).
  sb: 'array<vec4<u32>, 2>',
  alpha: 'f32', // UNARY affine: α·x + β; FILL: the value
  beta: 'f32',
});
