// Every candidate configuration the tuner may pick, of every tuned family, against the float64
// references — not only the configuration this adapter ends up using. Candidates for both a
// software-adapter profile (register blocks) and a GPU profile (tiles) run here on any adapter.
import { beforeAll, describe, expect, it } from 'vitest';
import { fromData, init, read, realize } from '../src/graph/runtime.ts';
import { profileFrom } from '../src/gpu/profile.ts';
import { withTrial } from '../src/graph/kernels/catalogue.ts';
import { matmulFamily, type MatmulGeometry } from '../src/graph/kernels/matmul.ts';
import { matmul } from '../src/graph/ops/matmul.ts';
import { conv2d } from '../src/graph/ops/conv.ts';
import { rowsLinear } from '../src/graph/ops/matvec.ts';
import { matvecFamily, type MatvecConfig } from '../src/graph/kernels/matvec.ts';
import { convDwFamily, type ConvDwGeometry, convFamily, type ConvGemmConfig, type ConvGemmGeometry, convMatmulApplies, convMatmulChunks } from '../src/graph/kernels/conv.ts';
import { setKernelOverrides } from '../src/graph/kernels/overrides.ts';
import { grad, param } from '../src/graph/autograd.ts';
import { batchNormBackwardRef, batchNormBounds, batchNormRef, conv2dBackwardRef, conv2dRef, convOut } from './ref/vision.ts';
import { expectWithin, gamma, type Rng, rng } from './util.ts';
import { matmulRef } from './ref/cpu.ts';
import { moeGmmFamily, type MoeGmmConfig, moeWgradFamily } from '../src/graph/kernels/moe.ts';
import { groupedMatmul, groupedWeightGrad, moePlan } from '../src/graph/ops/moe.ts';
import type { MatmulTiles } from '../src/graph/kernels/matmul.ts';
import { type AttentionConfig, attentionFamily, type AttentionGeometry } from '../src/graph/kernels/attention.ts';
import { attention } from '../src/graph/ops/attention.ts';
import { attentionBounds, attentionRef } from './ref/attention.ts';
import { normFamily, type NormConfig } from '../src/graph/kernels/norm.ts';
import { rmsNorm } from '../src/graph/ops/norm.ts';
import { rmsNormBackRef, rmsNormBounds, rmsNormRef } from './ref/nn.ts';
import { type BatchnormConfig, batchnormFamily } from '../src/graph/kernels/batchnorm.ts';
import { batchNorm2d } from '../src/graph/ops/batchnorm.ts';
import { softmaxFamily } from '../src/graph/kernels/softmax.ts';
import { lossFamily } from '../src/graph/kernels/loss.ts';
import { type RowConfig, rowConfigKey } from '../src/graph/kernels/rows.ts';
import { logSoftmax, softmax } from '../src/graph/ops/softmax.ts';
import { crossEntropy } from '../src/graph/ops/loss.ts';
import { crossEntropyBackRef, crossEntropyBounds, crossEntropyRef, logSoftmaxBackRef, logSoftmaxBounds, logSoftmaxRef, maskZeros, softmaxBackRef, softmaxBounds, softmaxRef } from './ref/nn.ts';

const software = profileFrom({ vendor: '65541', description: 'llvmpipe' }, new Set<string>(), {});
const gpu = profileFrom({ vendor: 'nvidia', description: 'some GPU' }, new Set<string>(), {});
// A software adapter without unrolled kernels (its own conv GEMM4 blocks).
const swiftshader = profileFrom({ vendor: 'google', architecture: 'swiftshader' }, new Set<string>(), {});

beforeAll(async () => {
  await init();
});

describe('matmul: every candidate configuration', () => {
  const R = rng('matmul-candidates');
  // One geometry per candidate, the layouts (transposes, vec4-aligned or odd sizes, bias)
  // rotating through the list so every load path meets several blocks.
  const seen = new Map<string, MatmulGeometry>();
  const layouts: [boolean, boolean, boolean][] = [];
  for (const transA of [false, true]) for (const transB of [false, true]) for (const aligned of [true, false]) layouts.push([transA, transB, aligned]);
  let li = 0;
  for (const profile of [software, gpu]) {
    // Candidates of small, mid-size and large products (blocks are pruned by size).
    const bases = [[16, 16, 8], [96, 80, 24], [512, 512, 512]].map(([M, N, K]): MatmulGeometry => ({ M, N, K, batch: 1, transA: false, transB: true, bias: true }));
    for (const c of bases.flatMap((base) => matmulFamily.candidates(base, profile))) {
      const key = matmulFamily.configKey(c);
      if (seen.has(key)) continue;
      const [transA, transB, aligned] = layouts[li++ % layouts.length];
      const odd = (n: number) => (aligned ? n : n + 1 + 2 * R.int(0, 3));
      seen.set(key, { M: odd(4 * R.int(16, 28)), N: odd(4 * R.int(12, 24)), K: odd(4 * R.int(2, 8)), batch: R.int(1, 2), transA, transB, bias: R.next() < 0.5 });
      it(`${key}`, async () => {
        const g = seen.get(key)!;
        expect(matmulFamily.parseConfig(key)).toEqual(c);
        const { M, N, K, batch, transA, transB } = g;
        const A = R.randn(batch * M * K), B = R.randn(batch * K * N), Bi = R.randn(N);
        const a = fromData(A, transA ? [batch, K, M] : [batch, M, K]);
        const b = fromData(B, transB ? [batch, N, K] : [batch, K, N]);
        const out = withTrial('matmul', c, () => matmul(a, b, { transA, transB, bias: g.bias ? fromData(Bi, [N]) : undefined }));
        const ref = new Float64Array(batch * M * N), mag = new Float64Array(batch * M * N);
        const absA = A.map(Math.abs), absB = B.map(Math.abs);
        for (let i = 0; i < batch; i++) {
          ref.set(matmulRef(A.subarray(i * M * K), B.subarray(i * K * N), M, N, K, transA, transB), i * M * N);
          mag.set(matmulRef(absA.subarray(i * M * K), absB.subarray(i * K * N), M, N, K, transA, transB), i * M * N);
        }
        if (g.bias) ref.forEach((v, i) => (ref[i] = v + Bi[i % N]));
        // f32 dot product of length K (+ bias): |error| ≤ γ_{K+1} · (Σ|a||b| + |bias|), any order.
        expectWithin(await read(out), ref, (i) => gamma(K + 1) * (mag[i] + (g.bias ? Math.abs(Bi[i % N]) : 0)) + 1e-30, `${key} ${JSON.stringify(g)}`);
      });
    }
  }
});

describe('matmul: operands transposed into scratch first (TA, TB)', () => {
  // The TA / TB candidates above meet whatever layout the rotation gives them; here each runs
  // where its copy applies (A not transposed with M % 4 = 0; B transposed with N % 4 = 0), with
  // A or B broadcast over the batch, and where it does not (odd M or N: the plain kernel).
  const R = rng('matmul-transposed-operands');
  const blocks = matmulFamily.candidates({ M: 512, N: 512, K: 512, batch: 1, transA: false, transB: true, bias: false }, software)
    .filter((c) => c.TA || c.TB);
  it('the tuner offers both copies for large products', () => {
    expect(blocks.some((c) => c.TA && !c.TB)).toBe(true);
    expect(blocks.some((c) => c.TA && c.TB)).toBe(true);
  });
  for (const c of blocks) {
    for (const [transB, aligned, bcast] of [[false, true, 'A'], [true, true, 'B'], [true, false, 'none'], [false, true, 'none']] as const) {
      const key = matmulFamily.configKey(c);
      it(`${key} transB=${transB} ${aligned ? 'M, N multiples of 4' : 'odd M, N'}, ${bcast === 'none' ? 'batched' : `${bcast} broadcast`}`, async () => {
        const batch = 2;
        const M = aligned ? 4 * R.int(10, 40) : 4 * R.int(10, 40) + 1 + 2 * R.int(0, 1), N = aligned ? 4 * R.int(4, 20) : 4 * R.int(4, 20) + 3;
        const K = R.int(3, 70), bias = R.next() < 0.5;
        const bA = bcast === 'A' ? 1 : batch, bB = bcast === 'B' ? 1 : batch;
        const A = R.randn(bA * M * K), B = R.randn(bB * K * N), Bi = R.randn(N);
        const a = fromData(A, [bA, M, K]), b = fromData(B, transB ? [bB, N, K] : [bB, K, N]);
        const out = withTrial('matmul', c, () => matmul(a, b, { transB, bias: bias ? fromData(Bi, [N]) : undefined }));
        const ref = new Float64Array(batch * M * N), mag = new Float64Array(batch * M * N);
        for (let i = 0; i < batch; i++) {
          const Ai = A.subarray((bA === 1 ? 0 : i) * M * K), Bb = B.subarray((bB === 1 ? 0 : i) * K * N);
          ref.set(matmulRef(Ai, Bb, M, N, K, false, transB), i * M * N);
          mag.set(matmulRef(Ai.map(Math.abs), Bb.map(Math.abs), M, N, K, false, transB), i * M * N);
        }
        if (bias) ref.forEach((v, i) => (ref[i] = v + Bi[i % N]));
        // f32 dot product of length K (+ bias): |error| ≤ γ_{K+1} · (Σ|a||b| + |bias|), any order.
        expectWithin(await read(out), ref, (i) => gamma(K + 1) * (mag[i] + (bias ? Math.abs(Bi[i % N]) : 0)) + 1e-30, `${key} M${M} N${N} K${K} transB=${transB} broadcast ${bcast}`);
      });
    }
  }
});

describe('conv: every candidate configuration (forward, dX, dW)', () => {
  const R = rng('conv-candidates');
  // Candidates of a large conv, so no block is shrunk to the geometry (smaller geometries get
  // the same blocks with fewer rows per lane: the same emitter with a shorter unroll).
  const bases: ConvGemmGeometry[] = [[4, 64, 24, 24, 512, 1, 1, 0]].map(([N, C, H, W, O, K, stride, pad]) => {
    const OH = Math.floor((H + 2 * pad - K) / stride) + 1, OW = Math.floor((W + 2 * pad - K) / stride) + 1;
    return { pass: 'fwd', N, C, H, W, O, K, stride, pad, bias: true, M: N * OH * OW, cols: O, CR: C };
  });
  const gemm = new Map<string, ConvGemmConfig>(), dw = new Map<string, ConvGemmConfig>();
  for (const profile of [software, swiftshader, gpu]) for (const b of bases) {
    for (const c of convFamily.candidates(b, profile)) gemm.set(convFamily.configKey(c), c);
    for (const c of convDwFamily.candidates(b, profile)) dw.set(convDwFamily.configKey(c), c);
  }
  const abs = (a: Float64Array) => a.map(Math.abs);
  for (const [family, configs] of [['conv', gemm], ['conv_dw', dw]] as const) {
    for (const [key, c] of configs) {
      it(`${family} ${key}`, async () => {
        // Odd sizes, stride 1 or 2, 1×1 or 3×3: each configuration on a drawn geometry.
        const K = R.next() < 0.3 ? 1 : 3, stride = R.int(1, 2), pad = K === 3 ? 1 : 0;
        const g = { N: R.int(1, 2), C: R.int(3, 13), H: R.int(5, 11), W: R.int(5, 11), O: R.int(3, 21), K, stride, pad };
        const [OH, OW] = convOut(g);
        const X = R.randn(g.N * g.C * g.H * g.W), Wt = R.randn(g.O * g.C * K * K), B = R.randn(g.O), DY = R.randn(g.N * g.O * OH * OW);
        const x = param(fromData(X, [g.N, g.C, g.H, g.W])), w = param(fromData(Wt, [g.O, g.C, K, K]));
        const what = `${family} ${key} ${JSON.stringify(g)}`;
        if (family === 'conv') {
          const y = withTrial('conv', c, () => conv2d(x, w, fromData(B, [g.O]), { stride, padding: pad }));
          const [dx] = withTrial('conv', c, () => grad(y, [x], fromData(DY, y.shape)));
          await realize([y, dx!]);
          const mag = conv2dRef(abs(X), abs(Wt), abs(B), g);
          // Length-L f32 dot products: |error| ≤ γ_L · Σ|terms| (L = C·K² + 1 forward, O·K² for dX).
          expectWithin(await read(y), conv2dRef(X, Wt, B, g), (i) => gamma(g.C * K * K + 1) * mag[i] + 1e-30, `${what} forward`);
          const ref = conv2dBackwardRef(X, Wt, DY, g), magB = conv2dBackwardRef(abs(X), abs(Wt), abs(DY), g);
          expectWithin(await read(dx!), ref.dx, (i) => gamma(g.O * K * K) * magB.dx[i] + 1e-30, `${what} dX`);
        } else {
          const y = conv2d(x, w, null, { stride, padding: pad });
          const [dw] = withTrial('conv_dw', c, () => grad(y, [w], fromData(DY, y.shape)));
          await realize([dw!]);
          const ref = conv2dBackwardRef(X, Wt, DY, g), magB = conv2dBackwardRef(abs(X), abs(Wt), abs(DY), g);
          expectWithin(await read(dw!), ref.dw, (i) => gamma(g.N * OH * OW) * magB.dw[i] + 1e-30, `${what} dW`);
        }
      });
    }
  }
});

describe('conv: the matmul kind (weight × patch columns, or the input for 1×1 stride 1, on the register matmul kernel)', () => {
  // The candidates above draw a geometry with bias, where this kind falls back to GEMMR: here
  // each runs where it applies (output channels a multiple of 4; 1×1 stride 1 reading the
  // input, or 1×1 / 3×3 with strides and padding through im2col; maps of any pixel count, so
  // rows are and are not vec4-aligned; with and without the bias, which is per row of the
  // product) and, with output channels not a multiple of 4, where it does not; its patch
  // columns in chunks of output rows; and the input gradient of stride-1 convs, which it runs
  // as the conv of dY with the flipped weight.
  const R = rng('conv-matmul-kind');
  const base: ConvGemmGeometry = { pass: 'fwd', N: 2, C: 64, H: 16, W: 16, O: 256, K: 1, stride: 1, pad: 0, bias: false, M: 512, cols: 256, CR: 64 };
  const kinds = convFamily.candidates(base, software).filter((c) => c.kind === 'matmul');
  it('is offered, and hand-picked on a software adapter for convs with output maps of ≥ 14×14 (other than 1×1 stride 1: with ≥ 128 output channels)', () => {
    expect(kinds.length).toBeGreaterThan(0);
    expect(convFamily.handPicked(base, software).kind).toBe('matmul');
    expect(convFamily.handPicked({ ...base, H: 8, W: 8, M: 128 }, software).kind).toBe('register');
    expect(convFamily.handPicked({ ...base, H: 14, W: 14, M: 392 }, software).kind).toBe('matmul');
    expect(convFamily.handPicked({ ...base, H: 14, W: 14, M: 392, K: 3, pad: 1 }, software).kind).toBe('matmul');
    expect(convFamily.handPicked({ ...base, H: 13, W: 13, M: 338, K: 3, pad: 1 }, software).kind).toBe('register');
    expect(convFamily.handPicked({ ...base, bias: true }, software).kind).toBe('matmul');
    expect(convFamily.handPicked({ ...base, O: 254, cols: 254 }, software).kind).toBe('register');
    expect(convFamily.handPicked({ ...base, O: 64, cols: 64, K: 3, pad: 1 }, software).kind).toBe('register');
    expect(convFamily.handPicked({ ...base, K: 3, pad: 1 }, software).kind).toBe('matmul');
  });
  for (const c of kinds) {
    const cases = [
      ['applies', true, false, false], ['with output channels not a multiple of 4 (falls back)', false, false, false],
      ['in chunks of output rows (patch columns over the scratch limit)', true, true, false],
      ['dX of a stride-1 conv (a conv of dY with the flipped weight), in chunks or not', true, false, true],
    ] as const;
    for (const [what, applies, chunked, dxKind] of cases) {
      it(`${convFamily.configKey(c)} ${what}`, async () => {
        // (chunked: im2col'd, so 3×3 or strided, over a map of several output rows; dxKind:
        // stride 1, padding below the kernel size, input channels in whole vec4s (dX's rows))
        const K = chunked || R.next() >= (dxKind ? 0.25 : 0.5) ? 3 : 1, pad = K === 3 ? R.int(0, dxKind ? 1 : 2) : R.int(0, dxKind ? 0 : 1), stride = dxKind || R.next() < 0.5 ? 1 : R.int(2, 3), withBias = R.next() < 0.5;
        const g = { N: applies ? R.int(2, 3) : R.int(1, 3), C: dxKind ? 4 * R.int(1, 10) : R.int(1, 40), H: R.int(chunked ? 8 : 3, 13), W: R.int(3, 13), O: 4 * R.int(1, 12) + (applies ? 0 : R.int(1, 3)), K, stride, pad };
        const [OH, OW] = convOut(g);
        if (dxKind) expect(convMatmulApplies({ pass: 'dx', N: g.N, C: g.C, H: g.H, W: g.W, O: g.O, K, stride, pad, bias: false, M: g.N * g.H * g.W, cols: g.C, CR: g.O })).toBe(true);
        // Chunked: room for 1–3 (and fewer than OH) output rows' patch columns at once (f32), so
        // OH rows take several chunks, the last one shorter where they do not divide. dxKind, half
        // the time: room for 1–3 of dX's rows (its patches: dY's O channels, W pixels a row).
        const dxChunks = dxKind && K === 3 && R.next() < 0.5;
        const prevLimit = chunked ? setKernelOverrides({ convPatchBytes: g.N * g.C * K * K * OW * 4 * R.int(1, Math.min(3, OH - 1)) })
          : dxChunks ? setKernelOverrides({ convPatchBytes: g.N * g.O * K * K * g.W * 4 * R.int(1, Math.min(3, g.H - 1)) }) : null;
        if (chunked) expect(convMatmulChunks(g.N, g.C * K * K, OH, OW).chunks).toBeGreaterThan(1);
        if (dxChunks) expect(convMatmulChunks(g.N, g.O * K * K, g.H, g.W).chunks).toBeGreaterThan(1);
        const X = R.randn(g.N * g.C * g.H * g.W), Wt = R.randn(g.O * g.C * K * K), B = withBias ? R.randn(g.O) : new Float64Array(g.O), DY = R.randn(g.N * g.O * OH * OW);
        const x = param(fromData(X, [g.N, g.C, g.H, g.W])), w = param(fromData(Wt, [g.O, g.C, K, K]));
        const y = withTrial('conv', c, () => conv2d(x, w, withBias ? fromData(B, [g.O]) : null, { stride, padding: pad }));
        const [dx, dw] = withTrial('conv', c, () => grad(y, [x, w], fromData(DY, y.shape)));
        try {
          await realize([y, dx!, dw!]);
        } finally {
          if (prevLimit) setKernelOverrides(prevLimit);
        }
        const abs = (a: Float64Array) => a.map(Math.abs);
        const mag = conv2dRef(abs(X), abs(Wt), abs(B), g);
        // Length-L f32 dot products: |error| ≤ γ_L · Σ|terms| (L = C·K² + 1 forward, O·K² dX, N·H·W dW).
        const what = `${convFamily.configKey(c)} ${JSON.stringify(g)} bias=${withBias}`;
        expectWithin(await read(y), conv2dRef(X, Wt, B, g), (i) => gamma(g.C * K * K + 1) * mag[i] + 1e-30, `${what} forward`);
        const ref = conv2dBackwardRef(X, Wt, DY, g), magB = conv2dBackwardRef(abs(X), abs(Wt), abs(DY), g);
        expectWithin(await read(dx!), ref.dx, (i) => gamma(g.O * K * K) * magB.dx[i] + 1e-30, `${what} dX`);
        expectWithin(await read(dw!), ref.dw, (i) => gamma(g.N * OH * OW) * magB.dw[i] + 1e-30, `${what} dW`);
      });
    }
  }
});

describe('conv_dw: the matmul kind (dYᵀ × patch rows on the register matmul kernel, summed over chunks)', () => {
  // Where it applies (output channels a multiple of 4), 1×1 or 3×3, strides 1–3, 1–3 images;
  // and with room for only 1–3 output rows' patches at once, so the product is summed in place
  // over chunks, some of them spanning two images; with output channels not a multiple of 4 it
  // falls back to DWR.
  const R = rng('conv-dw-matmul-kind');
  const base: ConvDwGeometry = { N: 2, C: 64, H: 16, W: 16, O: 256, K: 3, stride: 1, pad: 1 };
  const kinds = convDwFamily.candidates(base, software).filter((c) => c.kind === 'matmul');
  it('is offered on a software adapter', () => expect(kinds.length).toBeGreaterThan(0));
  for (const c of kinds) {
    const cases = [['applies', true, false], ['applies, in chunks of output rows', true, true], ['with output channels not a multiple of 4 (falls back)', false, false]] as const;
    for (const [what, applies, chunked] of cases) {
      it(`${convDwFamily.configKey(c)} ${what}`, async () => {
        const K = R.next() < 0.3 ? 1 : 3, pad = K === 3 ? R.int(0, 2) : R.int(0, 1), stride = R.int(1, 3);
        const g = { N: R.int(chunked ? 2 : 1, 3), C: R.int(1, 24), H: R.int(4, 13), W: R.int(3, 13), O: 4 * R.int(1, 12) + (applies ? 0 : R.int(1, 3)), K, stride, pad };
        const [OH, OW] = convOut(g);
        const prev = chunked ? setKernelOverrides({ convPatchBytes: OW * g.C * K * K * 4 * R.int(1, Math.min(3, g.N * OH - 1)) }) : null;
        if (chunked) expect(convMatmulChunks(1, g.C * K * K, g.N * OH, OW).chunks).toBeGreaterThan(1);
        const X = R.randn(g.N * g.C * g.H * g.W), Wt = R.randn(g.O * g.C * K * K), DY = R.randn(g.N * g.O * OH * OW);
        const x = fromData(X, [g.N, g.C, g.H, g.W]), w = param(fromData(Wt, [g.O, g.C, K, K]));
        const y = conv2d(x, w, null, { stride, padding: pad });
        const [dw] = withTrial('conv_dw', c, () => grad(y, [w], fromData(DY, y.shape)));
        try {
          await realize([dw!]);
        } finally {
          if (prev) setKernelOverrides(prev);
        }
        const abs = (a: Float64Array) => a.map(Math.abs);
        const ref = conv2dBackwardRef(X, Wt, DY, g), magB = conv2dBackwardRef(abs(X), abs(Wt), abs(DY), g);
        // A length-N·OH·OW f32 sum (chunks summed in turn are one more order of it): |error| ≤ γ_L · Σ|terms|.
        expectWithin(await read(dw!), ref.dw, (i) => gamma(g.N * OH * OW) * magB.dw[i] + 1e-30, `${convDwFamily.configKey(c)} ${JSON.stringify(g)} chunked=${chunked} dW`);
      });
    }
  }
});

describe('matvec (rowsLinear): every candidate configuration', () => {
  const R = rng('matvec-candidates');
  const cands = new Map<string, MatvecConfig>();
  for (const profile of [software, gpu]) for (const c of matvecFamily.candidates({ B: 4, N: 64, K: 256, bias: true }, profile)) cands.set(matvecFamily.configKey(c), c);
  for (const [key, c] of cands) {
    it(key, async () => {
      // Rows 1–9 (one and several row blocks), K vec4-aligned or not, with and without bias.
      const B = R.int(1, 9), N = R.int(1, 40), K = R.next() < 0.5 ? 4 * R.int(1, 70) : 2 * R.int(1, 70) + 1, withBias = R.next() < 0.5;
      const X = R.randn(B * K), Wt = R.randn(N * K), Bi = R.randn(N);
      const y = withTrial('matvec', c, () => rowsLinear(fromData(X, [B, K]), fromData(Wt, [N, K]), withBias ? fromData(Bi, [N]) : null));
      const ref = matmulRef(X, Wt, B, N, K, false, true), mag = matmulRef(X.map(Math.abs), Wt.map(Math.abs), B, N, K, false, true);
      if (withBias) ref.forEach((v, i) => (ref[i] = v + Bi[i % N]));
      expectWithin(await read(y), ref, (i) => gamma(K + 1) * (mag[i] + (withBias ? Math.abs(Bi[i % N]) : 0)) + 1e-30, `${key} B=${B} N=${N} K=${K} bias=${withBias}`);
    });
  }
});

/** A random top-k route of N tokens over E experts (k distinct per token), leaving one expert without rows. */
function drawRoute(R: Rng, E: number, k: number, N: number): Int32Array {
  const unused = R.int(0, E - 1), allowed = [...Array(E).keys()].filter((e) => e !== unused);
  const idx = new Int32Array(N * k);
  for (let t = 0; t < N; t++) {
    const pool = allowed.slice();
    for (let j = 0; j < k; j++) idx[t * k + j] = pool.splice(R.int(0, pool.length - 1), 1)[0];
  }
  return idx;
}

describe('moe grouped matmul: every candidate configuration', () => {
  const R = rng('moe-gmm-candidates');
  const cands = new Map<string, MoeGmmConfig>();
  for (const profile of [software, swiftshader, gpu]) for (const tile of [32, 64]) for (const transB of [false, true]) {
    for (const c of moeGmmFamily.candidates({ M: 4 * tile, N: 64, K: 64, E: 4, tile, transB }, profile)) cands.set(moeGmmFamily.configKey(c), c);
  }
  it('covers both layouts', () => {
    expect([...cands.values()].map((c) => c.kind).sort()).toEqual(expect.arrayContaining(['register', 'tiled']));
  });
  for (const [key, c] of cands) {
    it(key, async () => {
      expect(moeGmmFamily.parseConfig(key)).toEqual(c);
      // Both row tiles and both weight layouts, odd sizes, one expert left without rows.
      for (const tile of [32, 64]) for (const transB of [false, true]) {
        const E = R.int(2, 5), k = R.int(1, Math.min(2, E - 1)), N = R.int(1, 70), n = R.int(1, 45), K = R.int(1, 40);
        const idx = drawRoute(R, E, k, N);
        const plan = moePlan(fromData(idx, [N, k], 'i32'), E, tile);
        const A = R.randn(plan.rows * K), Wt = R.randn(E * n * K);
        const a = fromData(A, [plan.rows, K]), W = fromData(Wt, transB ? [E, n, K] : [E, K, n]);
        const out = withTrial('moe', c, () => groupedMatmul(a, W, plan, transB));
        await realize([out, plan.tileExpert]);
        const te = await read(plan.tileExpert), y = await read(out);
        // Each expert owns ⌈rows_e / tile⌉ tiles (the routing is tested in tests/moe.test.ts).
        for (let e = 0; e < E; e++) {
          const rowsE = Array.from(idx).filter((v) => v === e).length;
          expect(Array.from(te).filter((v) => v === e).length).toBe(Math.ceil(rowsE / tile));
        }
        const ref = new Float64Array(plan.rows * n), mag = new Float64Array(plan.rows * n);
        for (let r = 0; r < plan.rows; r++) {
          const e = te[Math.floor(r / tile)];
          if (e < 0) continue;   // unused tiles are zero
          for (let j = 0; j < n; j++) {
            let s = 0, m = 0;
            for (let q = 0; q < K; q++) {
              const w = Wt[e * n * K + (transB ? j * K + q : q * n + j)], p = A[r * K + q] * w;
              s += p;
              m += Math.abs(p);
            }
            ref[r * n + j] = s;
            mag[r * n + j] = m;
          }
        }
        // f32 dot products of length K: |error| ≤ γ_K · Σ|a||w|, any order.
        expectWithin(y, ref, (i) => gamma(K) * mag[i] + 1e-30, `${key} tile=${tile} transB=${transB} E=${E} k=${k} N=${N} n=${n} K=${K}`);
      }
    });
  }
});

describe('moe expert weight gradient: every candidate configuration', () => {
  const R = rng('moe-wgrad-candidates');
  const cands = new Map<string, MatmulTiles>();
  for (const profile of [software, swiftshader, gpu]) for (const [M, N] of [[16, 24], [96, 128]]) {
    for (const c of moeWgradFamily.candidates({ M, N, rows: 256, E: 4, tile: 32 }, profile)) cands.set(moeWgradFamily.configKey(c), c);
  }
  it('covers both layouts', () => {
    expect([...cands.values()].map((c) => c.kind)).toEqual(expect.arrayContaining(['register', 'tiled']));
  });
  for (const [key, c] of cands) {
    it(key, async () => {
      expect(moeWgradFamily.parseConfig(key)).toEqual(c);
      // Both row tiles, odd sizes, one expert without rows (its block is zero).
      for (const tile of [32, 64]) {
        const E = R.int(2, 5), k = R.int(1, Math.min(2, E - 1)), N = R.int(1, 70), M = R.int(1, 45), n = R.int(1, 40);
        const idx = drawRoute(R, E, k, N);
        const plan = moePlan(fromData(idx, [N, k], 'i32'), E, tile);
        const G = R.randn(plan.rows * M), A = R.randn(plan.rows * n);
        const out = withTrial('moe_wgrad', c, () => groupedWeightGrad(fromData(G, [plan.rows, M]), fromData(A, [plan.rows, n]), plan));
        await realize([out, plan.segs]);
        const segs = await read(plan.segs), y = await read(out);
        const ref = new Float64Array(E * M * n), mag = new Float64Array(E * M * n);
        let L = 1;
        for (let e = 0; e < E; e++) {
          const [s0, s1] = [segs[2 * e], segs[2 * e + 1]];
          // The segment holds the expert's real rows (the routing is tested in tests/moe.test.ts).
          expect(s1 - s0).toBe(Array.from(idx).filter((v) => v === e).length);
          L = Math.max(L, s1 - s0);
          for (let i = 0; i < M; i++) for (let j = 0; j < n; j++) {
            let s = 0, m = 0;
            for (let r = s0; r < s1; r++) {
              const p = G[r * M + i] * A[r * n + j];
              s += p;
              m += Math.abs(p);
            }
            ref[(e * M + i) * n + j] = s;
            mag[(e * M + i) * n + j] = m;
          }
        }
        // f32 sums of at most L products: |error| ≤ γ_L · Σ|g||a|, any order.
        expectWithin(y, ref, (i) => gamma(L) * mag[i] + 1e-30, `${key} tile=${tile} E=${E} k=${k} N=${N} M=${M} n=${n}`);
      }
    });
  }
});

describe('attention forward: every candidate configuration (out, kept probabilities)', () => {
  const R = rng('attention-candidates');
  const cands = new Map<string, AttentionConfig>();
  const geom = (Sq: number, Sk: number, d: number, dv: number): AttentionGeometry => ({ BH: 8, Sq, Sk, d, dv, mask: 'none', dtype: 'f32' });
  // One query row (decoding), the tiny model's heads, the paper's (d 96: register and tiles), and
  // a head too large for the register kernel.
  for (const profile of [software, gpu]) for (const g of [geom(1, 49, 24, 24), geom(20, 49, 24, 24), geom(40, 40, 96, 96), geom(16, 16, 130, 130)]) {
    for (const c of attentionFamily.candidates(g, profile)) cands.set(attentionFamily.configKey(c), c);
  }
  it('covers the three layouts', () => {
    expect(new Set([...cands.values()].map((c) => c.kind))).toEqual(new Set(['register', 'tiled', 'one']));
  });
  for (const [key, c] of cands) {
    it(key, async () => {
      expect(attentionFamily.parseConfig(key)).toEqual(c);
      // Odd sizes (more keys than lanes and fewer), each mask kind broadcast over a different axis.
      for (const maskKind of ['none', 'f32', 'i32'] as const) {
        const b = R.int(1, 2), H = R.int(1, 3), Sq = c.kind === 'one' ? 1 : R.int(1, 37), Sk = R.int(1, 90);
        const maxD = c.kind === 'register' ? 48 : c.kind === 'tiled' ? Math.min(64, Math.floor((4096 - c.QB * c.KB) / (c.QB + c.KB))) : 70;
        const d = R.int(1, maxD), dv = R.int(1, maxD);
        const dm = { b, H, Sq, Sk, d, dv }, scale = 1 / Math.sqrt(d);
        const Q = R.randn(b * H * Sq * d), K = R.randn(b * H * Sk * d), V = R.randn(b * H * Sk * dv);
        // Keep-mask [b, Sq, Sk] (its reference layout) stored broadcast over the batch or not.
        const shared = R.next() < 0.5;
        const M1 = Float64Array.from({ length: Sq * Sk }, (_, i) => (i % Sk === R.int(0, Sk - 1) || R.next() < 0.7 ? 1 : 0));
        const M = maskKind === 'none' ? undefined : Float64Array.from({ length: b * Sq * Sk }, (_, i) => (shared ? M1[i % (Sq * Sk)] : R.next() < 0.7 ? 1 : 0));
        const mask = M ? fromData(shared ? M1 : M, [shared ? 1 : b, Sq, Sk], maskKind as 'f32' | 'i32') : undefined;
        const { out, probs } = withTrial('attention', c, () => attention(fromData(Q, [b, H, Sq, d]), fromData(K, [b, H, Sk, d]), fromData(V, [b, H, Sk, dv]), { scale, mask, keepProbs: true }));
        await realize([out, probs!]);
        const ref = attentionRef(Q, K, V, dm, scale, M), bnd = attentionBounds(Q, K, V, dm, scale, M);
        // Per element within the f32 error model of tests/ref/attention.ts (scores γ_{d+1}, exp,
        // one online rescale per key, γ sums), whatever the order of keys and tiles.
        const what = `${key} ${JSON.stringify(dm)} mask=${maskKind}${shared ? ' (shared)' : ''}`;
        expectWithin(await read(out), ref.out, bnd.out, `${what} out`);
        expectWithin(await read(probs!), ref.probs, bnd.probs, `${what} probs`);
      }
    });
  }
});

describe('rmsNorm (forward and dx row reductions): every candidate configuration', () => {
  const R = rng('norm-candidates');
  const cands = new Map<string, NormConfig>();
  for (const profile of [software, gpu]) for (const D of [24, 200, 600, 2000]) for (const c of normFamily.candidates({ rows: 64, D, dtype: 'f32' }, profile)) cands.set(normFamily.configKey(c), c);
  for (const [key, c] of cands) {
    it(key, async () => {
      expect(normFamily.parseConfig(key)).toEqual(c);
      // Rows shorter and longer than the lanes (D ≥ 2: with one feature dx is pure cancellation).
      for (const D of [R.int(2, 7), R.int(33, 90), R.int(257, 600)]) {
        const rows = R.int(1, 9), X = R.randn(rows * D), Wt = R.uniform(D, 0.5, 1.5), G = R.randn(rows * D);
        const x = param(fromData(X, [rows, D])), w = param(fromData(Wt, [D]));
        const y = withTrial('norm', c, () => rmsNorm(x, w, 1e-6));
        const [gx, gw] = grad(y, [x, w], fromData(G, [rows, D]));
        await realize([y, gx!, gw!]);
        // Per element within the f32 error model of tests/ref/nn.ts (any summation order).
        const bound = rmsNormBounds(X, Wt, G, D, 1e-6), what = `${key} rows=${rows} D=${D}`;
        expectWithin(await read(y), rmsNormRef(X, Wt, D, 1e-6), bound.y, `${what} y`);
        expectWithin(await read(gx!), rmsNormBackRef(X, Wt, G, D, 1e-6).dx, bound.dx, `${what} dx`);
      }
    });
  }
});

describe('softmax and log-softmax (row max and sum, forward and backward): every candidate configuration', () => {
  const R = rng('softmax-candidates');
  const cands = new Map<string, RowConfig>();
  for (const profile of [software, gpu]) for (const K of [24, 200, 600, 2000]) for (const c of softmaxFamily.candidates({ rows: 64, K, dtype: 'f32', mask: false }, profile)) cands.set(softmaxFamily.configKey(c), c);
  for (const [key, c] of cands) {
    it(key, async () => {
      expect(softmaxFamily.parseConfig(key)).toEqual(c);
      // Rows shorter and longer than the lanes; a broadcast mask [b, 1, q, K] on one of them,
      // its first row fully masked (a uniform row).
      for (const [K, masked] of [[R.int(1, 7), false], [R.int(33, 90), true], [R.int(257, 600), false]] as [number, boolean][]) {
        const b = R.int(1, 2), H = R.int(1, 3), q = R.int(1, 3), shape = [b, H, q, K];
        const X = R.randn(b * H * q * K, 3), W = R.randn(b * H * q * K);
        const M = Float64Array.from({ length: b * q * K }, (_, i) => (i < K || R.next() < 0.3 ? 0 : 1));
        const zero = masked ? maskZeros(M, [b, 1, q, K], shape) : undefined;
        const x = param(fromData(X, shape));
        const y = withTrial('softmax', c, () => softmax(x, masked ? fromData(M, [b, 1, q, K]) : undefined));
        const ls = withTrial('softmax', c, () => logSoftmax(x));
        const [dx] = grad(y, [x], fromData(W, shape));
        const [dls] = grad(ls, [x], fromData(W, shape));
        await realize([y, dx!, ls, dls!]);
        // Per element within the f32 error model of tests/ref/nn.ts (any summation order).
        const yr = softmaxRef(X, K, zero), bound = softmaxBounds(X, W, K, zero, yr), what = `${key} shape=${JSON.stringify(shape)} mask=${masked}`;
        expectWithin(await read(y), yr, bound.y, `${what} softmax y`);
        expectWithin(await read(dx!), softmaxBackRef(yr, W, K, zero), bound.dx, `${what} softmax dx`);
        const lr = logSoftmaxRef(X, K), lb = logSoftmaxBounds(X, W, K, lr);
        expectWithin(await read(ls), lr, lb.y, `${what} log-softmax y`);
        expectWithin(await read(dls!), logSoftmaxBackRef(lr, W, K), lb.dx, `${what} log-softmax dx`);
      }
    });
  }
});

describe('crossEntropy (row max and sum): every candidate configuration', () => {
  const R = rng('loss-candidates');
  const cands = new Map<string, RowConfig>();
  for (const profile of [software, gpu]) for (const V of [24, 200, 600, 2000]) for (const c of lossFamily.candidates({ N: 64, V, dtype: 'f32' }, profile)) cands.set(lossFamily.configKey(c), c);
  for (const [key, c] of cands) {
    it(key, async () => {
      expect(lossFamily.parseConfig(key)).toEqual(c);
      // Rows shorter and longer than the lanes, some rows ignored.
      for (const V of [R.int(1, 7), R.int(33, 90), R.int(257, 1200)]) {
        const N = R.int(1, 12), ignore = -100, g = Math.fround(0.5 + R.next());
        const X = R.randn(N * V, 2), labels = Int32Array.from({ length: N }, () => (R.next() < 0.25 ? ignore : R.int(0, V - 1)));
        const x = param(fromData(X, [N, V]));
        const loss = withTrial('loss', c, () => crossEntropy(x, fromData(labels, [N], 'i32'), ignore));
        const [dx] = grad(loss, [x], fromData([g], []));
        await realize([loss, dx!]);
        // Within the f32 error model of tests/ref/nn.ts crossEntropyBounds (any summation order).
        const bound = crossEntropyBounds(X, labels, V, ignore, g), what = `${key} N=${N} V=${V}`;
        expectWithin(await read(loss), [crossEntropyRef(X, labels, V, ignore)], bound.loss, `${what} loss`);
        expectWithin(await read(dx!), crossEntropyBackRef(X, labels, V, ignore, g), bound.dx, `${what} dx`);
      }
    });
  }
});

describe('subgroup candidates (a device with the subgroups feature)', () => {
  // Deno's llvmpipe has no subgroups: these configurations run in Chromium (SwiftShader), against
  // Deno's tree sums, in tests/browser.test.ts ("row and channel sums through subgroups").
  const withSubgroups = profileFrom({ vendor: 'nvidia', description: 'some GPU' }, new Set<string>(['subgroups']), {});
  it('rmsNorm and batchNorm2d offer a subgroup twin of every width, and only where the feature is', () => {
    const g = { rows: 64, D: 600, dtype: 'f32' as const };
    const plain = normFamily.candidates(g, gpu).map(normFamily.configKey);
    const sg = normFamily.candidates(g, withSubgroups).map(normFamily.configKey);
    expect(plain.some((k) => k.endsWith(':sg'))).toBe(false);
    expect(sg).toEqual([...plain, ...plain.map((k) => `${k}:sg`)]);
    for (const k of sg) expect(normFamily.configKey(normFamily.parseConfig(k)!)).toBe(k);
    const bg = { N: 4, C: 16, HW: 64, dtype: 'f32' as const };
    const bPlain = batchnormFamily.candidates(bg, gpu).map(batchnormFamily.configKey);
    const bSg = batchnormFamily.candidates(bg, withSubgroups).map(batchnormFamily.configKey);
    expect(bPlain.some((k) => k.endsWith(':sg'))).toBe(false);
    expect(bSg).toEqual([...bPlain, ...bPlain.map((k) => `${k}:sg`)]);
    for (const k of bSg) expect(batchnormFamily.configKey(batchnormFamily.parseConfig(k)!)).toBe(k);
  });

  it('softmax and crossEntropy offer a subgroup twin of every width, and only where the feature is', () => {
    const keys = (cs: RowConfig[]) => cs.map(rowConfigKey);
    for (const [plain, sg] of [
      [softmaxFamily.candidates({ rows: 64, K: 600, dtype: 'f32', mask: true }, gpu), softmaxFamily.candidates({ rows: 64, K: 600, dtype: 'f32', mask: true }, withSubgroups)],
      [lossFamily.candidates({ N: 64, V: 600, dtype: 'f32' }, gpu), lossFamily.candidates({ N: 64, V: 600, dtype: 'f32' }, withSubgroups)],
    ].map(([a, b]) => [keys(a), keys(b)])) {
      expect(plain.some((k) => k.endsWith(':sg'))).toBe(false);
      expect(sg).toEqual([...plain, ...plain.map((k) => `${k}:sg`)]);
    }
  });

  it('the few-row linear (matvec) offers a subgroup twin of every candidate, and only where the feature is', () => {
    const g = { B: 4, N: 64, K: 256, bias: true };
    const plain = matvecFamily.candidates(g, gpu).map(matvecFamily.configKey);
    const sg = matvecFamily.candidates(g, withSubgroups).map(matvecFamily.configKey);
    expect(plain.some((k) => k.endsWith(':sg'))).toBe(false);
    expect(sg).toEqual([...plain, ...plain.map((k) => `${k}:sg`)]);
    for (const k of sg) expect(matvecFamily.configKey(matvecFamily.parseConfig(k)!)).toBe(k);
    expect(matvecFamily.parseConfig('lanes64:sums16:sg')).toEqual({ LANES: 64, sums: 16, sg: true });
    expect(matvecFamily.parseConfig('lanes64:sums16:sgx')).toBeNull();
  });
});

describe('batchNorm2d (statistics, normalisation, running statistics, backward): every candidate configuration', () => {
  const R = rng('batchnorm-candidates');
  const cands = new Map<string, BatchnormConfig>();
  for (const profile of [software, gpu]) for (const c of batchnormFamily.candidates({ N: 4, C: 16, HW: 64, dtype: 'f32' }, profile)) cands.set(batchnormFamily.configKey(c), c);
  for (const [key, c] of cands) {
    it(key, async () => {
      expect(batchnormFamily.parseConfig(key)).toEqual(c);
      // Training and eval; more values per channel than lanes and fewer.
      for (const training of [true, false]) for (const [N, HW] of [[R.int(1, 3), R.int(2, 7)], [R.int(2, 3), R.int(100, 300)]]) {
        const C = R.int(1, 6), momentum = Math.fround(0.1 + 0.3 * R.next()), eps = Math.fround(1e-5);
        const X = R.randn(N * C * HW).map((v) => Math.fround(3 * v + 2));   // off-centre: the mean subtraction matters
        const Wt = R.randn(C), B = R.randn(C), RM = R.randn(C), RV = R.uniform(C, 0.5, 2), DY = R.randn(N * C * HW);
        const x = param(fromData(X, [N, C, 1, HW]));
        const weight = param(fromData(Wt, [C])), bias = param(fromData(B, [C]));
        const runningMean = fromData(RM, [C]), runningVar = fromData(RV, [C]);
        const { y, update } = withTrial('batchnorm', c, () => batchNorm2d(x, { weight, bias, runningMean, runningVar }, { training, momentum, eps }));
        const [dx, dw, db] = grad(y, [x, weight, bias], fromData(DY, y.shape));
        await realize([y, dx!, dw!, db!], { effects: update ? [update] : [] });
        // Per element within the f32 error model of tests/ref/vision.ts batchNormBounds.
        const ref = batchNormRef(X, N, C, HW, Wt, B, RM, RV, training, momentum, eps);
        const bw = batchNormBackwardRef(X, DY, N, C, HW, Wt, ref.mean, ref.varUsed, training, eps);
        const bound = batchNormBounds(X, DY, N, C, HW, Wt, B, RM, RV, momentum, eps, training, ref, bw.dw, bw.db);
        const what = `${key} ${training ? 'training' : 'eval'} N=${N} C=${C} HW=${HW}`;
        expectWithin(await read(y), ref.y, bound.y, `${what} y`);
        expectWithin(await read(runningMean), ref.newRunningMean, training ? bound.runningMean : 0, `${what} running mean`);
        expectWithin(await read(runningVar), ref.newRunningVar, training ? bound.runningVar : 0, `${what} running variance`);
        expectWithin(await read(dx!), bw.dx, bound.dx, `${what} dx`);
        expectWithin(await read(dw!), bw.dw, bound.dw, `${what} dweight`);
        expectWithin(await read(db!), bw.db, bound.db, `${what} dbias`);
      }
    });
  }
});
