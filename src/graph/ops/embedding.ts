// Embedding lookup (shaders/embedding.wgsl) with a deterministic backward, and the
// sinusoidal position table of the text embedding.
import { makeNode, type Tensor } from '../tensor.ts';
import { fromData } from '../runtime.ts';
import { assertDtype, assertFloat, grid1d } from './util.ts';
import { embeddingParams } from '../kernels/embedding.ts';

const KINDS = ['GATHER', 'LINK', 'SCATTER'] as const;
type Kind = (typeof KINDS)[number];

function kernel(kind: Kind) {
  const defs: Record<string, boolean> = {};
  for (const k of KINDS) defs[k] = k === kind;
  return { family: 'embedding', defs, gen: { PARAMS: embeddingParams.wgsl } };
}

/**
 * Rows of `table` [V, d] picked by i32 `ids` (any shape): out [...ids.shape, d].
 * Ids outside [0, V) give a zero row and send no gradient to the table (PyTorch would raise).
 * The table gradient is summed per row in token order, without float atomics, so it is
 * bit-reproducible.
 */
export function embedding(ids: Tensor, table: Tensor): Tensor {
  assertDtype(ids, 'i32', 'embedding', 'ids');
  assertFloat(table, 'embedding', 'table');
  if (table.rank !== 2) throw new Error(`embedding: table ${table} must be [V, d]`);
  const [V, D] = table.shape;
  const N = ids.size;
  const [y] = makeNode('embedding', [ids, table], [{ shape: [...ids.shape, D] }], {
    encode(ctx) {
      const total = N * D;
      ctx.dispatch({ kernel: kernel('GATHER'), bindings: [ids, table, y], params: embeddingParams.pack({ N, V, D, total }), workgroups: grid1d(total) });
    },
    backward([dy]) {
      return [null, table.requiresGrad ? embeddingGrad(ids, dy!, V, D) : null];
    },
  });
  return y;
}

/** d table [V, D] = Σ over tokens t with ids[t] = v of dy[t, :]. */
function embeddingGrad(ids: Tensor, dy: Tensor, V: number, D: number): Tensor {
  const N = ids.size;
  const [dt] = makeNode('embedding_grad', [ids, dy], [{ shape: [V, D] }], {
    encode(ctx) {
      // Per-id linked lists of tokens: head[v] = 1 + first token with id v (0: none),
      // next[t] = 1 + next token with the same id.
      const head = ctx.scratch(4 * Math.max(1, V));
      const next = ctx.scratch(4 * Math.max(1, N));
      ctx.clear(head);
      ctx.dispatch({ kernel: kernel('LINK'), bindings: [ids, head, next], params: embeddingParams.pack({ N, V, D, total: N }), workgroups: grid1d(N) });
      const total = V * D;
      ctx.dispatch({ kernel: kernel('SCATTER'), bindings: [head, next, dy, dt], params: embeddingParams.pack({ N, V, D, total }), workgroups: grid1d(total) });
    },
  });
  return dt;
}

/**
 * The sinusoidal position table [T, d]: pe[n, 2i] = sin(n·w_i), pe[n, 2i+1] = cos(n·w_i) with
 * w_i = exp(−2i·ln(10000)/d). Follows PyTorch's f32 pipeline (w_i and n·w_i rounded to f32),
 * with sin/cos evaluated in float64 and rounded. A leaf tensor (no gradient).
 */
export function sinusoidalPositions(T: number, d: number): Tensor {
  return fromData(sinusoidalTable(T, d), [T, d], 'f32', 'sinusoidal_positions');
}

/** The values of `sinusoidalPositions` on the CPU. */
export function sinusoidalTable(T: number, d: number): Float32Array {
  if (!Number.isInteger(T) || !Number.isInteger(d) || T < 0 || d < 1) throw new Error(`sinusoidalPositions: bad size T=${T}, d=${d}`);
  const pe = new Float32Array(T * d);
  const c = Math.fround(-Math.log(10000) / d);
  for (let i = 0; 2 * i < d; i++) {
    const w = Math.fround(Math.exp(Math.fround(2 * i * c)));
    for (let n = 0; n < T; n++) {
      const a = Math.fround(n * w);
      pe[n * d + 2 * i] = Math.sin(a);
      if (2 * i + 1 < d) pe[n * d + 2 * i + 1] = Math.cos(a);
    }
  }
  return pe;
}
