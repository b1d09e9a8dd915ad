// torchvision ResNet state_dict names ↔ the MicarVLMoE `vis_enc.*` names (SPEC §1): the authors
// wrap the backbone as layer1 = Sequential(conv1, bn1, relu, maxpool, layer1), layer2..4 =
// Sequential(layerN), so
//   conv1.*        → vis_enc.layer1.0.*      bn1.*        → vis_enc.layer1.1.*
//   layer1.<rest>  → vis_enc.layer1.4.<rest> layerN.<rest> → vis_enc.layerN.0.<rest> (N = 2..4)
//   fc.*           → dropped (the classifier head is not part of the model)

const TV = /^(conv1|bn1|layer[1-4]|fc)\.(.+)$/;
const PORT = /^vis_enc\.layer([1-4])\.(\d+)\.(.+)$/;

/** The port's name for a torchvision ResNet key; null for the dropped `fc.*`. Throws otherwise. */
export function torchvisionToPortName(name: string): string | null {
  const m = TV.exec(name);
  if (!m) throw new Error(`mapTorchvisionBackbone: "${name}" is not a torchvision ResNet key (conv1.*, bn1.*, layer1..4.*, fc.*)`);
  const [, head, rest] = m;
  switch (head) {
    case 'fc': return null;
    case 'conv1': return `vis_enc.layer1.0.${rest}`;
    case 'bn1': return `vis_enc.layer1.1.${rest}`;
    case 'layer1': return `vis_enc.layer1.4.${rest}`;
    default: return `vis_enc.${head}.0.${rest}`;
  }
}

/** The torchvision key for a port `vis_enc.layerN…` backbone key; null for non-backbone keys
 *  (fpn_c*, fusion, and everything outside vis_enc). */
export function portToTorchvisionName(name: string): string | null {
  const m = PORT.exec(name);
  if (!m) return null;
  const [, n, idx, rest] = m;
  if (n === '1') {
    if (idx === '0') return `conv1.${rest}`;
    if (idx === '1') return `bn1.${rest}`;
    if (idx === '4') return `layer1.${rest}`;
    return null;
  }
  return idx === '0' ? `layer${n}.${rest}` : null;
}

/** Renames a torchvision ResNet state_dict (optionally saved from DataParallel with a `module.`
 *  prefix) to `vis_enc.*` names, dropping `fc.*`. Throws on any other key. */
export function mapTorchvisionBackbone<T>(sd: Map<string, T>): Map<string, T> {
  const keys = [...sd.keys()];
  const strip = keys.length > 0 && keys.every((k) => k.startsWith('module.'));
  const out = new Map<string, T>();
  for (const [k, v] of sd) {
    const port = torchvisionToPortName(strip ? k.slice('module.'.length) : k);
    if (port === null) continue;
    if (out.has(port)) throw new Error(`mapTorchvisionBackbone: two keys map to "${port}"`);
    out.set(port, v);
  }
  return out;
}
