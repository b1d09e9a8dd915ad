// Workgroup grids of 1-D kernels (shared by ops and by kernel families that plan their own
// dispatches); the WGSL side is shaders/lib/grid.wgsl (flat_id).

/** Threads per workgroup of the 1-D kernels. */
export const WG = 256;

/** Workgroup grid for `n` threads of a `wg`-wide 1-D kernel (folds into y past 65535). */
export function grid1d(n: number, wg = WG): [number, number] {
  const groups = Math.max(1, Math.ceil(n / wg));
  if (groups <= 65535) return [groups, 1];
  const y = Math.ceil(groups / 65535);
  return [Math.ceil(groups / y), y];
}
