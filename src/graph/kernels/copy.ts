// Kernel families `copy` and `copyruns` (shaders/copy.wgsl, shaders/copyruns.wgsl): the strided
// copy behind permute, slice, concat and split, per element or per innermost run; their shared
// uniform schema.
import { uniformSchema } from './uniforms.ts';

export const copyParams = uniformSchema('copy', {
  n: 'u32', // invocations: elements (copy) or runs of the innermost axis (copyruns)
  rank: 'u32',
  srcOff: 'u32', dstOff: 'u32', // element offsets of the box in src and dst
  dims: 'array<vec4<u32>, 2>', // the index box, padded (dims[0].x = outermost)
  ss: 'array<vec4<u32>, 2>', // element strides of src
  ds: 'array<vec4<u32>, 2>', // element strides of dst
});
