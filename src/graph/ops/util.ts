// Helpers shared by op implementations.
import type { Tensor } from '../tensor.ts';
import { runtime } from '../runtime.ts';
import { type DeviceProfile, GENERIC_PROFILE } from '../../gpu/profile.ts';

export { grid1d, WG } from '../kernels/grid.ts';

export function numel(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function stridesOf(shape: number[]): number[] {
  const s = new Array(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = s[i + 1] * shape[i + 1];
  return s;
}

/** NumPy broadcasting of two shapes. */
export function broadcastShapes(a: number[], b: number[], op: string): number[] {
  const r = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < r; i++) {
    const x = a[a.length - r + i] ?? 1, y = b[b.length - r + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) throw new Error(`${op}: shapes [${a}] and [${b}] do not broadcast`);
    out.push(x === 1 ? y : x);
  }
  return out;
}

/** Element strides of `shape` read as broadcast into `out` (0 on broadcast axes). */
export function broadcastStrides(shape: number[], out: number[]): number[] {
  const st = stridesOf(shape);
  const off = out.length - shape.length;
  return out.map((n, i) => (i < off || shape[i - off] === 1 ? 0 : st[i - off]));
}

export function assertDtype(t: Tensor, dtype: string, op: string, what = 'input'): void {
  if (t.dtype !== dtype) throw new Error(`${op}: ${what} ${t} must be ${dtype}, got ${t.dtype}`);
}

/** f32 or f16 (the element type the kernels are specialised for; see floatType). */
export function assertFloat(t: Tensor, op: string, what = 'input'): void {
  if (t.dtype !== 'f32' && t.dtype !== 'f16') throw new Error(`${op}: ${what} ${t} must be f32 or f16, got ${t.dtype}`);
}

/** The running adapter's profile (a generic GPU profile before the runtime exists). */
export function adapterProfile(): DeviceProfile {
  try {
    return runtime().profile;
  } catch {
    return GENERIC_PROFILE;
  }
}
