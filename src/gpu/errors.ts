// GPU errors are collected per step/op with error scopes and re-thrown with the op that caused them.

export class GpuOpError extends Error {
  constructor(
    public op: string,
    public kind: string,
    message: string,
  ) {
    super(`WebGPU ${kind} error in ${op}: ${message}`);
    this.name = 'GpuOpError';
  }
}

/** Pending error-scope results; `flushErrors` awaits them and throws the first. */
const pending: Promise<GpuOpError | null>[] = [];

export function pushScopes(device: GPUDevice): void {
  device.pushErrorScope('out-of-memory');
  device.pushErrorScope('validation');
  device.pushErrorScope('internal');
}

/** Pops the three scopes pushed by `pushScopes`; errors are attributed to `op`. */
export function popScopes(device: GPUDevice, op: string): void {
  const kinds = ['internal', 'validation', 'out-of-memory'];
  for (const kind of kinds) {
    pending.push(device.popErrorScope().then((e) => (e ? new GpuOpError(op, kind, e.message) : null)));
  }
}

/** Runs `fn` (a buffer allocation) inside an out-of-memory scope; an OOM surfaces at the next
 *  `flushErrors` naming `what` (the op and tensor the buffer was for). */
export function scopedOom<T>(device: GPUDevice, what: string, fn: () => T): T {
  device.pushErrorScope('out-of-memory');
  try {
    return fn();
  } finally {
    pending.push(device.popErrorScope().then((e) => (e ? new GpuOpError(what, 'out-of-memory', e.message) : null)));
  }
}

/** Runs `fn` inside error scopes; errors surface at the next `flushErrors`. */
export function scoped<T>(device: GPUDevice, op: string, fn: () => T): T {
  pushScopes(device);
  try {
    return fn();
  } finally {
    popScopes(device, op);
  }
}

export async function flushErrors(): Promise<void> {
  if (pending.length === 0) return;
  const all = await Promise.all(pending.splice(0));
  const err = all.find((e) => e !== null);
  if (err) throw err;
}
