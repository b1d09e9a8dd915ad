// Typed uniform schemas: one declaration per kernel family generates both the WGSL `Params`
// struct (the shader's `${PARAMS}` hole) and the packing code, so fields are filled by name,
// checked for type and range, and can never drift out of order against the shader.
import { Params } from '../tensor.ts';

export type UniformType = 'u32' | 'i32' | 'f32';

export class UniformSchema<F extends string> {
  private readonly names: F[];
  /** The WGSL declaration `struct Params { … }` (padded to a 16-byte multiple). */
  readonly wgsl: string;

  constructor(readonly family: string, readonly fields: Readonly<Record<F, UniformType>>) {
    this.names = Object.keys(fields) as F[];
    const decl = this.names.map((n) => `${n}: ${fields[n]}`);
    for (let i = 0; decl.length % 4; i++) decl.push(`_pad${i}: u32`);
    this.wgsl = `struct Params {\n${decl.map((d, i) => `  ${d},${i % 4 === 3 ? '\n' : ''}`).join('')}}`;
  }

  /**
   * Packs a value for each field (fields left out are 0 when `partial`); an unknown name, a
   * missing field or a value outside its type is an error naming the family and field.
   */
  pack(values: Partial<Record<F, number>>, partial = false): Params {
    for (const k of Object.keys(values)) if (!(k in this.fields)) throw new Error(`${this.family} params: unknown field '${k}' (fields: ${this.names.join(', ')})`);
    const p = new Params();
    for (const n of this.names) {
      const v = values[n];
      if (v === undefined && !partial) throw new Error(`${this.family} params: field '${n}' missing`);
      const x = v ?? 0;
      const t = this.fields[n];
      if (t === 'u32') {
        if (!Number.isInteger(x) || x < 0 || x > 0xffffffff) throw new Error(`${this.family} params: ${n} = ${x} is not a u32`);
        p.u(x);
      } else if (t === 'i32') {
        if (!Number.isInteger(x) || x < -0x80000000 || x > 0x7fffffff) throw new Error(`${this.family} params: ${n} = ${x} is not an i32`);
        p.i(x);
      } else p.f(x);
    }
    for (let i = this.names.length; i % 4; i++) p.u(0);
    return p;
  }
}

export function uniformSchema<F extends string>(family: string, fields: Record<F, UniformType>): UniformSchema<F> {
  return new UniformSchema(family, fields);
}
