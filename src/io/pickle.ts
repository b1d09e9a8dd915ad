// An inert pickle reader (protocols 0–5 as torch.save and Python write them). It never executes
// or imports anything: GLOBAL / STACK_GLOBAL only name a class or function (PyGlobal), and
// REDUCE / NEWOBJ / BUILD / INST / OBJ build placeholder PyObjects that record their arguments
// and state. The caller supplies `reduce` to turn a few known callables (collections.OrderedDict,
// torch._utils._rebuild_tensor_v2, …) into data, and `persistentLoad` for BINPERSID ids.
//
// Values: None → null, bool → boolean, int → number (bigint beyond ±2^53), float → number,
// str → string, bytes/bytearray → Uint8Array, list → array, tuple → frozen array (PyTuple),
// dict → Map, set/frozenset → PySet, anything built from a class → PyObject.

import { WeightsFileError } from './files.ts';

export type PyValue = unknown;

/** A reference to a module-level name, e.g. `torch._utils._rebuild_tensor_v2`. Never resolved. */
export class PyGlobal {
  constructor(readonly module: string, readonly name: string) {}
  get qualified(): string {
    return `${this.module}.${this.name}`;
  }
}

/** An object the pickle would build by calling or instantiating `cls`; recorded, not built. */
export class PyObject {
  /** BUILD state (usually the instance `__dict__`), if any. */
  state: PyValue = undefined;
  /** Items added with SETITEM(S) (dict subclasses) and APPEND(S) (list subclasses). */
  dictItems?: Map<PyValue, PyValue>;
  listItems?: PyValue[];
  constructor(readonly cls: PyValue, readonly args: PyValue[], readonly kind: 'reduce' | 'newobj' | 'inst' | 'obj' = 'reduce', readonly kwargs?: PyValue) {}
  get className(): string {
    return this.cls instanceof PyGlobal ? this.cls.qualified : '<dynamic>';
  }
}

export class PySet {
  constructor(readonly items: PyValue[], readonly frozen = false) {}
}

export type PyTuple = readonly PyValue[];

export interface UnpickleOptions {
  fileName?: string;
  /** Added to error offsets (the pickle's position inside its file). */
  baseOffset?: number;
  /** BINPERSID / PERSID: the popped id → a value. Without it they are errors. */
  persistentLoad?: (pid: PyValue, offset: number) => PyValue;
  /** REDUCE `callable(*args)`: return a value to use, or undefined for the inert PyObject. */
  reduce?: (fn: PyValue, args: PyValue[], offset: number) => PyValue | undefined;
}

function tuple(items: PyValue[]): PyTuple {
  return Object.freeze(items);
}

/** Runs the pickle VM over `bytes` and returns the top-level value. */
export function unpickle(bytes: Uint8Array, opts: UnpickleOptions = {}): PyValue {
  const file = opts.fileName ?? '<memory>';
  const base = opts.baseOffset ?? 0;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const stack: PyValue[] = [];
  const marks: number[] = [];
  const memo = new Map<number, PyValue>();
  let pos = 0;
  let opStart = 0;
  const fail = (detail: string, at = opStart): never => {
    throw new WeightsFileError(file, base + at, `pickle: ${detail}`);
  };
  const need = (n: number): void => {
    if (!(n >= 0) || pos + n > bytes.length) fail(`truncated: opcode 0x${bytes[opStart].toString(16)} needs ${n} more bytes, ${bytes.length - pos} left`);
  };
  const u8 = (): number => {
    need(1);
    return bytes[pos++];
  };
  const u16 = (): number => {
    need(2);
    const v = dv.getUint16(pos, true);
    pos += 2;
    return v;
  };
  const u32 = (): number => {
    need(4);
    const v = dv.getUint32(pos, true);
    pos += 4;
    return v;
  };
  const i32 = (): number => {
    need(4);
    const v = dv.getInt32(pos, true);
    pos += 4;
    return v;
  };
  const u64 = (): number => {
    const lo = u32(), hi = u32();
    const v = hi * 2 ** 32 + lo;
    if (!Number.isSafeInteger(v)) fail(`length ${v} too large`);
    return v;
  };
  const take = (n: number): Uint8Array => {
    need(n);
    const b = bytes.subarray(pos, pos + n);
    pos += n;
    return b;
  };
  const line = (): string => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) fail('truncated: text argument has no terminating newline');
    const s = latin1(bytes.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const utf8 = (b: Uint8Array): string => {
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(b);
    } catch {
      return fail('string is not valid UTF-8');
    }
  };
  const pop = (): PyValue => {
    if (stack.length === 0 || (marks.length && stack.length <= marks[marks.length - 1])) fail('stack underflow');
    return stack.pop();
  };
  const top = (): PyValue => {
    if (stack.length === 0 || (marks.length && stack.length <= marks[marks.length - 1])) fail('stack underflow');
    return stack[stack.length - 1];
  };
  const popMark = (): PyValue[] => {
    const m = marks.pop();
    if (m === undefined) return fail('no MARK on the stack');
    return stack.splice(m);
  };
  const memoGet = (i: number): PyValue => {
    if (!memo.has(i)) fail(`memo key ${i} not found`);
    return memo.get(i);
  };
  const decodeLong = (b: Uint8Array): number | bigint => {
    if (b.length === 0) return 0;
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const parseTextInt = (s: string): number | bigint | boolean => {
    const t = s.trim().replace(/L$/, '');
    if (t === '00') return false;
    if (t === '01') return true;
    if (!/^[+-]?\d+$/.test(t)) fail(`bad integer literal ${JSON.stringify(s)}`);
    const v = BigInt(t);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const setItems = (target: PyValue, kv: PyValue[]): void => {
    if (kv.length % 2) fail('SETITEMS with an odd number of items');
    let map: Map<PyValue, PyValue>;
    if (target instanceof Map) map = target;
    else if (target instanceof PyObject) map = target.dictItems ??= new Map();
    else return fail(`SETITEM(S) on a ${describe(target)}`);
    for (let i = 0; i < kv.length; i += 2) map.set(kv[i], kv[i + 1]);
  };
  const appendItems = (target: PyValue, items: PyValue[]): void => {
    if (Array.isArray(target) && !Object.isFrozen(target)) target.push(...items);
    else if (target instanceof PyObject) (target.listItems ??= []).push(...items);
    else fail(`APPEND(S) on a ${describe(target)}`);
  };
  const callReduce = (fn: PyValue, args: PyValue): PyValue => {
    if (!Array.isArray(args)) fail(`REDUCE arguments are a ${describe(args)}, not a tuple`);
    const got = opts.reduce?.(fn, args as PyValue[], base + opStart);
    return got !== undefined ? got : new PyObject(fn, args as PyValue[], 'reduce');
  };

  for (;;) {
    if (pos >= bytes.length) fail('truncated: no STOP opcode', pos);
    opStart = pos;
    const op = bytes[pos++];
    switch (op) {
      case 0x80: { // PROTO
        const p = u8();
        if (p > 5) fail(`unsupported pickle protocol ${p}`);
        break;
      }
      case 0x95: u64(); break; // FRAME: a framing hint only
      case 0x2e: { // STOP
        if (stack.length !== 1 || marks.length) fail(`STOP with ${stack.length} values and ${marks.length} marks on the stack`);
        return stack[0];
      }
      case 0x28: marks.push(stack.length); break; // MARK
      case 0x30: pop(); break; // POP
      case 0x31: popMark(); break; // POP_MARK
      case 0x32: stack.push(top()); break; // DUP
      case 0x4e: stack.push(null); break; // NONE
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x4a: stack.push(i32()); break; // BININT
      case 0x4b: stack.push(u8()); break; // BININT1
      case 0x4d: stack.push(u16()); break; // BININT2
      case 0x49: stack.push(parseTextInt(line())); break; // INT
      case 0x4c: stack.push(parseTextInt(line())); break; // LONG
      case 0x8a: stack.push(decodeLong(take(u8()))); break; // LONG1
      case 0x8b: { // LONG4
        const n = i32();
        if (n < 0) fail('negative LONG4 length');
        stack.push(decodeLong(take(n)));
        break;
      }
      case 0x46: { // FLOAT
        const s = line();
        const v = Number(s);
        if (Number.isNaN(v) && !/nan/i.test(s)) fail(`bad float literal ${JSON.stringify(s)}`);
        stack.push(v);
        break;
      }
      case 0x47: { // BINFLOAT (big-endian)
        need(8);
        stack.push(dv.getFloat64(pos, false));
        pos += 8;
        break;
      }
      case 0x53: { // STRING: a quoted Python 2 str repr
        const s = line().trim();
        if (s.length < 2 || (s[0] !== "'" && s[0] !== '"') || s[s.length - 1] !== s[0]) fail('bad STRING literal');
        stack.push(unescapePy(s.slice(1, -1)));
        break;
      }
      case 0x54: { // BINSTRING
        const n = i32();
        if (n < 0) fail('negative BINSTRING length');
        stack.push(latin1(take(n)));
        break;
      }
      case 0x55: stack.push(latin1(take(u8()))); break; // SHORT_BINSTRING
      case 0x56: stack.push(unescapeRawUnicode(line())); break; // UNICODE
      case 0x58: stack.push(utf8(take(u32()))); break; // BINUNICODE
      case 0x8c: stack.push(utf8(take(u8()))); break; // SHORT_BINUNICODE
      case 0x8d: stack.push(utf8(take(u64()))); break; // BINUNICODE8
      case 0x42: stack.push(take(u32()).slice()); break; // BINBYTES
      case 0x43: stack.push(take(u8()).slice()); break; // SHORT_BINBYTES
      case 0x8e: stack.push(take(u64()).slice()); break; // BINBYTES8
      case 0x96: stack.push(take(u64()).slice()); break; // BYTEARRAY8
      case 0x97: fail('NEXT_BUFFER (out-of-band buffers) is not supported'); break;
      case 0x98: break; // READONLY_BUFFER: no-op for our values
      case 0x29: stack.push(tuple([])); break; // EMPTY_TUPLE
      case 0x74: stack.push(tuple(popMark())); break; // TUPLE
      case 0x85: stack.push(tuple([pop()])); break; // TUPLE1
      case 0x86: { // TUPLE2
        const b = pop(), a = pop();
        stack.push(tuple([a, b]));
        break;
      }
      case 0x87: { // TUPLE3
        const c = pop(), b = pop(), a = pop();
        stack.push(tuple([a, b, c]));
        break;
      }
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x6c: stack.push(popMark()); break; // LIST
      case 0x61: { // APPEND
        const v = pop();
        appendItems(top(), [v]);
        break;
      }
      case 0x65: { // APPENDS
        const items = popMark();
        appendItems(top(), items);
        break;
      }
      case 0x7d: stack.push(new Map()); break; // EMPTY_DICT
      case 0x64: { // DICT
        const m = new Map();
        setItems(m, popMark());
        stack.push(m);
        break;
      }
      case 0x73: { // SETITEM
        const v = pop(), k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: { // SETITEMS
        const kv = popMark();
        setItems(top(), kv);
        break;
      }
      case 0x8f: stack.push(new PySet([])); break; // EMPTY_SET
      case 0x90: { // ADDITEMS
        const items = popMark();
        const s = top();
        if (!(s instanceof PySet) || s.frozen) fail(`ADDITEMS on a ${describe(s)}`);
        (s as PySet).items.push(...items);
        break;
      }
      case 0x91: stack.push(new PySet(popMark(), true)); break; // FROZENSET
      case 0x67: stack.push(memoGet(parseMemoIndex(line(), fail))); break; // GET
      case 0x68: stack.push(memoGet(u8())); break; // BINGET
      case 0x6a: stack.push(memoGet(u32())); break; // LONG_BINGET
      case 0x70: memo.set(parseMemoIndex(line(), fail), top()); break; // PUT
      case 0x71: memo.set(u8(), top()); break; // BINPUT
      case 0x72: memo.set(u32(), top()); break; // LONG_BINPUT
      case 0x94: memo.set(memo.size, top()); break; // MEMOIZE
      case 0x63: { // GLOBAL "module\nname\n"
        const module = line(), name = line();
        stack.push(new PyGlobal(module, name));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = pop(), module = pop();
        if (typeof name !== 'string' || typeof module !== 'string') fail('STACK_GLOBAL needs two strings');
        stack.push(new PyGlobal(module as string, name as string));
        break;
      }
      case 0x82: case 0x83: case 0x84: fail('EXT1/EXT2/EXT4 (copyreg extension registry) is not supported'); break;
      case 0x52: { // REDUCE
        const args = pop(), fn = pop();
        stack.push(callReduce(fn, args));
        break;
      }
      case 0x81: { // NEWOBJ
        const args = pop(), cls = pop();
        if (!Array.isArray(args)) fail('NEWOBJ arguments are not a tuple');
        stack.push(new PyObject(cls, args as PyValue[], 'newobj'));
        break;
      }
      case 0x92: { // NEWOBJ_EX
        const kwargs = pop(), args = pop(), cls = pop();
        if (!Array.isArray(args)) fail('NEWOBJ_EX arguments are not a tuple');
        stack.push(new PyObject(cls, args as PyValue[], 'newobj', kwargs));
        break;
      }
      case 0x69: { // INST "module\nname\n", args from the mark
        const module = line(), name = line();
        stack.push(new PyObject(new PyGlobal(module, name), popMark(), 'inst'));
        break;
      }
      case 0x6f: { // OBJ: cls and args from the mark
        const items = popMark();
        if (items.length === 0) fail('OBJ without a class');
        stack.push(new PyObject(items[0], items.slice(1), 'obj'));
        break;
      }
      case 0x62: { // BUILD
        const state = pop();
        const obj = top();
        if (obj instanceof PyObject) obj.state = state;
        else if (obj instanceof Map) {
          // e.g. an OrderedDict state_dict's `_metadata` attribute: keep it beside the items
          (obj as Map<PyValue, PyValue> & { pyState?: PyValue }).pyState = state;
        } else if (obj !== null && typeof obj === 'object' && !Object.isFrozen(obj)) {
          // Tensors rebuilt by the caller's `reduce` and other plain values: keep the state aside.
          (obj as { pyState?: PyValue }).pyState = state;
        } else {
          fail(`BUILD on a ${describe(obj)}`);
        }
        break;
      }
      case 0x50: { // PERSID
        if (!opts.persistentLoad) fail('PERSID without a persistent_load handler');
        stack.push(opts.persistentLoad!(line(), base + opStart));
        break;
      }
      case 0x51: { // BINPERSID
        const pid = pop();
        if (!opts.persistentLoad) fail('BINPERSID without a persistent_load handler');
        stack.push(opts.persistentLoad!(pid, base + opStart));
        break;
      }
      default:
        fail(`unknown opcode 0x${op.toString(16).padStart(2, '0')}`);
    }
  }
}

function parseMemoIndex(s: string, fail: (d: string) => never): number {
  if (!/^\d+$/.test(s.trim())) fail(`bad memo index ${JSON.stringify(s)}`);
  return Number(s.trim());
}

function latin1(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 8192) s += String.fromCharCode(...b.subarray(i, i + 8192));
  return s;
}

/** Python 2 str escapes as protocol 0 STRING writes them (\\, \', \n, \xNN, …). */
function unescapePy(s: string): string {
  return s.replace(/\\(x[0-9a-fA-F]{2}|[0-7]{1,3}|.)/g, (_, e: string) => {
    if (e[0] === 'x') return String.fromCharCode(parseInt(e.slice(1), 16));
    if (/^[0-7]/.test(e)) return String.fromCharCode(parseInt(e, 8));
    return ({ n: '\n', r: '\r', t: '\t', '\\': '\\', "'": "'", '"': '"', a: '\x07', b: '\b', f: '\f', v: '\v' } as Record<string, string>)[e] ?? '\\' + e;
  });
}

/** raw-unicode-escape as protocol 0 UNICODE writes it (\uXXXX, \UXXXXXXXX). */
function unescapeRawUnicode(s: string): string {
  return s.replace(/\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g, (_, a?: string, b?: string) => String.fromCodePoint(parseInt(a ?? b!, 16)));
}

export function describe(v: PyValue): string {
  if (v === null) return 'None';
  if (v instanceof PyObject) return `${v.className} object`;
  if (v instanceof PyGlobal) return `global ${v.qualified}`;
  if (v instanceof Map) return 'dict';
  if (v instanceof PySet) return 'set';
  if (v instanceof Uint8Array) return 'bytes';
  if (Array.isArray(v)) return Object.isFrozen(v) ? 'tuple' : 'list';
  return typeof v;
}
