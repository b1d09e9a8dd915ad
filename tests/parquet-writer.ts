// A minimal Parquet writer for test fixtures (hyparquet only reads): one row group, uncompressed
// PLAIN data pages v1, Thrift compact metadata. Columns are optional BYTE_ARRAY leaves, either at the
// top level or inside one level of optional struct (like Hugging Face's `image: {bytes, path}`).

class Thrift {
  bytes: number[] = [];
  private last: number[] = [0];
  varint(n: number | bigint) {
    let v = BigInt(n);
    while (v >= 0x80n) {
      this.bytes.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.bytes.push(Number(v));
  }
  zigzag(n: number) {
    const v = BigInt(n);
    this.varint(v >= 0n ? v << 1n : (-v << 1n) - 1n);
  }
  private header(id: number, type: number) {
    const delta = id - this.last[this.last.length - 1];
    if (delta > 0 && delta <= 15) this.bytes.push((delta << 4) | type);
    else {
      this.bytes.push(type);
      this.zigzag(id);
    }
    this.last[this.last.length - 1] = id;
  }
  i32(id: number, v: number) {
    this.header(id, 5);
    this.zigzag(v);
  }
  i64(id: number, v: number) {
    this.header(id, 6);
    this.zigzag(v);
  }
  binary(id: number, v: Uint8Array | string) {
    this.header(id, 8);
    const b = typeof v === 'string' ? new TextEncoder().encode(v) : v;
    this.varint(b.length);
    this.bytes.push(...b);
  }
  private listHeader(size: number, elemType: number) {
    if (size < 15) this.bytes.push((size << 4) | elemType);
    else {
      this.bytes.push(0xf0 | elemType);
      this.varint(size);
    }
  }
  listI32(id: number, vs: number[]) {
    this.header(id, 9);
    this.listHeader(vs.length, 5);
    for (const v of vs) this.zigzag(v);
  }
  listString(id: number, vs: string[]) {
    this.header(id, 9);
    this.listHeader(vs.length, 8);
    for (const v of vs) {
      const b = new TextEncoder().encode(v);
      this.varint(b.length);
      this.bytes.push(...b);
    }
  }
  listStruct(id: number, items: ((t: Thrift) => void)[]) {
    this.header(id, 9);
    this.listHeader(items.length, 12);
    for (const f of items) this.struct(f);
  }
  structField(id: number, f: (t: Thrift) => void) {
    this.header(id, 12);
    this.struct(f);
  }
  private struct(f: (t: Thrift) => void) {
    this.last.push(0);
    f(this);
    this.bytes.push(0);
    this.last.pop();
  }
  /** A top-level struct (no field header). */
  static encode(f: (t: Thrift) => void): Uint8Array {
    const t = new Thrift();
    f(t);
    t.bytes.push(0);
    return Uint8Array.from(t.bytes);
  }
}

/** A column: `path` is ['name'] or ['struct', 'field']; null = missing value (null struct for nested). */
export interface ParquetColumn {
  path: string[];
  values: (Uint8Array | string | null)[];
  utf8?: boolean;
}

function defLevelsBlock(levels: number[], maxDef: number): Uint8Array {
  const width = Math.max(1, Math.ceil(Math.log2(maxDef + 1)));
  const valueBytes = Math.ceil(width / 8);
  const out: number[] = [];
  for (let i = 0; i < levels.length; ) {
    let j = i;
    while (j < levels.length && levels[j] === levels[i]) j++;
    let h = (j - i) << 1; // RLE run header
    while (h >= 0x80) {
      out.push((h & 0x7f) | 0x80);
      h >>>= 7;
    }
    out.push(h);
    for (let b = 0; b < valueBytes; b++) out.push((levels[i] >> (8 * b)) & 0xff);
    i = j;
  }
  const len = out.length;
  return Uint8Array.from([len & 0xff, (len >> 8) & 0xff, (len >> 16) & 0xff, len >>> 24, ...out]);
}

export function writeParquet(columns: ParquetColumn[]): Uint8Array {
  const numRows = columns[0]?.values.length ?? 0;
  const enc = new TextEncoder();
  const chunks: Uint8Array[] = [enc.encode('PAR1')];
  let offset = 4;
  const metas: { col: ParquetColumn; offset: number; size: number }[] = [];
  for (const col of columns) {
    if (col.values.length !== numRows) throw new Error(`writeParquet: column ${col.path.join('.')} has ${col.values.length} rows, expected ${numRows}`);
    const maxDef = col.path.length; // every level optional
    const levels = col.values.map((v) => (v === null ? 0 : maxDef));
    const vals: number[] = [];
    for (const v of col.values) {
      if (v === null) continue;
      const b = typeof v === 'string' ? enc.encode(v) : v;
      vals.push(b.length & 0xff, (b.length >> 8) & 0xff, (b.length >> 16) & 0xff, b.length >>> 24, ...b);
    }
    const body = new Uint8Array([...defLevelsBlock(levels, maxDef), ...vals]);
    const header = Thrift.encode((t) => {
      t.i32(1, 0); // DATA_PAGE
      t.i32(2, body.length);
      t.i32(3, body.length);
      t.structField(5, (d) => {
        d.i32(1, numRows);
        d.i32(2, 0); // PLAIN
        d.i32(3, 3); // RLE
        d.i32(4, 3);
      });
    });
    metas.push({ col, offset, size: header.length + body.length });
    chunks.push(header, body);
    offset += header.length + body.length;
  }
  // Schema: root, then top-level names in first-appearance order with their children.
  const tops: string[] = [];
  for (const c of columns) if (!tops.includes(c.path[0])) tops.push(c.path[0]);
  const schema: ((t: Thrift) => void)[] = [(t) => {
    t.binary(4, 'schema');
    t.i32(5, tops.length);
  }];
  for (const name of tops) {
    const kids = columns.filter((c) => c.path[0] === name);
    if (kids.length === 1 && kids[0].path.length === 1) {
      schema.push((t) => {
        t.i32(1, 6);
        t.i32(3, 1);
        t.binary(4, name);
        if (kids[0].utf8) t.i32(6, 0);
      });
    } else {
      schema.push((t) => {
        t.i32(3, 1);
        t.binary(4, name);
        t.i32(5, kids.length);
      });
      for (const k of kids) {
        schema.push((t) => {
          t.i32(1, 6);
          t.i32(3, 1);
          t.binary(4, k.path[1]);
          if (k.utf8) t.i32(6, 0);
        });
      }
    }
  }
  const footer = Thrift.encode((t) => {
    t.i32(1, 1);
    t.listStruct(2, schema);
    t.i64(3, numRows);
    t.listStruct(4, [(rg) => {
      rg.listStruct(1, metas.map((m) => (cc: Thrift) => {
        cc.i64(2, m.offset);
        cc.structField(3, (md) => {
          md.i32(1, 6);
          md.listI32(2, [0, 3]);
          md.listString(3, m.col.path);
          md.i32(4, 0);
          md.i64(5, numRows);
          md.i64(6, m.size);
          md.i64(7, m.size);
          md.i64(9, m.offset);
        });
      }));
      rg.i64(2, metas.reduce((s, m) => s + m.size, 0));
      rg.i64(3, numRows);
    }]);
  });
  const len = footer.length;
  chunks.push(footer, Uint8Array.from([len & 0xff, (len >> 8) & 0xff, (len >> 16) & 0xff, len >>> 24]), enc.encode('PAR1'));
  const total = chunks.reduce((s, c) => s + c.length, 0);
  const out = new Uint8Array(total);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}
