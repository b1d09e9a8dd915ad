// Typed uniform schemas: one declaration per kernel family generates both the WGSL `Params`
// struct (the shader's `${PARAMS}` hole) and the packing code, so fields are filled by name,
// checked for type and range, and can never drift out of order against the shader.
import { Params } from '../tensor.ts';

export type UniformScalar = 'u32' | 'i32' | 'f32';
/**
 * A field's WGSL type: a scalar, a vec4 of one, or an array of such vec4s (uniform arrays need
 * a 16-byte element stride, so short lists such as a shape travel as `array<vec4<u32>, 2>`).
 */
export type UniformType = UniformScalar | `vec4<${UniformScalar}>` | `array<vec4<${UniformScalar}>, ${number}>`;

/** What a field is filled with: a number for a scalar, a list (zero-padded) for a vec4 or an array. */
export type UniformValue<T extends UniformType> = T extends UniformScalar ? number : readonly number[];
export type UniformValues<S extends Record<string, UniformType>> = { [K in keyof S]: UniformValue<S[K]> };

interface Layout {
  scalar: UniformScalar;
  /** Words (4 bytes) the field takes: 1 for a scalar, 4 per vec4. */
  words: number;
  /** Alignment in words (WGSL: 4 bytes for a scalar, 16 for vec4 and arrays of vec4). */
  align: number;
}

function layoutOf(family: string, name: string, t: UniformType): Layout {
  if (t === 'u32' || t === 'i32' || t === 'f32') return { scalar: t, words: 1, align: 1 };
  const v = /^vec4<(u32|i32|f32)>$/.exec(t);
  if (v) return { scalar: v[1] as UniformScalar, words: 4, align: 4 };
  const a = /^array<vec4<(u32|i32|f32)>, *(\d+)>$/.exec(t);
  if (a && Number(a[2]) >= 1) return { scalar: a[1] as UniformScalar, words: 4 * Number(a[2]), align: 4 };
  throw new Error(`${family} params: field '${name}' has unsupported type '${t}' (u32, i32, f32, vec4<…> or array<vec4<…>, N>)`);
}

export class UniformSchema<S extends Record<string, UniformType>> {
  private readonly names: (keyof S & string)[];
  private readonly layouts: Record<string, Layout>;
  /** Per field in struct order, with the padding words WGSL's alignment puts before it. */
  private readonly order: { name: keyof S & string; padBefore: number }[] = [];
  /** Words after the last field up to a 16-byte multiple. */
  private readonly padAfter: number;
  /** The WGSL declaration `struct Params { … }` (padded to a 16-byte multiple). */
  readonly wgsl: string;
  /** Bytes of the struct (a multiple of 16). */
  readonly byteLength: number;

  constructor(readonly family: string, readonly fields: Readonly<S>) {
    this.names = Object.keys(fields) as (keyof S & string)[];
    this.layouts = {};
    for (const n of this.names) this.layouts[n] = layoutOf(family, n, fields[n]);
    // Padding is declared explicitly (`_padN: u32`), so the struct text shows every word.
    const decl: { text: string; end: number }[] = [];
    let words = 0, pads = 0;
    const pad = () => decl.push({ text: `_pad${pads++}: u32`, end: ++words });
    for (const n of this.names) {
      const l = this.layouts[n];
      const before = words;
      while (words % l.align) pad();
      this.order.push({ name: n, padBefore: words - before });
      words += l.words;
      decl.push({ text: `${n}: ${fields[n]}`, end: words });
    }
    const last = words;
    while (words % 4 || words === 0) pad();
    this.padAfter = words - last;
    this.byteLength = 4 * words;
    // Four words to a line (a field that fills whole lines stands alone).
    this.wgsl = `struct Params {\n${decl.map((d) => `  ${d.text},${d.end % 4 === 0 ? '\n' : ''}`).join('')}}`;
  }

  /**
   * Packs a value for each field (fields left out are 0 when `partial`); an unknown name, a
   * missing field, a value outside its type or a list longer than its field is an error naming
   * the family and field. Lists shorter than their vec4 / array field are padded with zeros.
   */
  pack(values: Partial<UniformValues<S>>, partial = false): Params {
    for (const k of Object.keys(values)) if (!(k in this.fields)) throw new Error(`${this.family} params: unknown field '${k}' (fields: ${this.names.join(', ')})`);
    const p = new Params();
    const put = (n: string, t: UniformScalar, x: number) => {
      if (t === 'u32') {
        if (!Number.isInteger(x) || x < 0 || x > 0xffffffff) throw new Error(`${this.family} params: ${n} = ${x} is not a u32`);
        p.u(x);
      } else if (t === 'i32') {
        if (!Number.isInteger(x) || x < -0x80000000 || x > 0x7fffffff) throw new Error(`${this.family} params: ${n} = ${x} is not an i32`);
        p.i(x);
      } else {
        if (typeof x !== 'number') throw new Error(`${this.family} params: ${n} = ${x} is not a number`);
        p.f(x);
      }
    };
    for (const { name: n, padBefore } of this.order) {
      for (let i = 0; i < padBefore; i++) p.u(0);
      const v = values[n] as number | readonly number[] | undefined;
      if (v === undefined && !partial) throw new Error(`${this.family} params: field '${n}' missing`);
      const l = this.layouts[n];
      if (l.words === 1) {
        if (typeof v === 'object') throw new Error(`${this.family} params: ${n} is a ${this.fields[n]}, got a list`);
        put(n, l.scalar, v ?? 0);
      } else {
        if (v !== undefined && typeof v !== 'object') throw new Error(`${this.family} params: ${n} is a ${this.fields[n]}, got ${v} (a list is needed)`);
        const xs = v ?? [];
        if (xs.length > l.words) throw new Error(`${this.family} params: ${n} has ${xs.length} values, at most ${l.words} fit in ${this.fields[n]}`);
        for (let i = 0; i < l.words; i++) put(`${n}[${i}]`, l.scalar, xs[i] ?? 0);
      }
    }
    for (let i = 0; i < this.padAfter; i++) p.u(0);
    return p;
  }
}

export function uniformSchema<S extends Record<string, UniformType>>(family: string, fields: S): UniformSchema<S> {
  return new UniformSchema<S>(family, fields);
}
