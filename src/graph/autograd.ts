// Reverse-mode autograd over the lazy graph: walks the nodes from `loss` back to the
// requested leaves, asking each node's backward for its input gradients (themselves lazy
// ops), and sums the contributions of a tensor used more than once.
import { type Node, Tensor } from './tensor.ts';
import { add } from './ops/elementwise.ts';
import { fill } from './ops/elementwise.ts';

/** Gradients of scalar-or-seeded `out` w.r.t. `wrt` (lazy; null where `out` does not depend on it). */
export function grad(out: Tensor, wrt: Tensor[], seed?: Tensor): (Tensor | null)[] {
  const g = backwardMap(out, seed);
  return wrt.map((t) => g.get(t) ?? null);
}

/** Sets `.grad` on every leaf with requiresGrad that `loss` depends on (accumulating). */
export function backward(loss: Tensor, seed?: Tensor): void {
  const g = backwardMap(loss, seed);
  for (const [t, gt] of g) if (!t.node && t.requiresGrad) t.grad = t.grad ? add(t.grad, gt) : gt;
}

function backwardMap(out: Tensor, seed?: Tensor): Map<Tensor, Tensor> {
  if (!out.requiresGrad) throw new Error(`backward: ${out} does not require grad`);
  if (!seed && out.size !== 1) throw new Error(`backward: ${out} is not a scalar; pass a seed gradient`);
  // Topological order of nodes that lead to `out` through grad-requiring tensors.
  const order: Node[] = [];
  const seen = new Set<Node>();
  const stack: [Node, number][] = [];
  if (out.node) {
    stack.push([out.node, 0]);
    seen.add(out.node);
  }
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [n, i] = top;
    if (i < n.inputs.length) {
      top[1]++;
      const p = n.inputs[i].node;
      if (p && n.inputs[i].requiresGrad && !seen.has(p)) {
        seen.add(p);
        stack.push([p, 0]);
      }
    } else {
      stack.pop();
      order.push(n);
    }
  }
  const grads = new Map<Tensor, Tensor>();
  grads.set(out, seed ?? fill(out.shape, 1, out.dtype === 'f16' ? 'f16' : 'f32'));
  for (let j = order.length - 1; j >= 0; j--) {
    const n = order[j];
    const gouts = n.outputs.map((o) => grads.get(o) ?? null);
    if (gouts.every((x) => x === null)) continue;
    if (!n.backward) throw new Error(`op ${n.op} has no backward`);
    const gins = n.backward(gouts);
    n.inputs.forEach((inp, k) => {
      const gi = gins[k];
      if (!gi || !inp.requiresGrad) return;
      if (gi.shape.join() !== inp.shape.join())
        throw new Error(`backward of ${n.op}: gradient for input ${k} has shape [${gi.shape}], expected [${inp.shape}]`);
      const prev = grads.get(inp);
      grads.set(inp, prev ? add(prev, gi) : gi);
    });
  }
  return grads;
}

/** A leaf that gradients flow to (a parameter). */
export function param(t: Tensor, name?: string): Tensor {
  t.requiresGrad = true;
  if (name) t.name = name;
  return t.keep();
}
