// Float64 references for the random ops, built on the TypeScript copy of the generator.
import { cpuBits, cpuUniform } from '../../src/graph/ops/random.ts';

/** Box–Muller exactly as shaders/random.wgsl defines it, in float64. */
export function normalRef(seed: number, n: number, std = 1): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const u1 = ((cpuBits(seed, 2 * i) >>> 8) + 1) / 16777216;
    const u2 = (cpuBits(seed, 2 * i + 1) >>> 8) / 16777216;
    out[i] = Math.fround(std) * Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2 - Math.PI);
  }
  return out;
}

/**
 * Inverted dropout: keep where u ≥ p, scale 1/(1−p). `f32Rounding` rounds the scale and each
 * product to f32 as the GPU does (bit-exact comparisons); off, it is plain float64 (smooth in
 * x, for finite differences).
 */
export function dropoutRef(x: ArrayLike<number>, p: number, seed: number, f32Rounding = true): Float64Array {
  const u = cpuUniform(seed, x.length);
  const pf = Math.fround(p);
  const scale = f32Rounding ? Math.fround(1 / (1 - p)) : 1 / (1 - p);
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = u[i] >= pf ? (f32Rounding ? Math.fround(x[i] * scale) : x[i] * scale) : 0;
  return out;
}
