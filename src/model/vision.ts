// Multiscale vision encoder (SPEC §1): torchvision-layout ResNet → C2..C5, FPN laterals,
// top-down bilinear path, fused 3×3 conv, 7×7 adaptive average pool → [b, 49, d_v].
import type { Tensor } from '../graph/tensor.ts';
import { conv2d } from '../graph/ops/conv.ts';
import { batchNorm2d } from '../graph/ops/batchnorm.ts';
import { adaptiveAvgPool2d, maxPool2d } from '../graph/ops/pool.ts';
import { resizeBilinear } from '../graph/ops/resize.ts';
import { add, relu } from '../graph/ops/elementwise.ts';
import { concat, permute, reshape, slice } from '../graph/ops/shape.ts';
import { backboneLayout, type MicarConfig } from './config.ts';
import type { Forward } from './context.ts';
import { backboneComputeType } from './precision.ts';

function bn(f: Forward, x: Tensor, prefix: string): Tensor {
  const { y, update } = batchNorm2d(
    x,
    { weight: f.p(`${prefix}.weight`), bias: f.p(`${prefix}.bias`), runningMean: f.p(`${prefix}.running_mean`), runningVar: f.p(`${prefix}.running_var`) },
    { training: f.training, momentum: 0.1, eps: 1e-5 },
  );
  if (update) {
    f.bnUpdates.push(update);
    f.bnTouched.push(prefix);
  }
  return y;
}

function convBn(f: Forward, x: Tensor, conv: string, norm: string, stride: number, padding: number, bias = false): Tensor {
  const ws = f.chunks(`${conv}.weight`);
  let y: Tensor;
  if (ws.length === 1) y = conv2d(x, ws[0], bias ? f.p(`${conv}.bias`) : null, { stride, padding });
  else {
    // A weight too large for one GPU binding: convolve per output-channel piece.
    let o = 0;
    y = concat(ws.map((w) => {
      const b = bias ? slice(f.p(`${conv}.bias`), 0, o, w.shape[0]) : null;
      o += w.shape[0];
      return conv2d(x, w, b, { stride, padding });
    }), 1);
  }
  return bn(f, y, norm);
}

function block(f: Forward, x: Tensor, p: string, stride: number, bottleneck: boolean, hasDown: boolean): Tensor {
  let y: Tensor;
  if (bottleneck) {
    y = relu(convBn(f, x, `${p}.conv1`, `${p}.bn1`, 1, 0));
    y = relu(convBn(f, y, `${p}.conv2`, `${p}.bn2`, stride, 1));
    y = convBn(f, y, `${p}.conv3`, `${p}.bn3`, 1, 0);
  } else {
    y = relu(convBn(f, x, `${p}.conv1`, `${p}.bn1`, stride, 1));
    y = convBn(f, y, `${p}.conv2`, `${p}.bn2`, 1, 1);
  }
  const idn = hasDown ? convBn(f, x, `${p}.downsample.0`, `${p}.downsample.1`, stride, 0) : x;
  return relu(add(y, idn));
}

/** ResNet stages → [C2, C3, C4, C5]. */
export function backbone(f: Forward, cfg: MicarConfig, image: Tensor): Tensor[] {
  const { bottleneck, blocks } = backboneLayout(cfg.backbone);
  let x = relu(convBn(f, f.input(image), 'vis_enc.layer1.0', 'vis_enc.layer1.1', 2, 3));
  x = maxPool2d(x, { kernel: 3, stride: 2, padding: 1 });
  const feats: Tensor[] = [];
  for (let s = 0; s < 4; s++) {
    for (let j = 0; j < blocks[s]; j++) {
      const p = s === 0 ? `vis_enc.layer1.4.${j}` : `vis_enc.layer${s + 1}.0.${j}`;
      const stride = j === 0 && s > 0 ? 2 : 1;
      x = block(f, x, p, stride, bottleneck, f.w.has(`${p}.downsample.0.weight`));
    }
    feats.push(x);
  }
  return feats;
}

function lateral(f: Forward, x: Tensor, i: number): Tensor {
  return relu(convBn(f, x, `vis_enc.fpn_c${i}.0`, `vis_enc.fpn_c${i}.1`, 1, 0, true));
}

function upTo(x: Tensor, like: Tensor): Tensor {
  const [h, w] = like.shape.slice(2);
  return x.shape[2] === h && x.shape[3] === w ? x : resizeBilinear(x, h, w);
}

/** MSVE output [b, 49, d_v]. */
export function visionEncoder(f: Forward, cfg: MicarConfig, image: Tensor): Tensor {
  // A deep backbone runs in f32 under f16 (see visionComputeType); the FPN reads its maps in f16.
  const feats = f.within(backboneComputeType(cfg, f.dtype), () => backbone(f, cfg, image)).map((c, i) => f.input(f.capture(`vis_enc.c${i + 2}`, c)));
  return fpnFromFeatures(f, cfg, feats, image.shape[0]);
}

/** FPN, fusion and pooling over the backbone features [C2, C3, C4, C5] → [b, 49, d_v]. */
export function fpnFromFeatures(f: Forward, cfg: MicarConfig, feats: Tensor[], b: number): Tensor {
  const [c2, c3, c4, c5] = feats;
  let sum: Tensor;
  if (cfg.local_tokens_experiment) {
    // EXPERIMENT (config.ts), not the SPEC model: no top-down path, the fusion sees C2's lateral only.
    sum = lateral(f, c2, 2);
  } else {
    const p5 = lateral(f, c5, 5);
    const p4 = add(lateral(f, c4, 4), upTo(p5, c4));
    const p3 = add(lateral(f, c3, 3), upTo(p4, c3));
    const p2 = add(lateral(f, c2, 2), upTo(p3, c2));
    sum = add(add(add(p2, upTo(p3, p2)), upTo(p4, p2)), upTo(p5, p2));
  }
  const fused = f.capture('vis_enc.fused', relu(convBn(f, sum, 'vis_enc.fusion.0', 'vis_enc.fusion.1', 1, 1, true)));
  const pooled = f.capture('vis_enc.pooled', adaptiveAvgPool2d(fused, 7, 7)); // [b, d_v, 7, 7]
  return permute(reshape(pooled, [b, cfg.d_v, 49]), [0, 2, 1]);
}
