// One map through which tests and benchmarks force a kernel variant; everything else is chosen
// from the device profile (and, where tuned, by measurement). Unset entries mean "choose".
export interface KernelOverrides {
  /** Matrix products: the register-blocked kernel (CPU adapters) or the tiled one. */
  matmul: 'register' | 'tiled';
  /** matmul's large register block (benchmark sweeps): invocations, rows per lane, columns. */
  matmulRegisterBlock: { WG: number; RM: number; RN: number };
  /** Convolution GEMMs: register-blocked (GEMMR/DWR) or the vec4 tiled GEMM4/DW. */
  conv: 'register' | 'gemm4';
  /** Grouped expert matmuls. */
  moe: 'register' | 'tiled';
  /** Attention forward / probabilities (a forced choice also turns off the one-query kernel). */
  attention: 'register' | 'tiled';
  /** Strided copies (permute, slice, concat, split): per element or per innermost run. */
  copy: 'elements' | 'runs';
  /** Few-row products: lanes per workgroup. */
  matvecLanes: 8 | 64;
  /** Few-row products: partial sums per lane. */
  matvecSumsPerLane: number;
  /** RMSNorm row reduction: one SIMD vector (8) or the GPU width. */
  rmsNormWidth: 8 | 'gpu';
  /** BatchNorm channel reductions: 8 (per-row layouts) or 256. */
  batchNormWidth: 8 | 256;
  /**
   * The storage-binding size weights are split against (Weights: a tensor above half of it is
   * stored in pieces along axis 0); default the adapter's maxStorageBufferBindingSize. Tests set
   * it small to exercise the pieces that only paper-size weights need.
   */
  weightBindingLimit: number;
  /**
   * Bytes of patch columns the conv matmul kind makes at once (default IM2COL_MAX_BYTES; larger
   * ones go a chunk of output rows at a time). Tests set it small to exercise the chunks.
   */
  convPatchBytes: number;
}

const overrides: Partial<KernelOverrides> = {};

/**
 * Forces kernel variants: `setKernelOverrides({ matmul: 'register' })`; a key set to undefined
 * goes back to the automatic choice. Returns the previous values of the keys given, so a test
 * can restore them: `const prev = setKernelOverrides({...}); … setKernelOverrides(prev)`.
 */
export function setKernelOverrides(o: { [K in keyof KernelOverrides]?: KernelOverrides[K] | undefined }): Partial<KernelOverrides> {
  const prev: Record<string, unknown> = {};
  for (const k of Object.keys(o) as (keyof KernelOverrides)[]) {
    prev[k] = overrides[k];
    const v = o[k];
    if (v === undefined) delete overrides[k];
    else (overrides as Record<string, unknown>)[k] = v;
  }
  if (o.matmulRegisterBlock) {
    const { WG, RM, RN } = o.matmulRegisterBlock;
    if (RM % 4 || RN % 4 || RM <= 0 || RN <= 0 || WG <= 0) throw new Error(`setKernelOverrides: matmulRegisterBlock RM ${RM} and RN ${RN} must be positive multiples of 4`);
  }
  if (o.matvecSumsPerLane !== undefined && (!Number.isInteger(o.matvecSumsPerLane) || o.matvecSumsPerLane < 1))
    throw new Error(`setKernelOverrides: matvecSumsPerLane ${o.matvecSumsPerLane} must be a positive integer`);
  return prev as Partial<KernelOverrides>;
}

/** Clears every override. */
export function clearKernelOverrides(): void {
  for (const k of Object.keys(overrides)) delete (overrides as Record<string, unknown>)[k];
}

export function kernelOverride<K extends keyof KernelOverrides>(k: K): KernelOverrides[K] | undefined {
  return overrides[k];
}
