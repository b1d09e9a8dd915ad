// torch.save zip checkpoints: the authors' format (tiny/model_snapshot.pth, f32 copies of the
// golden weights) against weights.safetensors; writePth → readPth round trips incl. an inert
// "whole_model"; strided / offset / shared-storage views against a plain index-math reference;
// the pickle VM against Python-made pickles (protocols 0, 2, 4, 5); corrupted archives.

import { describe, expect, it } from 'vitest';
import { zipSync } from 'fflate';
import { readPth, readZip } from '../src/io/pth.ts';
import { type StridedTensor, writePth } from '../src/io/pth-writer.ts';
import { PyGlobal, PyObject, PySet, unpickle } from '../src/io/pickle.ts';
import { byteSizeOf, fromFloat32, type HostTensor, numelOf, readSafetensors, toFloat32 } from '../src/io/safetensors.ts';
import { readFileBytes, WeightsFileError } from '../src/io/files.ts';
import { rng } from './util.ts';

const golden = new URL('../../shared/golden/tiny/', import.meta.url).pathname;
const hex = (s: string) => Uint8Array.from(s.match(/../g)!.map((b) => parseInt(b, 16)));

function expectFileError(fn: () => unknown, file: string, extra?: RegExp): WeightsFileError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  if (!(caught instanceof WeightsFileError)) {
    throw new Error(`expected a WeightsFileError, got ${caught === undefined ? 'no error' : String((caught as Error)?.stack ?? caught)}`);
  }
  expect(caught.message).toContain(file);
  expect(caught.message).toMatch(/byte offset \d+/);
  if (extra) expect(caught.message).toMatch(extra);
  return caught;
}

function expectSameStateDict(got: Map<string, HostTensor>, want: Map<string, HostTensor>): void {
  expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
  for (const [name, w] of want) {
    const g = got.get(name)!;
    expect(g.dtype, name).toBe(w.dtype);
    expect(g.shape, name).toEqual(w.shape);
    // A plain loop: vitest's deep equality is far too slow for megabytes.
    expect(g.data.length, name).toBe(w.data.length);
    for (let i = 0; i < w.data.length; i++) if (g.data[i] !== w.data[i]) throw new Error(`${name}: byte ${i} differs`);
  }
}

describe('pth: the authors\' checkpoint format', () => {
  it('tiny/model_snapshot.pth holds the golden weights as float32, "whole_model" skipped', async () => {
    const st = readSafetensors(await readFileBytes(`${golden}weights.safetensors`), 'weights.safetensors').tensors;
    const t0 = performance.now();
    const pth = readPth(await readFileBytes(`${golden}model_snapshot.pth`), 'model_snapshot.pth');
    console.log(`readPth(model_snapshot.pth): ${(performance.now() - t0).toFixed(0)} ms`);
    expect(pth.otherKeys).toEqual(['whole_model']);
    expect(pth.nonTensorKeys).toEqual([]);
    expect(pth.stateDict.size).toBe(216);
    expect([...pth.stateDict.keys()].sort()).toEqual([...st.keys()].sort());
    let elements = 0;
    for (const [name, ref] of st) {
      const t = pth.stateDict.get(name)!;
      expect(t.shape, name).toEqual(ref.shape);
      expect(t.dtype, name).toBe(ref.dtype === 'I64' ? 'I64' : 'F32');
      const a = toFloat32(t), b = toFloat32(ref);
      for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) throw new Error(`${name}[${i}]: pth ${a[i]} vs safetensors ${b[i]}`);
      elements += a.length;
    }
    expect(elements).toBeGreaterThan(5e6);
  });

  it('its whole_model parses inertly into placeholders of the authors\' classes', async () => {
    const bytes = await readFileBytes(`${golden}model_snapshot.pth`);
    const zip = readZip(bytes, 'model_snapshot.pth');
    expect(zip.names[0]).toBe('model_snapshot/data.pkl');
    const seen = new Set<string>();
    const top = unpickle(zip.read('model_snapshot/data.pkl'), {
      persistentLoad: (pid) => ({ pid }),
      reduce: (fn) => {
        if (fn instanceof PyGlobal) seen.add(fn.qualified);
        return undefined;
      },
    }) as Map<string, unknown>;
    const whole = top.get('whole_model') as PyObject;
    expect(whole).toBeInstanceOf(PyObject);
    expect(whole.className).toBe('architecture.models.CaptionModel');
    const dict = whole.state as Map<string, unknown>;
    expect(dict.get('training')).toBe(false);
    const modules = (dict.get('_modules') as PyObject).dictItems!;
    expect((modules.get('vis_enc') as PyObject).className).toBe('architecture.blocks.MultiScaleVisionEncoder');
    expect(seen.has('torch._utils._rebuild_tensor_v2')).toBe(true);
    expect(seen.has('torch._utils._rebuild_parameter')).toBe(true);
  });
});

describe('pth: writer round trips', () => {
  it('writePth(golden f16 weights, whole_model junk) reads back equal, junk (incl. os.system) only recorded', async () => {
    const st = readSafetensors(await readFileBytes(`${golden}weights.safetensors`), 'weights.safetensors').tensors;
    const bytes = writePth(st, { extra: 'whole_model', prefix: 'model_snapshot' });
    const back = readPth(bytes, 'written.pth');
    expect(back.otherKeys).toEqual(['whole_model']);
    expectSameStateDict(back.stateDict, st);
    // Stored data are 64-byte aligned like torch's, so reads are zero-copy views.
    const zip = readZip(bytes, 'written.pth');
    for (const n of zip.names) expect(zip.dataOffset(n) % 64).toBe(0);
    // The junk's os.system REDUCE is a placeholder, never called.
    const top = unpickle(zip.read('model_snapshot/data.pkl'), { persistentLoad: (pid) => pid }) as Map<string, PyObject>;
    const payload = (top.get('whole_model')!.state as Map<string, PyObject>).get('payload')!;
    expect(payload).toBeInstanceOf(PyObject);
    expect(payload.className).toBe('posix.system');
    expect(payload.args).toEqual(['echo this must never run']);
  });

  it('random dtypes/shapes, bare state_dict, and a deflate-compressed archive', () => {
    const R = rng('pth roundtrip');
    const dtypes = ['F32', 'F16', 'BF16', 'F64', 'I64', 'I32', 'I16', 'I8', 'U8', 'BOOL'] as const;
    const sd = new Map<string, HostTensor>();
    for (let i = 0; i < 24; i++) {
      const dtype = dtypes[R.int(0, dtypes.length - 1)];
      const shape = Array.from({ length: R.int(0, 4) }, () => (R.next() < 0.05 ? 0 : R.int(1, 6)));
      const data = new Uint8Array(byteSizeOf(dtype, shape)).map(() => R.int(0, 255));
      if (dtype === 'BOOL') data.forEach((v, j) => (data[j] = v & 1));
      sd.set(`blk.${i}.${dtype.toLowerCase()}${R.int(0, 999)}`, { dtype, shape, data });
    }
    expectSameStateDict(readPth(writePth(sd), 'a.pth').stateDict, sd);
    const bare = readPth(writePth(sd, { bare: true }), 'bare.pth');
    expect(bare.otherKeys).toEqual([]);
    expectSameStateDict(bare.stateDict, sd);
    // Re-pack every record deflated (fflate's writer: local sizes, no data descriptors).
    const zip = readZip(writePth(sd, { extra: 'whole_model' }), 'a.pth');
    const files: Record<string, [Uint8Array, { level: 6 }]> = {};
    for (const n of zip.names) files[n] = [zip.read(n).slice(), { level: 6 }];
    const deflated = zipSync(files);
    expect(readZip(deflated).entries.get('archive/data.pkl')!.method).toBe(8);
    expectSameStateDict(readPth(deflated, 'deflated.pth').stateDict, sd);
  });

  it('strided, offset, broadcast and shared-storage views are made contiguous exactly', () => {
    const R = rng('pth strided');
    const storageNumel = 400;
    const storage = fromFloat32(R.randn(storageNumel), [storageNumel]).data;
    const values = toFloat32({ dtype: 'F32', shape: [storageNumel], data: storage });
    const sd = new Map<string, StridedTensor>();
    const want = new Map<string, Float64Array>();
    for (let i = 0; i < 12; i++) {
      const rank = R.int(1, 4);
      const shape = Array.from({ length: rank }, () => R.int(1, 5));
      // Random strides (0 = broadcast), a random permutation-like layout, inside the storage.
      const stride = shape.map(() => (R.next() < 0.15 ? 0 : R.int(1, 9)));
      let span = 0;
      shape.forEach((d, j) => (span += (d - 1) * stride[j]));
      if (span >= storageNumel) continue;
      const offset = R.int(0, storageNumel - 1 - span);
      sd.set(`view${i}`, { dtype: 'F32', shape, storageKey: 's', storage, offset, stride });
      // Reference: index math on the logical index.
      const ref = new Float64Array(numelOf(shape));
      for (let flat = 0; flat < ref.length; flat++) {
        let rem = flat, src = offset;
        for (let d = rank - 1; d >= 0; d--) {
          src += (rem % shape[d]) * stride[d];
          rem = Math.floor(rem / shape[d]);
        }
        ref[flat] = values[src];
      }
      want.set(`view${i}`, ref);
    }
    // A transpose of a 2-D storage and a scalar in the middle.
    sd.set('transposed', { dtype: 'F32', shape: [8, 5], storageKey: 's', storage, offset: 3, stride: [1, 8] });
    want.set('transposed', Float64Array.from({ length: 40 }, (_, k) => values[3 + Math.floor(k / 5) + (k % 5) * 8]));
    sd.set('scalar', { dtype: 'F32', shape: [], storageKey: 's', storage, offset: 123, stride: [] });
    want.set('scalar', Float64Array.of(values[123]));
    const back = readPth(writePth(sd), 'strided.pth');
    const zip = readZip(writePth(sd), 'strided.pth');
    expect(zip.names.filter((n) => n.includes('/data/'))).toEqual(['archive/data/s']); // one shared storage
    for (const [name, ref] of want) {
      const t = back.stateDict.get(name)!;
      expect(t.shape).toEqual(sd.get(name)!.shape);
      expect(Array.from(toFloat32(t))).toEqual(Array.from(ref));
    }
  });
});

describe('pth: pickle VM against Python pickles', () => {
  // pickle.dumps(obj, protocol=p) by CPython 3 for
  // obj = {'a': [1, -2, 300, 70000, -2**31, 2**40, 2**70, -2**70], 'b': (1.5, -0.0, 'héllo', b'\x00\xff'),
  //        'c': {'nested': None, 't': True, 'f': False}, 'd': ('x', 'x'), 'e': {1}, 'f': frozenset({2})}
  const P0 = '286470300a56610a70310a286c70320a49310a61492d320a61493330300a614937303030300a61492d323134373438333634380a614c313039393531313632373737364c0a614c313138303539313632303731373431313330333432344c0a614c2d313138303539313632303731373431313330333432344c0a617356620a70330a2846312e350a462d302e300a5668e96c6c6f0a70340a635f636f646563730a656e636f64650a70350a28565c7530303030ff0a70360a566c6174696e310a70370a7470380a5270390a747031300a7356630a7031310a28647031320a566e65737465640a7031330a4e7356740a7031340a4930310a7356660a7031350a4930300a737356640a7031360a2856780a7031370a6731370a747031380a7356650a7031390a635f5f6275696c74696e5f5f0a7365740a7032300a28286c7032310a49310a61747032320a527032330a736731350a635f5f6275696c74696e5f5f0a66726f7a656e7365740a7032340a28286c7032350a49320a61747032360a527032370a732e';
  const P2 = '80027d71002858010000006171015d7102284b014afeffffff4d2c014a701101004a000000808a060000000000018a090000000000000000408a090000000000000000c065580100000062710328473ff8000000000000478000000000000000580600000068c3a96c6c6f7104635f636f646563730a656e636f64650a7105580300000000c3bf710658060000006c6174696e31710786710852710974710a580100000063710b7d710c2858060000006e6573746564710d4e580100000074710e88580100000066710f89755801000000647110580100000078711168118671125801000000657113635f5f6275696c74696e5f5f0a7365740a71145d71154b0161857116527117680f635f5f6275696c74696e5f5f0a66726f7a656e7365740a71185d71194b026185711a52711b752e';
  const P4 = '8004959f000000000000007d94288c0161945d94284b014afeffffff4d2c014a701101004a000000808a060000000000018a090000000000000000408a090000000000000000c0658c01629428473ff80000000000004780000000000000008c0668c3a96c6c6f94430200ff9474948c0163947d94288c066e6573746564944e8c017494888c01669489758c0164948c017894680d86948c0165948f94284b0190680b284b029194752e';
  const ints = [1, -2, 300, 70000, -(2 ** 31), 2 ** 40, 2n ** 70n, -(2n ** 70n)];

  function checkCommon(o: Map<string, unknown>): void {
    expect([...o.keys()]).toEqual(['a', 'b', 'c', 'd', 'e', 'f']);
    expect(o.get('a')).toEqual(ints);
    const b = o.get('b') as unknown[];
    expect(b[0]).toBe(1.5);
    expect(Object.is(b[1], -0)).toBe(true);
    expect(b[2]).toBe('héllo');
    expect(Object.isFrozen(b)).toBe(true); // tuple
    expect(o.get('c')).toEqual(new Map<string, unknown>([['nested', null], ['t', true], ['f', false]]));
    expect(o.get('d')).toEqual(['x', 'x']);
  }

  it('protocol 4 and 5 (FRAME, MEMOIZE, SHORT_BINUNICODE, bytes, sets)', () => {
    for (const src of [P4, P4.replace(/^8004/, '8005')]) {
      const o = unpickle(hex(src)) as Map<string, unknown>;
      checkCommon(o);
      expect((o.get('b') as unknown[])[3]).toEqual(Uint8Array.of(0, 255));
      expect((o.get('e') as PySet).items).toEqual([1]);
      expect((o.get('f') as PySet).frozen).toBe(true);
      expect((o.get('f') as PySet).items).toEqual([2]);
    }
  });

  it('protocols 0 and 2: bytes and sets are inert REDUCE placeholders, not calls', () => {
    for (const src of [P0, P2]) {
      const o = unpickle(hex(src), { fileName: 'p.pkl' }) as Map<string, unknown>;
      checkCommon(o);
      const bytes = (o.get('b') as unknown[])[3] as PyObject;
      expect(bytes.className).toBe('_codecs.encode');
      expect(bytes.args).toEqual(['\u0000ÿ', 'latin1']);
      const set = o.get('e') as PyObject;
      expect(set.className).toBe('__builtin__.set');
      expect(set.args).toEqual([[1]]);
    }
  });

  it('memo sharing (GET/PUT text and binary): one object, two references', () => {
    for (const src of ['286470300a56700a70310a286c70320a49310a6149320a617356710a70330a67320a732e', '80049517000000000000007d94288c0170945d94284b014b02658c0171946802752e']) {
      const o = unpickle(hex(src)) as Map<string, unknown[]>;
      expect(o.get('p')).toEqual([1, 2]);
      expect(o.get('p')).toBe(o.get('q'));
    }
  });

  it('malformed pickles are WeightsFileErrors with the offset of the bad opcode', () => {
    const bad: [string, RegExp, number][] = [
      ['80027d', /no STOP/, 3],
      ['8002ff', /unknown opcode 0xff/, 2],
      ['800268052e', /memo key 5 not found/, 2],
      ['8002302e', /stack underflow/, 2],
      ['8002580a000000616263', /truncated: opcode 0x58 needs 10 more bytes/, 2],
      ['8002284b014b022e', /STOP with 2 values and 1 marks/, 7],
      ['8002820100', /EXT1/, 2],
      ['80084e2e', /unsupported pickle protocol 8/, 0],
      ['80024b0151', /BINPERSID without a persistent_load/, 4],
    ];
    for (const [src, re, at] of bad) {
      const e = expectFileError(() => unpickle(hex(src), { fileName: 'x.pkl', baseOffset: 100 }), 'x.pkl', re);
      expect(e.offset).toBe(100 + at);
    }
  });
});

describe('pth: corrupted archives', () => {
  function smallCheckpoint(label: string) {
    const R = rng(label);
    const sd = new Map<string, HostTensor>();
    for (let i = 0; i < 4; i++) {
      const shape = [R.int(1, 6), R.int(1, 6)];
      sd.set(`m.${i}.weight`, fromFloat32(R.randn(numelOf(shape)), shape, i % 2 ? 'F16' : 'F32'));
    }
    return { R, sd, bytes: writePth(sd, { extra: 'whole_model' }) };
  }

  it('every 7th truncation and random byte flips: a WeightsFileError or the intact state_dict', () => {
    const { R, sd, bytes } = smallCheckpoint('pth corrupt');
    const F = 'flip.pth';
    for (let cut = 0; cut < bytes.length; cut += 7) expectFileError(() => readPth(bytes.subarray(0, cut), F), F);
    let errors = 0, intact = 0;
    for (let rep = 0; rep < 300; rep++) {
      const f = bytes.slice();
      f[R.int(0, f.length - 1)] ^= 1 << R.int(0, 7);
      let got;
      try {
        got = readPth(f, F);
      } catch (e) {
        if (!(e instanceof WeightsFileError)) throw new Error(`flip gave ${(e as Error).stack}`);
        expect(e.message).toContain(F);
        errors++;
        continue;
      }
      // Undetectable flips (zip padding, "version made by", …) must leave the data intact.
      expectSameStateDict(got.stateDict, sd);
      intact++;
    }
    console.log(`pth flips: ${errors} errors, ${intact} intact reads`);
    expect(errors).toBeGreaterThan(100);
  });

  it('golden snapshot: truncations, a flipped pickle byte and a flipped storage byte are detected', async () => {
    const bytes = await readFileBytes(`${golden}model_snapshot.pth`);
    const F = 'model_snapshot.pth';
    for (const cut of [0, 21, 100, bytes.length >> 1, bytes.length - 23, bytes.length - 1]) expectFileError(() => readPth(bytes.subarray(0, cut), F), F);
    const zip = readZip(bytes, F);
    const pklAt = zip.dataOffset('model_snapshot/data.pkl'), dataAt = zip.dataOffset('model_snapshot/data/5');
    for (const [start, at, re] of [[pklAt, pklAt + 1000, /CRC-32 mismatch in "model_snapshot\/data.pkl"/], [dataAt, dataAt + 3, /CRC-32 mismatch in "model_snapshot\/data\/5"/]] as const) {
      const f = bytes.slice();
      f[at] ^= 0x10;
      const e = expectFileError(() => readPth(f, F), F, re);
      expect(e.offset).toBe(start);
    }
  });

  it('structural errors: no data.pkl, missing storage, view outside its storage, non-zip, legacy format', () => {
    const R = rng('pth structure');
    const sd = new Map([['w', fromFloat32(R.randn(6), [2, 3])]]);
    const zip = readZip(writePth(sd), 'ok.pth');
    const files: Record<string, Uint8Array> = {};
    for (const n of zip.names) files[n] = zip.read(n).slice();
    const without = (name: string) => zipSync(Object.fromEntries(Object.entries(files).filter(([n]) => n !== name)), { level: 0 });
    expectFileError(() => readPth(without('archive/data.pkl'), 'nopkl.pth'), 'nopkl.pth', /no data.pkl record/);
    expectFileError(() => readPth(without('archive/data/0'), 'nostorage.pth'), 'nostorage.pth', /tensor "w": storage record "archive\/data\/0" is missing/);
    const view: StridedTensor = { dtype: 'F32', shape: [4, 4], storageKey: 'k', storage: new Uint8Array(4 * 10), offset: 0, stride: [4, 1] };
    expectFileError(() => readPth(writePth(new Map([['big', view]])), 'view.pth'), 'view.pth', /tensor "big": view .* reaches element 15 of a 10-element storage/);
    expectFileError(() => readPth(new TextEncoder().encode('definitely not a zip file, just text'), 'text.pth'), 'text.pth', /end-of-central-directory record not found/);
    expectFileError(() => readPth(hex('80028a0a6cfc9c46f92070a8'.padEnd(80, '0')), 'legacy.pth'), 'legacy.pth', /legacy \(pre-1.6/);
    // A pickle whose "model" is a whole module, not a state_dict.
    // {'model': a.B()} — PROTO 2, EMPTY_DICT, 'model', GLOBAL a.B, EMPTY_TUPLE NEWOBJ, SETITEM, STOP
    const onlyModule = zipSync({ 'archive/data.pkl': [hex('80027d' + '58050000006d6f64656c' + '63610a420a' + '2981' + '73' + '2e'), { level: 0 }] });
    expectFileError(() => readPth(onlyModule, 'module.pth'), 'module.pth', /"model" is a a\.B object, not a state_dict \(a pickled module/);
  });
});
