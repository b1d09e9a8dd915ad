// Lazy tensors: ops record nodes; `realize` (scheduler.ts) runs them on the GPU.
import type { KernelRef } from '../gpu/pipelines.ts';
import type { DeviceProfile } from '../gpu/profile.ts';

export type DType = 'f32' | 'i32' | 'u32' | 'f16';

export function dtypeBytes(d: DType): number {
  return d === 'f16' ? 2 : 4;
}

export interface Storage {
  buffer: GPUBuffer;
  /** Bytes in use (the buffer may be larger: pool size classes). */
  bytes: number;
}

/**
 * Bytes [offset, offset + size) of a tensor's or a scratch buffer's storage, bound on its own
 * (a 64 KiB uniform window of a weight matrix: matmul's window kernel). `offset` must be a
 * multiple of 256 (WebGPU's minimum offset alignment for uniform and storage bindings).
 */
export interface BindingWindow {
  of: Tensor | GPUBuffer;
  offset: number;
  size: number;
}

/** A binding for ctx.dispatch: a tensor, a raw buffer (scratch), or a window of either. */
export type Bindable = Tensor | GPUBuffer | BindingWindow;

export function isWindow(b: Bindable): b is BindingWindow {
  return !(b instanceof Tensor) && typeof (b as BindingWindow).size === 'number' && (b as BindingWindow).of !== undefined;
}

/** Kernel parameters, packed as a WGSL uniform struct of 4-byte scalars in call order. */
export class Params {
  private words: number[] = [];
  private kinds: ('u' | 'i' | 'f')[] = [];
  u(...v: number[]): this {
    for (const x of v) {
      if (!Number.isInteger(x) || x < 0 || x > 0xffffffff) throw new Error(`Params.u: ${x} is not a u32`);
      this.words.push(x);
      this.kinds.push('u');
    }
    return this;
  }
  i(...v: number[]): this {
    for (const x of v) {
      this.words.push(x | 0);
      this.kinds.push('i');
    }
    return this;
  }
  f(...v: number[]): this {
    for (const x of v) {
      this.words.push(x);
      this.kinds.push('f');
    }
    return this;
  }
  get byteLength(): number {
    return Math.max(16, Math.ceil((this.words.length * 4) / 16) * 16);
  }
  writeTo(view: DataView, offset: number): void {
    this.words.forEach((w, j) => {
      const k = this.kinds[j];
      if (k === 'f') view.setFloat32(offset + 4 * j, w, true);
      else if (k === 'i') view.setInt32(offset + 4 * j, w, true);
      else view.setUint32(offset + 4 * j, w, true);
    });
  }
}

export interface Dispatch {
  kernel: KernelRef;
  /** Storage bindings in order: WGSL @binding(1), (2), …; @binding(0) is the uniform `Params`. */
  bindings: Bindable[];
  params: Params;
  workgroups: [number, number?, number?];
  label?: string;
}

export interface EncodeCtx {
  /** The adapter's profile: kernel choices read it. */
  profile: DeviceProfile;
  dispatch(d: Dispatch): void;
  /** A temporary buffer that lives until this node has finished. */
  scratch(bytes: number): GPUBuffer;
  /** Copies bytes between bindables (whole size of `src` unless given). */
  copy(src: Bindable, dst: Bindable, bytes?: number, srcOffset?: number, dstOffset?: number): void;
  /** Fills a bindable with zeros. */
  clear(dst: Bindable): void;
}

export interface Node {
  op: string;
  inputs: Tensor[];
  outputs: Tensor[];
  /** Records the node's dispatches. Not called for views. */
  encode?(ctx: EncodeCtx): void;
  /** Output aliases input 0's storage (reshape): no work, no allocation. */
  view?: boolean;
  /** Writes into some inputs in place (optimiser updates): scheduled after everything else. */
  effect?: boolean;
  /**
   * Cheap to run again from kept inputs (a parameter's compute-type cast under mixed precision):
   * between readers far apart in the schedule (the forward's and the backward's) the scheduler
   * frees the output and runs the node again, instead of holding it across the whole step.
   */
  rematerialize?: boolean;
  /** Given d(out_i) (null where unused), returns d(in_j) (null where none). */
  backward?(gradOutputs: (Tensor | null)[]): (Tensor | null)[];
}

let nextId = 1;

export class Tensor {
  readonly id = nextId++;
  node: Node | null = null;
  storage: Storage | null = null;
  /** Root tensor whose storage this one shares (views). */
  base: Tensor | null = null;
  requiresGrad = false;
  grad: Tensor | null = null;
  /** Storage survives `realize` (parameters, outputs someone keeps). */
  kept = false;
  /** Set when a realize released this tensor's storage after its last use. */
  freed = false;
  name?: string;

  constructor(
    readonly shape: number[],
    readonly dtype: DType = 'f32',
  ) {
    for (const s of shape) if (!Number.isInteger(s) || s < 0) throw new Error(`bad tensor shape [${shape}]`);
  }

  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
  get bytes(): number {
    return this.size * dtypeBytes(this.dtype);
  }
  get rank(): number {
    return this.shape.length;
  }
  get root(): Tensor {
    return this.base ?? this;
  }
  get realized(): boolean {
    return this.root.storage !== null;
  }
  /** Keep this tensor's storage through `realize` (it will not be reused). */
  keep(): this {
    this.root.kept = true;
    return this;
  }
  toString(): string {
    return `${this.name ?? 't' + this.id}[${this.shape.join(',')}]${this.dtype === 'f32' ? '' : ':' + this.dtype}`;
  }
  describe(): string {
    return `${this.dtype}[${this.shape.join(',')}]`;
  }
}

export function shapeStr(ts: Tensor[]): string {
  return ts.map((t) => t.describe()).join(', ');
}

/**
 * The element type of an op's float values: f16 when any float input is f16, else f32. Float
 * outputs default to it, and the runtime specialises each dispatch's `${T}` with it, so one
 * kernel template serves both precisions (reductions still accumulate in f32 inside).
 */
export function floatType(ts: readonly Tensor[]): 'f32' | 'f16' {
  return ts.some((t) => t.dtype === 'f16') ? 'f16' : 'f32';
}

let noGradDepth = 0;

/**
 * Builds `fn`'s part of the graph for inference only: its outputs do not require gradients
 * (like torch.no_grad), so ops may pick kernels without a backward or with other roundings
 * (linear's few-row kernel) without making any gradient depend on the batch's row count.
 */
export function noGrad<T>(fn: () => T): T {
  noGradDepth++;
  try {
    return fn();
  } finally {
    noGradDepth--;
  }
}

/** Creates the node and its output tensors (float outputs default to the inputs' floatType). */
export function makeNode(
  op: string,
  inputs: Tensor[],
  outShapes: { shape: number[]; dtype?: DType }[],
  impl: Pick<Node, 'encode' | 'backward' | 'view' | 'effect'>,
): Tensor[] {
  const node: Node = { op, inputs, outputs: [], ...impl };
  const rg = noGradDepth === 0 && !!impl.backward && inputs.some((t) => t.requiresGrad);
  const elem = floatType(inputs);
  node.outputs = outShapes.map((o) => {
    const dtype = o.dtype ?? elem;
    const t = new Tensor(o.shape, dtype);
    t.node = node;
    t.requiresGrad = rg && dtype !== 'i32' && dtype !== 'u32';
    return t;
  });
  if (impl.view) node.outputs[0].base = inputs[0].root;
  return node.outputs;
}

export function sameShape(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
