// Kernel families `copy` and `copyruns` (shaders/copy.wgsl, shaders/copyruns.wgsl): the strided
// copy behind permute, slice, concat and split, per element or per innermost run; their shared
// uniform schema, and the tunable choice between them (`copyFamily`).
import type { DeviceProfile } from '../../gpu/profile.ts';
import { type KernelFamily, pow2Bucket } from './catalogue.ts';
import { kernelOverride } from './overrides.ts';
import { uniformSchema } from './uniforms.ts';

export const copyParams = uniformSchema('copy', {
  n: 'u32', // invocations: elements (copy) or runs of the innermost axis (copyruns)
  rank: 'u32',
  srcOff: 'u32', dstOff: 'u32', // element offsets of the box in src and dst
  dims: 'array<vec4<u32>, 2>', // the index box, padded (dims[0].x = outermost)
  ss: 'array<vec4<u32>, 2>', // element strides of src
  ds: 'array<vec4<u32>, 2>', // element strides of dst
});

/** A copy box after merging axes (ops/shape.ts mergeCopyAxes): sizes and element strides, innermost last. */
export interface CopyGeometry {
  dims: number[]; ss: number[]; ds: number[]; dtype: string;
}

/** One invocation per element (copy.wgsl) or per run of the innermost axis (copyruns.wgsl). */
export interface CopyConfig {
  layout: 'elements' | 'runs';
}

const runsOf = (g: CopyGeometry) => g.dims.slice(0, -1).reduce((a, b) => a * b, 1);

/**
 * Hand pick: runs on software adapters for boxes of ≥ 64 runs, or of runs longer than 256
 * elements whatever their count (the index arithmetic — integer division, which has no SIMD form
 * there — once per run instead of per element), else elements. The long runs were measured:
 * every such class the tuner met switched to runs, 3.6–10.5× faster (bench tune on llvmpipe, 7
 * classes; bench browser-tune on SwiftShader, 3). A `copy` override forces the layout.
 */
export function copyHandConfig(g: CopyGeometry, profile: DeviceProfile): CopyConfig {
  const forced = kernelOverride('copy');
  if (forced) return { layout: forced };
  const inner = g.dims[g.dims.length - 1];
  return { layout: g.dims.length > 1 && (inner > 256 || runsOf(g) >= 64) && profile.software ? 'runs' : 'elements' };
}

export const copyFamily: KernelFamily<CopyGeometry, CopyConfig> = {
  name: 'copy',
  shader: ['copy', 'copyruns'],
  // Rank, run length and count, and whether the innermost axis is contiguous on each side.
  bucket: (g) => {
    const last = g.dims.length - 1;
    return `r${g.dims.length}:${pow2Bucket(g.dims[last])}x${pow2Bucket(runsOf(g))}:${g.ss[last] === 1 ? 'c' : 's'}${g.ds[last] === 1 ? 'c' : 's'}:${g.dtype}`;
  },
  handPicked: copyHandConfig,
  candidates: (g, profile) => {
    const out = [copyHandConfig(g, profile)];
    if (g.dims.length > 1) for (const layout of ['elements', 'runs'] as const) if (layout !== out[0].layout) out.push({ layout });
    return out;
  },
  configKey: (c) => c.layout,
  parseConfig: (s) => (s === 'elements' || s === 'runs' ? { layout: s } : null),
  forced: () => kernelOverride('copy') !== undefined,
};
