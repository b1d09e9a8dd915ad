// Elementwise ops: activations and other unary maps, broadcasting binary arithmetic,
// constants, and `sumTo` (the broadcast reduction their backward needs).
import { makeNode, sameShape, type Tensor } from '../tensor.ts';
import { assertFloat, broadcastShapes, broadcastStrides, grid1d, numel, stridesOf } from './util.ts';
import { elementwiseParams } from '../kernels/elementwise.ts';

const KINDS = ['UNARY', 'UNARY_GRAD', 'BINARY', 'FILL', 'REDUCE_TO'] as const;
type Kind = (typeof KINDS)[number];
function kernel(kind: Kind, op = 0, contig = false) {
  const defs: Record<string, boolean | number> = { OP: op, CONTIG: contig };
  for (const k of KINDS) defs[k] = k === kind;
  return { family: 'elementwise', defs, gen: { PARAMS: elementwiseParams.wgsl } };
}

function header(n: number, shape: number[], sa: number[] = [], sb: number[] = [], alpha = 0, beta = 0) {
  return elementwiseParams.pack({ n, rank: shape.length, dims: shape, sa, sb, alpha, beta });
}

export const UNARY_OPS = {
  relu: 0, silu: 1, gelu: 2, selu: 3, telu: 4, sigmoid: 5, tanh: 6, exp: 7, log: 8, neg: 9,
  sqrt: 10, square: 11, affine: 12, abs: 13, rsqrt: 14,
} as const;
export type UnaryOp = keyof typeof UNARY_OPS;
export type Activation = 'relu' | 'silu' | 'gelu' | 'selu' | 'telu' | 'sigmoid' | 'tanh';

/** y = f(x) elementwise; `affine` computes alpha·x + beta. */
export function unary(op: UnaryOp, x: Tensor, alpha = 1, beta = 0): Tensor {
  assertFloat(x, op);
  const [y] = makeNode(op, [x], [{ shape: x.shape }], {
    encode(ctx) {
      const n = x.size;
      ctx.dispatch({ kernel: kernel('UNARY', UNARY_OPS[op]), bindings: [x, y], params: header(n, [n], [], [], alpha, beta), workgroups: grid1d(n) });
    },
    backward([dy]) {
      if (op === 'affine') return [scale(dy!, alpha)];
      if (op === 'neg') return [neg(dy!)];
      // relu's derivative from its output (y > 0 exactly where x > 0), as PyTorch's
      // threshold_backward does: the input is then not held for the backward; the output is
      // held anyway by its readers (a ResNet's next conv), so a BatchNorm's or a residual
      // sum's output is freed after the forward.
      if (op === 'relu') return [unaryGradNode(op, y, dy!, alpha)];
      return [unaryGradNode(op, x, dy!, alpha)];
    },
  });
  return y;
}

// Derivative nodes are differentiable only to first order (enough for training).
function unaryGradNode(op: UnaryOp, x: Tensor, dy: Tensor, alpha: number): Tensor {
  const [dx] = makeNode(`${op}_grad`, [x, dy], [{ shape: x.shape }], {
    encode(ctx) {
      const n = x.size;
      ctx.dispatch({ kernel: kernel('UNARY_GRAD', UNARY_OPS[op]), bindings: [x, dy, dx], params: header(n, [n], [], [], alpha), workgroups: grid1d(n) });
    },
  });
  return dx;
}

export const relu = (x: Tensor) => unary('relu', x);
export const silu = (x: Tensor) => unary('silu', x);
export const gelu = (x: Tensor) => unary('gelu', x);
export const selu = (x: Tensor) => unary('selu', x);
export const telu = (x: Tensor) => unary('telu', x);
export const sigmoid = (x: Tensor) => unary('sigmoid', x);
export const tanh = (x: Tensor) => unary('tanh', x);
export const exp = (x: Tensor) => unary('exp', x);
export const log = (x: Tensor) => unary('log', x);
export const neg = (x: Tensor) => unary('neg', x);
export const sqrt = (x: Tensor) => unary('sqrt', x);
export const square = (x: Tensor) => unary('square', x);
export const abs = (x: Tensor) => unary('abs', x);
export const rsqrt = (x: Tensor) => unary('rsqrt', x);
export const scale = (x: Tensor, s: number) => unary('affine', x, s, 0);
export const addScalar = (x: Tensor, c: number) => unary('affine', x, 1, c);
export function activation(name: Activation, x: Tensor): Tensor {
  if (!(name in UNARY_OPS)) throw new Error(`unknown activation "${name}" (relu, silu, gelu, selu, telu, sigmoid, tanh)`);
  return unary(name, x);
}

const BINARY_OPS = { add: 0, sub: 1, mul: 2, div: 3, maximum: 4, minimum: 5, ge: 6 } as const;
type BinaryOp = Exclude<keyof typeof BINARY_OPS, 'ge'>;

function binary(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  assertFloat(a, op, 'a');
  assertFloat(b, op, 'b');
  const shape = broadcastShapes(a.shape, b.shape, op);
  const [y] = makeNode(op, [a, b], [{ shape }], {
    encode(ctx) {
      const n = numel(shape);
      // Operands of the output's shape skip the per-element index arithmetic (integer
      // division has no SIMD form on CPU adapters; it dominated same-shape adds there).
      const contig = sameShape(a.shape, shape) && sameShape(b.shape, shape);
      ctx.dispatch({
        kernel: kernel('BINARY', BINARY_OPS[op], contig),
        bindings: [a, b, y],
        params: header(n, shape, broadcastStrides(a.shape, shape), broadcastStrides(b.shape, shape)),
        workgroups: grid1d(n),
      });
    },
    backward([dy]) {
      const g = dy!;
      switch (op) {
        case 'add': return [sumTo(g, a.shape), sumTo(g, b.shape)];
        case 'sub': return [sumTo(g, a.shape), sumTo(neg(g), b.shape)];
        case 'mul': return [a.requiresGrad ? sumTo(mul(g, b), a.shape) : null, b.requiresGrad ? sumTo(mul(g, a), b.shape) : null];
        case 'div': return [
          a.requiresGrad ? sumTo(div(g, b), a.shape) : null,
          b.requiresGrad ? sumTo(neg(div(mul(g, y), b)), b.shape) : null,
        ];
        default: {
          // max/min: the gradient goes to the selected operand (ties to a).
          const pickA = op === 'maximum' ? geMask(a, b) : geMask(b, a);
          return [sumTo(mul(g, pickA), a.shape), sumTo(sub(g, mul(g, pickA)), b.shape)];
        }
      }
    },
  });
  return y;
}

/** 1 where a ≥ b, else 0 (no gradient). */
export function geMask(a: Tensor, b: Tensor): Tensor {
  const shape = broadcastShapes(a.shape, b.shape, 'ge');
  const [y] = makeNode('ge', [a, b], [{ shape }], {
    encode(ctx) {
      const n = numel(shape);
      ctx.dispatch({ kernel: kernel('BINARY', BINARY_OPS.ge), bindings: [a, b, y], params: header(n, shape, broadcastStrides(a.shape, shape), broadcastStrides(b.shape, shape)), workgroups: grid1d(n) });
    },
  });
  return y;
}

export const add = (a: Tensor, b: Tensor) => binary('add', a, b);
export const sub = (a: Tensor, b: Tensor) => binary('sub', a, b);
export const mul = (a: Tensor, b: Tensor) => binary('mul', a, b);
export const div = (a: Tensor, b: Tensor) => binary('div', a, b);
export const maximum = (a: Tensor, b: Tensor) => binary('maximum', a, b);
export const minimum = (a: Tensor, b: Tensor) => binary('minimum', a, b);

/** A constant tensor (lazy, no gradient). */
export function fill(shape: number[], value: number, dtype: 'f32' | 'f16' = 'f32'): Tensor {
  const [y] = makeNode('fill', [], [{ shape, dtype }], {
    encode(ctx) {
      const n = numel(shape);
      ctx.dispatch({ kernel: kernel('FILL'), bindings: [y], params: header(n, [n], [], [], value), workgroups: grid1d(n) });
    },
  });
  return y;
}

/** Sums `x` down to `shape` (NumPy broadcast rules in reverse). */
export function sumTo(x: Tensor, shape: number[]): Tensor {
  if (sameShape(x.shape, shape)) return x;
  const off = x.shape.length - shape.length;
  if (off < 0) throw new Error(`sumTo: cannot reduce [${x.shape}] to [${shape}]`);
  // Keep-dims target of the same rank as x.
  const keep = x.shape.map((n, i) => (i < off ? 1 : shape[i - off]));
  keep.forEach((n, i) => {
    if (n !== 1 && n !== x.shape[i]) throw new Error(`sumTo: cannot reduce [${x.shape}] to [${shape}]`);
  });
  const [y] = makeNode('sum_to', [x], [{ shape }], {
    encode(ctx) {
      const n = numel(shape);
      ctx.dispatch({
        kernel: kernel('REDUCE_TO'),
        bindings: [x, y],
        params: header(n, keep, stridesOf(x.shape), x.shape), // sb: the sizes of x (REDUCE_TO)
        workgroups: grid1d(n),
      });
    },
    backward([dy]) {
      return [expandTo(dy!, x.shape)];
    },
  });
  return y;
}

/** Broadcasts `x` to `shape` (materialised). */
export function expandTo(x: Tensor, shape: number[]): Tensor {
  if (sameShape(x.shape, shape)) return x;
  return add(x, fill(shape, 0, x.dtype === 'f16' ? 'f16' : 'f32'));
}
