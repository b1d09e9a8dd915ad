// Kernel families of 2-D convolution (shaders/conv.wgsl): the uniform schema shared by its
// entry points, and the two tunable GEMMs — `conv` (forward and dX, rows = pixels, columns =
// channels) and `conv_dw` (weight gradient, rows = output channels) — with their hand picks and
// candidates. The bodies are emitted in src/graph/ops/conv.ts.
import type { DeviceProfile } from '../../gpu/profile.ts';
import { kernelOverride } from './overrides.ts';
import { type KernelFamily, pow2Bucket, smallRegisterBlocks } from './catalogue.ts';
import { uniformSchema } from './uniforms.ts';
import { WINDOW_BLOCKS } from './matmul.ts';

export const convParams = uniformSchema('conv', {
  N: 'u32', C: 'u32', H: 'u32', W: 'u32', // the conv's input
  O: 'u32', OH: 'u32', OW: 'u32', total: 'u32', // its output; total = threads for 1-D kernels
  M: 'u32', NC: 'u32', SC4: 'u32', NB4: 'u32', // GEMM rows, true columns, vec4 channels of the gathered operand, vec4 columns of WB
  SH: 'u32', SW: 'u32', CR: 'u32', // spatial size of the gathered operand; GEMMR: its true channels
});

/** IM2COL: rows (image, oh, ow) × Kp columns (c, ky, kx; zeros past K = C·KH·KW). */
export const convIm2colParams = uniformSchema('conv_im2col', {
  C: 'u32', H: 'u32', W: 'u32', OH: 'u32', OW: 'u32', K: 'u32', Kp: 'u32', total: 'u32',
});

/**
 * Bytes of im2col scratch up to which the forward conv may run as im2col + matmul's WINDOW
 * kernel (its patches matrix is M × C·KH·KW floats: tens of MiB at the paper's image size).
 */
export const IM2COL_MAX_BYTES = 32 * 1024 * 1024;

export function im2colBytes(g: { M: number; C: number; K: number }): number {
  return g.M * Math.ceil((g.C * g.K * g.K) / 4) * 4 * 4;
}

export interface ConvConfig {
  /** Invocations per workgroup (1-D). */
  WG: number;
  /** GEMM rows per invocation. */
  RM: number;
  /** GEMM columns per workgroup (a multiple of 4), shared by all its invocations. */
  RN: number;
}

/** A conv GEMM configuration: the register-blocked unrolled kernel (GEMMR/DWR) or GEMM4/DW4. */
export interface ConvGemmConfig extends ConvConfig {
  /** window (forward only): im2col into scratch, then matmul's WINDOW kernel with the weights as Bᵀ. */
  kind: 'register' | 'gemm4' | 'window';
}

/**
 * Register blocking of GEMM4/DW4 for an M-row GEMM. Measured on llvmpipe (the loads, not the
 * FMAs, are the cost there): 16 rows × 8 columns per invocation ran 2–4× faster than 4×8 or
 * 8×8, and wider column blocks (RN 12, 16) fell off a cliff; small M shrinks RM so lanes are not idle.
 */
export function convConfig(M: number): ConvConfig {
  const WG = 32;
  return { WG, RM: Math.min(16, Math.max(1, Math.ceil(M / WG))), RN: 8 };
}

/**
 * Register block of the GEMMR kernel for an M-row GEMM with `cols` columns. Measured on
 * llvmpipe over the tiny config's convs (bench/convlayers.ts): one SIMD vector of lanes (WG 8)
 * × 8 rows × 16 columns beat 4×16, 4×32, 16×8, 12×16 and WG 16 by 5–30%; few rows get fewer
 * rows per lane so lanes are not idle, few columns a narrower strip.
 */
export function convRegisterConfig(M: number, cols: number, blockLimit = 128): ConvConfig {
  const WG = 8;
  // Under a smaller accumulator limit (SwiftShader: 32), 4 rows × 8 columns.
  const small = blockLimit < 128;
  const RN = small || cols <= 8 ? 8 : 16;
  return { WG, RM: Math.min(small ? 4 : 8, Math.max(1, Math.ceil(M / WG))), RN };
}

/** Register block of the DWR kernel: O rows (output channels), uniform (tap, channel) columns. */
export function convDwRegisterConfig(O: number, blockLimit = 128): ConvConfig {
  const small = blockLimit < 128;
  return { WG: 8, RM: Math.min(small ? 4 : 8, Math.max(1, Math.ceil(O / 8))), RN: small ? 8 : 16 };
}

/**
 * Register kernels by default: a software adapter that compiles register blocks in acceptable
 * time (Mesa; SwiftShader with small blocks), or forced.
 */
export function convRegisterDefault(profile: DeviceProfile): boolean {
  const forced = kernelOverride('conv');
  return forced ? forced === 'register' : profile.software && profile.registerBlockLimit > 0;
}

/** Register blocks [WG, RM, RN] timed on an adapter with this accumulator limit (RM·RN ≤ it). */
function registerBlocks(profile: DeviceProfile, wide: number[][], gpu: number[][]): number[][] {
  if (!profile.software) return gpu;
  if (profile.registerBlockLimit >= 128) return wide;
  // SwiftShader compiles a conv body in seconds: few blocks (the tuner there spent its whole
  // 60 s page budget on 3 classes with 6 candidates each).
  return [[8, 4, 8], [8, 8, 4], [8, 2, 8]].filter(([, RM, RN]) => RM * RN <= Math.max(profile.registerBlockLimit, 32));
}

/** The GEMM of a conv pass: M rows, `cols` columns, reducing over `taps` × `CR` channels. */
export interface ConvGemmGeometry {
  pass: 'fwd' | 'dx';
  N: number; C: number; H: number; W: number; O: number; K: number; stride: number; pad: number; bias: boolean;
  /** GEMM rows, columns, reduction channels. */
  M: number; cols: number; CR: number;
}

export interface ConvDwGeometry {
  N: number; C: number; H: number; W: number; O: number; K: number; stride: number; pad: number;
}

function key(c: ConvGemmConfig): string {
  return `${c.kind}:${c.WG}x${c.RM}x${c.RN}`;
}

function parse(s: string): ConvGemmConfig | null {
  const m = /^(register|gemm4|window):(\d+)x(\d+)x(\d+)$/.exec(s);
  if (!m) return null;
  const [WG, RM, RN] = m.slice(2).map(Number);
  if (!(WG > 0 && RM > 0 && RN > 0 && RN % 4 === 0 && RM <= 32 && RN <= 32)) return null;
  if (m[1] === 'window' && !WINDOW_BLOCKS.some(([w, r, n]) => w === WG && r === RM && n === RN)) return null;
  return { kind: m[1] as ConvGemmConfig['kind'], WG, RM, RN };
}

/** The forward conv can run as im2col + matmul's WINDOW kernel (f32 is checked by the op). */
export function convWindowApplies(g: ConvGemmGeometry): boolean {
  return g.pass === 'fwd' && im2colBytes(g) <= IM2COL_MAX_BYTES;
}

function dedupe(cs: ConvGemmConfig[]): ConvGemmConfig[] {
  const seen = new Set<string>();
  return cs.filter((c) => !seen.has(key(c)) && !!seen.add(key(c)));
}

const forced = () => kernelOverride('conv') !== undefined;

export const convFamily: KernelFamily<ConvGemmGeometry, ConvGemmConfig> = {
  name: 'conv',
  bucket: (g) => `${g.pass}:k${g.K}s${g.stride}:${pow2Bucket(g.M)}x${pow2Bucket(g.cols)}x${pow2Bucket(g.CR)}${g.bias ? '+b' : ''}`,
  handPicked: (g, profile) => (convRegisterDefault(profile) ? { kind: 'register', ...convRegisterConfig(g.M, g.cols, profile.registerBlockLimit) } : { kind: 'gemm4', ...convConfig(g.M) }),
  candidates(g, profile) {
    const rows = (WG: number, RM: number) => Math.min(RM, Math.max(1, Math.ceil(g.M / WG)));
    const out: ConvGemmConfig[] = [];
    // Each candidate costs a compile of its register body per (kernel size, stride, pass):
    // seconds on llvmpipe, so software adapters time few blocks and GEMM4 only as hand-picked.
    if (profile.registerBlockLimit > 0 || kernelOverride('conv') === 'register') {
      const blocks = registerBlocks(profile, [[8, 8, 16], [8, 4, 16], [8, 16, 8]], [[8, 8, 16], [8, 4, 16], [8, 8, 8], [8, 16, 8], [8, 4, 32], [16, 8, 16]]);
      for (const [WG, RM, RN] of blocks) {
        if (RN > 2 * Math.max(g.cols, 8)) continue;
        out.push({ kind: 'register', WG, RM: rows(WG, RM), RN });
      }
    }
    // Software adapters with small register blocks (SwiftShader) time no GEMM4: it ran the tiny
    // model's step 1.9× slower there than 4×8 register blocks.
    const tiles = !profile.software ? [[32, 16, 8], [64, 8, 8], [32, 8, 8], [16, 16, 8]]
      : smallRegisterBlocks(profile) ? []
      : [[32, 16, 8]];
    for (const [WG, RM, RN] of tiles) out.push({ kind: 'gemm4', WG, RM: rows(WG, RM), RN });
    // im2col + WINDOW (llvmpipe reads the weights as uniform windows: broadcast loads), for
    // 1×1 kernels only: measured on llvmpipe (bench conv shapes and the tiny model's layers), it
    // ran 1×1 256→256 at 28² 1.2× the register kernel, but every 3×3 and the 7×7 stem at
    // 0.6–0.8× (the patches pass costs a per-lane load and store per element).
    if ((profile.unrolledKernels || kernelOverride('conv') === 'register') && g.K === 1 && convWindowApplies(g)) {
      for (const [WG, RM, RN] of WINDOW_BLOCKS.slice(0, 2)) out.push({ kind: 'window', WG, RM, RN });
    }
    return dedupe([convFamily.handPicked(g, profile), ...out]);
  },
  configKey: key,
  parseConfig: parse,
  forced,
};

export const convDwFamily: KernelFamily<ConvDwGeometry, ConvGemmConfig> = {
  name: 'conv_dw',
  shader: 'conv',
  bucket: (g) => `k${g.K}s${g.stride}:${pow2Bucket(g.O)}x${pow2Bucket(g.C)}x${pow2Bucket(g.N * g.H * g.W)}`,
  handPicked: (g, profile) => (convRegisterDefault(profile) ? { kind: 'register', ...convDwRegisterConfig(g.O, profile.registerBlockLimit) } : { kind: 'gemm4', ...convConfig(g.O) }),
  candidates(g, profile) {
    const rows = (WG: number, RM: number) => Math.min(RM, Math.max(1, Math.ceil(g.O / WG)));
    const out: ConvGemmConfig[] = [];
    if (profile.registerBlockLimit > 0 || kernelOverride('conv') === 'register') {
      const blocks = registerBlocks(profile, [[8, 8, 16], [8, 4, 16], [8, 8, 8]], [[8, 8, 16], [8, 4, 16], [8, 8, 8], [8, 4, 32]]);
      for (const [WG, RM, RN] of blocks) out.push({ kind: 'register', WG, RM: rows(WG, RM), RN });
    }
    const tiles = !profile.software ? [[32, 16, 8], [32, 8, 8], [64, 4, 8]]
      : smallRegisterBlocks(profile) ? []
      : [[32, 16, 8]];
    for (const [WG, RM, RN] of tiles) out.push({ kind: 'gemm4', WG, RM: rows(WG, RM), RN });
    return dedupe([convDwFamily.handPicked(g, profile), ...out]);
  },
  configKey: key,
  // (no WINDOW form of the weight gradient)
  parseConfig: (s) => { const c = parse(s); return c && c.kind !== 'window' ? c : null; },
  forced,
};
