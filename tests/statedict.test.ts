// state_dict checks (exact missing / unexpected / mis-shaped lists and the report text) and the
// torchvision ResNet → vis_enc.* name mapping, checked against the golden tiny key set.

import { describe, expect, it } from 'vitest';
import { checkStateDict, formatStateDictReport, stateDictToFloat32 } from '../src/io/statedict.ts';
import { mapTorchvisionBackbone, portToTorchvisionName, torchvisionToPortName } from '../src/io/backbone.ts';
import { fromFloat32, fromInts, type HostTensor, numelOf, readSafetensors, toFloat32 } from '../src/io/safetensors.ts';
import { readFileBytes } from '../src/io/files.ts';
import { type Rng, rng } from './util.ts';

const goldenWeights = new URL('../../shared/golden/tiny/weights.safetensors', import.meta.url).pathname;

function pick<T>(R: Rng, items: T[], n: number): T[] {
  const a = items.slice();
  for (let i = a.length - 1; i > 0; i--) {
    const j = R.int(0, i);
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a.slice(0, n);
}

/** torchvision ResNet state_dict keys and shapes, written out from torchvision/models/resnet.py. */
function torchvisionResnet(block: 'basic' | 'bottleneck', layers: number[]): Map<string, { shape: number[] }> {
  const keys = new Map<string, { shape: number[] }>();
  const bn = (p: string, c: number) => {
    for (const s of ['weight', 'bias', 'running_mean', 'running_var']) keys.set(`${p}.${s}`, { shape: [c] });
    keys.set(`${p}.num_batches_tracked`, { shape: [] });
  };
  keys.set('conv1.weight', { shape: [64, 3, 7, 7] });
  bn('bn1', 64);
  const expansion = block === 'basic' ? 1 : 4;
  let inplanes = 64;
  layers.forEach((n, li) => {
    const planes = 64 << li;
    for (let b = 0; b < n; b++) {
      const p = `layer${li + 1}.${b}`;
      if (block === 'basic') {
        keys.set(`${p}.conv1.weight`, { shape: [planes, inplanes, 3, 3] });
        bn(`${p}.bn1`, planes);
        keys.set(`${p}.conv2.weight`, { shape: [planes, planes, 3, 3] });
        bn(`${p}.bn2`, planes);
      } else {
        keys.set(`${p}.conv1.weight`, { shape: [planes, inplanes, 1, 1] });
        bn(`${p}.bn1`, planes);
        keys.set(`${p}.conv2.weight`, { shape: [planes, planes, 3, 3] });
        bn(`${p}.bn2`, planes);
        keys.set(`${p}.conv3.weight`, { shape: [planes * 4, planes, 1, 1] });
        bn(`${p}.bn3`, planes * 4);
      }
      if (b === 0 && (li > 0 || inplanes !== planes * expansion)) {
        keys.set(`${p}.downsample.0.weight`, { shape: [planes * expansion, inplanes, 1, 1] });
        bn(`${p}.downsample.1`, planes * expansion);
      }
      inplanes = planes * expansion;
    }
  });
  keys.set('fc.weight', { shape: [1000, inplanes] });
  keys.set('fc.bias', { shape: [1000] });
  return keys;
}

describe('checkStateDict / formatStateDictReport', () => {
  it('lists exactly the removed, added and re-shaped names of a perturbed golden state_dict', async () => {
    const R = rng('statedict report');
    const sd = readSafetensors(await readFileBytes(goldenWeights), 'weights.safetensors').tensors;
    const expected = new Map([...sd].map(([k, t]) => [k, { shape: t.shape }]));
    const ok = checkStateDict(expected, sd, 'weights.safetensors');
    expect(ok).toEqual({ ok: true, fileName: 'weights.safetensors', missing: [], unexpected: [], misShaped: [] });
    expect(formatStateDictReport(ok)).toMatch(/matches the model/);

    const names = [...sd.keys()];
    const removed = pick(R, names, R.int(1, 6));
    const reshaped = pick(R, names.filter((n) => !removed.includes(n)), R.int(1, 5));
    const added = Array.from({ length: R.int(1, 4) }, (_, i) => `extra.${i}.weight${R.int(0, 99)}`);
    const got = new Map<string, HostTensor>();
    const wantMis: { name: string; expected: number[]; got: number[] }[] = [];
    for (const [k, t] of sd) {
      if (removed.includes(k)) continue;
      if (reshaped.includes(k)) {
        const shape = [...t.shape, R.int(2, 3)];
        got.set(k, fromFloat32(new Float32Array(numelOf(shape)), shape));
        wantMis.push({ name: k, expected: t.shape, got: shape });
      } else got.set(k, t);
    }
    for (const a of added) got.set(a, fromFloat32([1, 2], [2]));
    const r = checkStateDict(expected, got, 'perturbed.pth');
    expect(r.ok).toBe(false);
    // Missing in model order, unexpected in file order, mis-shaped in model order.
    expect(r.missing).toEqual(names.filter((n) => removed.includes(n)));
    expect(r.unexpected).toEqual(added);
    expect(r.misShaped).toEqual(names.filter((n) => reshaped.includes(n)).map((n) => wantMis.find((m) => m.name === n)!));
    const text = formatStateDictReport(r);
    expect(text.split('\n')[0]).toBe(`perturbed.pth: state_dict does not match the model: ${removed.length} missing, ${added.length} unexpected, ${reshaped.length} mis-shaped`);
    for (const n of removed) expect(text).toContain(`    ${n}`);
    for (const n of added) expect(text).toContain(`    ${n}`);
    for (const m of wantMis) expect(text).toContain(`    ${m.name}: model [${m.expected.join(', ')}], file [${m.got.join(', ')}]`);
    // Long lists are cut with a count.
    const many = checkStateDict(expected, new Map(), 'empty.safetensors');
    expect(many.missing.length).toBe(216);
    expect(formatStateDictReport(many, 10)).toContain('… and 206 more');
  });

  it('hints: DataParallel "module." prefix, torchvision backbone names, transposed shapes', () => {
    const expected = new Map([['vis_enc.layer1.0.weight', { shape: [64, 3, 7, 7] }], ['proj.1.weight', { shape: [4, 6] }]]);
    const dp = checkStateDict(expected, new Map([['module.vis_enc.layer1.0.weight', { shape: [64, 3, 7, 7] }], ['module.proj.1.weight', { shape: [4, 6] }]]), 'dp.pth');
    expect(formatStateDictReport(dp)).toMatch(/"module\." .*strip that prefix/);
    const tv = checkStateDict(expected, new Map([['conv1.weight', { shape: [64, 3, 7, 7] }], ['proj.1.weight', { shape: [6, 4] }]]), 'tv.pth');
    const text = formatStateDictReport(tv);
    expect(text).toMatch(/mapTorchvisionBackbone/);
    expect(text).toMatch(/right number of elements/);
  });

  it('stateDictToFloat32 converts every dtype and names a bad tensor', () => {
    const R = rng('statedict f32');
    const x = R.randn(7);
    const out = stateDictToFloat32(new Map([['a', fromFloat32(x, [7], 'F16')], ['n', fromInts([1], [], 'I64')], ['b', fromFloat32(x, [7])]]));
    expect(Array.from(out.get('b')!.data)).toEqual(Array.from(x));
    expect(Array.from(out.get('n')!.data)).toEqual([1]);
    expect(out.get('n')!.shape).toEqual([]);
    const h = out.get('a')!.data;
    x.forEach((v, i) => expect(Math.abs(h[i] - v)).toBeLessThanOrEqual(Math.abs(v) * 2 ** -11 + 2 ** -25));
    expect(() => stateDictToFloat32(new Map([['bad', { dtype: 'F32', shape: [3], data: new Uint8Array(5) } as HostTensor]]))).toThrow(/"bad".*needs 12 bytes, has 5/);
  });
});

describe('torchvision backbone names', () => {
  it('resnet10 (golden tiny backbone) maps onto exactly the golden vis_enc backbone keys and shapes', async () => {
    const sd = readSafetensors(await readFileBytes(goldenWeights), 'weights.safetensors').tensors;
    const goldenBackbone = [...sd.keys()].filter((k) => /^vis_enc\.layer[1-4]\./.test(k));
    const tv = torchvisionResnet('basic', [1, 1, 1, 1]);
    const mapped = mapTorchvisionBackbone(tv);
    expect([...mapped.keys()].sort()).toEqual(goldenBackbone.sort());
    for (const [k, v] of mapped) expect(v.shape, k).toEqual(sd.get(k)!.shape);
    // And back: every golden backbone key has its torchvision name.
    for (const k of goldenBackbone) expect(tv.has(portToTorchvisionName(k)!), k).toBe(true);
    expect(portToTorchvisionName('vis_enc.fpn_c2.0.weight')).toBeNull();
    expect(portToTorchvisionName('vis_enc.layer1.2.weight')).toBeNull();
  });

  it('resnet18 / resnet50 key lists: fc dropped, stem and stages renamed, round trip, module. prefix, bad keys', () => {
    for (const [block, layers] of [['basic', [2, 2, 2, 2]], ['bottleneck', [3, 4, 6, 3]]] as const) {
      const tv = torchvisionResnet(block, [...layers]);
      const mapped = mapTorchvisionBackbone(tv);
      expect(mapped.size).toBe(tv.size - 2); // fc.weight, fc.bias
      for (const [k, v] of tv) {
        const port = torchvisionToPortName(k);
        if (k.startsWith('fc.')) expect(port).toBeNull();
        else {
          expect(mapped.get(port!)).toBe(v);
          expect(portToTorchvisionName(port!)).toBe(k);
        }
      }
      expect(mapped.get('vis_enc.layer1.0.weight')).toBe(tv.get('conv1.weight'));
      expect(mapped.get('vis_enc.layer1.1.running_var')).toBe(tv.get('bn1.running_var'));
      expect(mapped.get('vis_enc.layer1.4.1.conv2.weight')).toBe(tv.get('layer1.1.conv2.weight'));
      expect(mapped.get('vis_enc.layer3.0.1.bn1.weight')).toBe(tv.get('layer3.1.bn1.weight'));
      expect(mapped.get('vis_enc.layer4.0.0.downsample.1.num_batches_tracked')).toBe(tv.get('layer4.0.downsample.1.num_batches_tracked'));
      const dp = mapTorchvisionBackbone(new Map([...tv].map(([k, v]) => [`module.${k}`, v])));
      expect([...dp.keys()]).toEqual([...mapped.keys()]);
    }
    expect(() => mapTorchvisionBackbone(new Map([['conv1.weight', 1], ['avgpool.x', 2]]))).toThrow(/"avgpool\.x" is not a torchvision ResNet key/);
    // Values pass through untouched (HostTensor data included).
    const t = fromFloat32([1, 2, 3], [3]);
    expect(toFloat32(mapTorchvisionBackbone(new Map([['bn1.weight', t]])).get('vis_enc.layer1.1.weight')!)).toEqual(Float32Array.of(1, 2, 3));
  });
});
