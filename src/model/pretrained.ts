// ImageNet (torchvision ResNet) weights for the vision backbone alone: mapped into vis_enc.*
// by name, every backbone tensor required and shape-checked; the FPN, fusion and everything
// after keep their own initialisation.
import { writeData } from '../graph/runtime.ts';
import { mapTorchvisionBackbone, portToTorchvisionName } from '../io/backbone.ts';
import { type HostTensor, toFloat32 } from '../io/safetensors.ts';
import type { Weights } from './weights.ts';

/** Loads a torchvision ResNet state dict into `w`'s backbone; returns how many tensors were set. */
export function loadBackboneWeights(w: Weights, sd: Map<string, HostTensor>, file: string): number {
  let mapped: Map<string, HostTensor>;
  try {
    mapped = mapTorchvisionBackbone(sd);
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`);
  }
  const backbone = w.spec.filter((e) => portToTorchvisionName(e.name) !== null);
  const missing = backbone.filter((e) => !mapped.has(e.name)).map((e) => portToTorchvisionName(e.name));
  const unexpected = [...mapped.keys()].filter((k) => !w.has(k)).map((k) => portToTorchvisionName(k) ?? k);
  const misShaped: string[] = [];
  for (const e of backbone) {
    const h = mapped.get(e.name);
    if (h && h.shape.join() !== e.shape.join()) misShaped.push(`${portToTorchvisionName(e.name)}: expected [${e.shape}], file has [${h.shape}]`);
  }
  if (missing.length || unexpected.length || misShaped.length)
    throw new Error(`${file}: not a ${w.cfg.backbone} torchvision state dict: ` +
      [missing.length && `missing ${missing.slice(0, 12).join(', ')}${missing.length > 12 ? ', …' : ''}`,
        unexpected.length && `unexpected ${unexpected.slice(0, 12).join(', ')}`,
        misShaped.length && `wrong shape: ${misShaped.slice(0, 12).join('; ')}`].filter(Boolean).join(' | '));
  for (const e of backbone) {
    const h = mapped.get(e.name)!;
    if (e.kind === 'bn_count') w.bnCount.set(e.name.replace(/\.num_batches_tracked$/, ''), Number(toFloat32(h)[0]));
    else writeData(w.get(e.name), toFloat32(h));
  }
  return backbone.length;
}
