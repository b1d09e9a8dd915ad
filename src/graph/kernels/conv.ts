// Kernel families of 2-D convolution (shaders/conv.wgsl): the uniform schema shared by its
// entry points, and the two tunable GEMMs — `conv` (forward and dX, rows = pixels, columns =
// channels) and `conv_dw` (weight gradient, rows = output channels) — with their hand picks and
// candidates, and the emitters of their unrolled register bodies (GEMMR, DWR).
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

/**
 * IM2COL: rows (image, oh, ow) × Kp columns (c, ky, kx; zeros past K = C·KH·KW). IM2COL_ROWS:
 * rows (image, k) × the output pixels of output rows oh0 … oh0 + OHc − 1 (a chunk of them).
 */
export const convIm2colParams = uniformSchema('conv_im2col', {
  C: 'u32', H: 'u32', W: 'u32', OH: 'u32', OW: 'u32', K: 'u32', Kp: 'u32', total: 'u32', oh0: 'u32', OHc: 'u32',
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
  /**
   * window (forward only): im2col into scratch, then matmul's WINDOW kernel with the weights as Bᵀ.
   * matmul (forward): each image's output [O, OH·OW] as weight [O, C·KH·KW] times its patch
   * columns (im2col; a 1×1 stride-1 unpadded conv reads its input) on matmul's register kernel
   * from a transposed copy of the weight (TA): RM·WG rows are output channels (the bias per
   * row), RN columns pixels read 4 per vec4 load, NCHW stored as it is.
   */
  kind: 'register' | 'gemm4' | 'window' | 'matmul';
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
  const m = /^(register|gemm4|window|matmul):(\d+)x(\d+)x(\d+)$/.exec(s);
  if (!m) return null;
  const [WG, RM, RN] = m.slice(2).map(Number);
  if (!(WG > 0 && RM > 0 && RN > 0 && RN % 4 === 0 && RM <= 32 && RN <= 32)) return null;
  if (m[1] === 'window' && !WINDOW_BLOCKS.some(([w, r, n]) => w === WG && r === RM && n === RN)) return null;
  if (m[1] === 'matmul' && RM % 4 !== 0) return null;
  return { kind: m[1] as ConvGemmConfig['kind'], WG, RM, RN };
}

/** The forward conv reads its input as the patch matrix itself (1×1, stride 1, no padding). */
export function convIsProduct(g: { K: number; stride: number; pad: number }): boolean {
  return g.K === 1 && g.stride === 1 && g.pad === 0;
}

const patchBytes = () => kernelOverride('convPatchBytes') ?? IM2COL_MAX_BYTES;

/** A conv's output size along one axis of input size n (PyTorch: ⌊(n + 2p − k)/s⌋ + 1). */
export function convOutSize(n: number, K: number, stride: number, pad: number): number {
  return Math.floor((n + 2 * pad - K) / stride) + 1;
}

/** The matmul kind's hand-picked block for a product of `rows` rows: 16 rows a lane from 128 rows, as matmul's blocks. */
const matmulKindBlock = (rows: number): ConvGemmConfig => ({ kind: 'matmul', WG: 8, RM: rows >= 128 ? 16 : 8, RN: 16 });

/** The matmul kind's candidate blocks for a product of `rows` rows (a workgroup at most twice them). */
const matmulKindCandidates = (rows: number): ConvGemmConfig[] =>
  [[8, 8, 16], [8, 16, 16]].filter(([WG, RM]) => WG * RM <= 2 * Math.max(rows, 32)).map(([WG, RM, RN]) => ({ kind: 'matmul', WG, RM, RN }));

/**
 * How the matmul kind makes its patch columns ([N][C·KH·KW][pixels]): output rows per chunk
 * (OHc) and chunks, each within IM2COL_MAX_BYTES and the chunks as even as that allows.
 */
export function convMatmulChunks(N: number, K: number, OH: number, OW: number, bytes = 4): { OHc: number; chunks: number } {
  const rowBytes = N * K * OW * bytes;
  const fit = Math.max(1, Math.floor(patchBytes() / rowBytes));
  const chunks = Math.ceil(OH / fit);
  return { OHc: Math.ceil(OH / chunks), chunks };
}

/**
 * The conv can run as weight × patch columns on matmul's register kernel (matmul kind): the
 * forward, or the input gradient of a stride-1 conv (padding < kernel: a conv of dY with the
 * flipped weight); the product's rows (output channels; C for dX) in whole vec4s (the weight's
 * transposed copy is read 4 rows per load), and one output row's patch columns within the
 * scratch limit (larger ones go a chunk of output rows at a time). (A bias is per output
 * channel: per row of the product.)
 */
export function convMatmulApplies(g: ConvGemmGeometry): boolean {
  if (g.cols % 4 !== 0) return false;
  if (g.pass === 'fwd') {
    return convIsProduct(g) || g.N * g.C * g.K * g.K * convOutSize(g.W, g.K, g.stride, g.pad) * 4 <= patchBytes();
  }
  // dX: the conv of dY [N, O, OH, OW] with padding K − 1 − pad, its output row W pixels wide
  return g.stride === 1 && g.pad <= g.K - 1 && (convIsProduct(g) || g.N * g.O * g.K * g.K * g.W * 4 <= patchBytes());
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
  handPicked: (g, profile) => {
    if (!convRegisterDefault(profile)) return { kind: 'gemm4', ...convConfig(g.M) };
    // Weight × patch columns (matmul kind), llvmpipe, pairs alternating (timeTrialPair): 1×1
    // stride-1 convs (the input is the operand) on maps of ≥ 14×14: 1.16–1.38× GEMMR on the
    // paper's at 64 px input (16×16 maps, 64–256 channels) and bench conv's (28², 56²),
    // 1.17–1.73× on ResNet-101's layer3 at 224 px (14×14, 1024↔256); on 2×2–8×8 maps
    // 0.34–0.89×. Other convs (im2col first) on output maps of ≥ 14×14 from 128 output channels:
    // 3×3 256→256 on 28² 1.22×, on 14² 1.00×; ResNet-101 at 224 px: 1×1 stride-2 512→1024
    // 28²→14² 1.50–1.67×, 3×3 stride-2 256→256 28²→14² 1.16×, the FPN's 3×3 2048→2048 fusion
    // conv on 56² (its patch columns in chunks of output rows) 1.42–1.81×; but 64→64 on 56²
    // 0.63–0.89× (the patch pass is as large, the product a quarter) and 3×3 stride-2 512→512
    // 14²→7² 0.54×.
    const P = g.M / g.N;   // output pixels per image
    if (!forced() && profile.unrolledKernels && convMatmulApplies(g) && P >= 196 && (convIsProduct(g) || g.cols >= 128)) return matmulKindBlock(g.cols);
    return { kind: 'register', ...convRegisterConfig(g.M, g.cols, profile.registerBlockLimit) };
  },
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
    // Weight × patch columns on matmul's register kernel (register blocks of ≥ 128 accumulators
    // compile only where bodies unroll: llvmpipe).
    if ((profile.unrolledKernels || kernelOverride('conv') === 'register') && convMatmulApplies(g) && g.M / g.N >= 128) out.push(...matmulKindCandidates(g.cols));
    return dedupe([convFamily.handPicked(g, profile), ...out]);
  },
  configKey: key,
  parseConfig: parse,
  forced,
};

/** The weight gradient's kernels that read the conv's operands as they lie (DWR on CPU adapters, else DW4). */
export function convDwDirect(g: ConvDwGeometry, profile: DeviceProfile): ConvGemmConfig {
  return convRegisterDefault(profile) ? { kind: 'register', ...convDwRegisterConfig(g.O, profile.registerBlockLimit) } : { kind: 'gemm4', ...convConfig(g.O) };
}

/**
 * The weight gradient can run on the matmul kind: dW [O, C·KH·KW] = Σ dYᵀ-rows × patch rows, a
 * chunk of output rows (of all images in turn) at a time, summed in place; output channels in
 * whole vec4s (dYᵀ is read 4 channels per load) and one output row's patches within the
 * scratch limit.
 */
export function convDwMatmulApplies(g: ConvDwGeometry): boolean {
  return g.O % 4 === 0 && convOutSize(g.W, g.K, g.stride, g.pad) * g.C * g.K * g.K * 4 <= patchBytes();
}

/**
 * Where the weight gradient's matmul kind is hand-picked (CPU adapters that unroll). Measured on
 * llvmpipe, alternating pairs, 8×16×16 against DWR: 3×3 stride-2 from 256 output channels 1.80×
 * (256, 28²) and 1.23× (512, 14²). Not the FPN fusion conv's pieces (C·K² = 18432, 56²): 1.15×
 * alone, but in the paper training step the dW products took 12.9 s of GPU time against DWR's
 * 9.8 s (timestamps, one step each). Most others lose, 0.38–0.89× (the per-element patch pass
 * costs as much as a product with few output channels): 3×3 stride 1 at 14²–56² with 128
 * channels and fewer, the 7×7 stem; 1×1 0.47–1.17×. Those are left to the tuner.
 */
const DW_MATMUL_RULE = (g: ConvDwGeometry) => g.O >= 256 && g.K === 3 && g.stride === 2;

export const convDwFamily: KernelFamily<ConvDwGeometry, ConvGemmConfig> = {
  name: 'conv_dw',
  shader: 'conv',
  bucket: (g) => `k${g.K}s${g.stride}:${pow2Bucket(g.O)}x${pow2Bucket(g.C)}x${pow2Bucket(g.N * g.H * g.W)}`,
  handPicked: (g, profile) => {
    if (!forced() && profile.unrolledKernels && convDwMatmulApplies(g) && DW_MATMUL_RULE(g)) return matmulKindBlock(g.O);
    return convDwDirect(g, profile);
  },
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
    // dYᵀ × patch rows on matmul's register kernel (as the conv family's matmul kind).
    if ((profile.unrolledKernels || kernelOverride('conv') === 'register') && convDwMatmulApplies(g) && g.N * g.H * g.W >= 128) out.push(...matmulKindCandidates(g.O));
    return dedupe([convDwFamily.handPicked(g, profile), ...out]);
  },
  configKey: key,
  // (no WINDOW form of the weight gradient)
  parseConfig: (s) => { const c = parse(s); return c && c.kind !== 'window' ? c : null; },
  forced,
};

/**
 * GEMMR's unrolled body (after the shader's prologue): per-row pixel setup, RM×RN scalar
 * accumulators c{i}_{j}, the tap loops (dX: whole taps skipped per stride-parity class), one
 * channel per iteration, then the NCHW stores. Names: r{i} row, o{i} A offset, a{i}, b{j}.
 */
export function convRegisterBody(cfg: ConvConfig, fwd: boolean, hasBias: boolean): string {
  const { RM, RN } = cfg, L: string[] = [];
  const comp = ['x', 'y', 'z', 'w'];
  for (let i = 0; i < RM; i++) {
    L.push(`  let m${i} = min(mBase + ${i}u * WG, p.M - 1u);`);
    L.push(`  let pix${i} = m${i} % rowP;`);
    L.push(`  let img${i} = (m${i} / rowP) * p.SH * p.SW;`);
    if (fwd) L.push(`  let py${i} = i32(pix${i} / rowW) * S - PAD;`, `  let px${i} = i32(pix${i} % rowW) * S - PAD;`);
    else L.push(`  let py${i} = i32(pix${i} / rowW);`, `  let px${i} = i32(pix${i} % rowW);`);
  }
  for (let i = 0; i < RM; i++) for (let j = 0; j < RN; j++) L.push(`  var c${i}_${j}: f32 = 0.0;`);
  L.push('  for (var ky = 0u; ky < KH; ky++) {');
  if (!fwd) L.push('    let ry = cy + PAD - i32(ky);', '    if (ry % S != 0) { continue; }');
  L.push('    for (var kx = 0u; kx < KW; kx++) {');
  if (!fwd) L.push('      let rx = cx + PAD - i32(kx);', '      if (rx % S != 0) { continue; }');
  for (let i = 0; i < RM; i++) {
    L.push(fwd ? `      let sy${i} = py${i} + i32(ky);` : `      let sy${i} = py${i} + ry / S;`);
    L.push(fwd ? `      let sx${i} = px${i} + i32(kx);` : `      let sx${i} = px${i} + rx / S;`);
    L.push(`      let o${i} = select(zeroOff, (img${i} + u32(sy${i}) * p.SW + u32(sx${i})) * CS, sy${i} >= 0 && sy${i} < i32(p.SH) && sx${i} >= 0 && sx${i} < i32(p.SW));`);
  }
  L.push('      let tapRow = (ky * KW + kx) * CS;');
  L.push('      for (var c = 0u; c < p.CR; c++) {');
  for (let i = 0; i < RM; i++) L.push(`        let a${i} = f32(A[o${i} + c]);`);
  L.push('        let wrow = (tapRow + c) * p.NB4 + col4;');
  for (let j4 = 0; j4 < RN / 4; j4++) {
    L.push(`        let bv${j4} = vec4<f32>(WB[wrow + ${j4}u]);`);
    for (let e = 0; e < 4; e++) L.push(`        let b${4 * j4 + e} = bv${j4}.${comp[e]};`);
  }
  for (let i = 0; i < RM; i++) for (let j = 0; j < RN; j++) L.push(`        c${i}_${j} = fma(a${i}, b${j}, c${i}_${j});`);
  L.push('      }', '    }', '  }');
  for (let j = 0; j < RN; j++) L.push(`  let bias${j} = ${hasBias ? `f32(bias[min(col0 + ${j}u, p.NC - 1u)])` : '0.0'};`);
  for (let i = 0; i < RM; i++) {
    L.push(`  if (mBase + ${i}u * WG < p.M) {`);
    if (fwd) L.push(`    let ob = (m${i} / outP) * p.NC * outP + m${i} % outP;`);
    else {
      L.push(`    let oy = u32(cy) + u32(S) * u32(py${i});`, `    let ox = u32(cx) + u32(S) * u32(px${i});`);
      L.push(`    if (oy < outH && ox < outW) {`);
      L.push(`    let ob = (m${i} / rowP) * p.NC * outP + oy * outW + ox;`);
    }
    for (let j = 0; j < RN; j++) L.push(`    if (col0 + ${j}u < p.NC) { out[ob + (col0 + ${j}u) * outP] = T(c${i}_${j} + bias${j}); }`);
    if (!fwd) L.push('    }');
    L.push('  }');
  }
  return L.join('\n');
}

/**
 * DWR's unrolled body: per column group j4 (a tap and 4 channels) its uniform source offset,
 * per row (output channel) its dY offset, RM×RN accumulators over every image's output pixels
 * (one pixel per iteration), then the [O, C, KH, KW] stores.
 */
export function convDwRegisterBody(cfg: ConvConfig): string {
  const { RM, RN } = cfg, RN4 = RN / 4, L: string[] = [];
  const comp = ['x', 'y', 'z', 'w'];
  for (let j = 0; j < RN4; j++) {
    L.push(`  let g${j} = min(col4 + ${j}u, nGroups - 1u);`);
    L.push(`  let gc${j} = g${j} % p.SC4;`);
    L.push(`  let gy${j} = i32(g${j} / p.SC4 / KW) - PAD;`);
    L.push(`  let gx${j} = i32(g${j} / p.SC4 % KW) - PAD;`);
  }
  for (let i = 0; i < RM; i++) L.push(`  let ro${i} = min(mBase + ${i}u * WG, p.O - 1u) * P;`);
  for (let i = 0; i < RM; i++) for (let j = 0; j < RN; j++) L.push(`  var c${i}_${j}: f32 = 0.0;`);
  L.push('  for (var img = 0u; img < p.N; img++) {');
  L.push('    let yImg = img * p.O * P;', '    let xImg = img * HW * p.SC4;');
  L.push('    for (var oh = 0u; oh < p.OH; oh++) {');
  for (let j = 0; j < RN4; j++) {
    L.push(`      let sy${j} = i32(oh) * S + gy${j};`);
    L.push(`      let vy${j} = sy${j} >= 0 && sy${j} < i32(p.H);`);
  }
  L.push('      for (var ow = 0u; ow < p.OW; ow++) {');
  L.push('        let pix = yImg + oh * p.OW + ow;');
  for (let i = 0; i < RM; i++) L.push(`        let a${i} = f32(dY[pix + ro${i}]);`);
  for (let j = 0; j < RN4; j++) {
    L.push(`        let sx${j} = i32(ow) * S + gx${j};`);
    L.push(`        let v${j} = vy${j} && sx${j} >= 0 && sx${j} < i32(p.W);`);
    L.push(`        let bv${j} = select(vec4<f32>(0.0), vec4<f32>(Xh[xImg + select(0u, (u32(sy${j}) * p.W + u32(sx${j})) * p.SC4, v${j}) + gc${j}]), v${j});`);
    for (let e = 0; e < 4; e++) L.push(`        let b${4 * j + e} = bv${j}.${comp[e]};`);
  }
  for (let i = 0; i < RM; i++) for (let j = 0; j < RN; j++) L.push(`        c${i}_${j} = fma(a${i}, b${j}, c${i}_${j});`);
  L.push('      }', '    }', '  }');
  for (let i = 0; i < RM; i++) {
    L.push(`  if (mBase + ${i}u * WG < p.O) {`);
    L.push(`    let o = mBase + ${i}u * WG;`);
    for (let j = 0; j < RN4; j++) {
      L.push(`    if (col4 + ${j}u < nGroups) {`);
      L.push(`      let tap = g${j} / p.SC4;`);
      for (let e = 0; e < 4; e++) L.push(`      if (gc${j} * 4u + ${e}u < p.C) { dW[(o * p.C + gc${j} * 4u + ${e}u) * KHW + tap] = T(c${i}_${4 * j + e}); }`);
      L.push('    }');
    }
    L.push('  }');
  }
  return L.join('\n');
}

/** Generated bodies by configuration (encoding runs every step; the text never changes). */
const bodies = new Map<string, string>();
export function convRegisterBodyOf(kind: 'GEMMR' | 'DWR', cfg: ConvConfig, fwd: boolean, bias: boolean): string {
  const key = `${kind}:${cfg.WG},${cfg.RM},${cfg.RN}:${fwd}:${bias}`;
  let body = bodies.get(key);
  if (body === undefined) bodies.set(key, (body = kind === 'GEMMR' ? convRegisterBody(cfg, fwd, bias) : convDwRegisterBody(cfg)));
  return body;
}
