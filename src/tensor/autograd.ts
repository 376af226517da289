// Reverse-mode autograd on a dynamic tape: every differentiable op that sees an input with
// requiresGrad records a GradNode on its output; backward() walks the graph in reverse topological
// order, summing gradients where a tensor feeds several ops (accumulating into leaf `.grad`).
import { DsvError } from '../errors.js';
import { type GradNode, Tensor, fmtShape } from './tensor.js';

let gradEnabled = true;

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Run fn with gradient recording off (inference, optimizer updates). Restores the previous mode. */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

export function needsGrad(...xs: (Tensor | null | undefined)[]): boolean {
  if (!gradEnabled) return false;
  for (const x of xs) if (x && x.requiresGrad) return true;
  return false;
}

/**
 * Attach a node to `out` when any input requires grad. `backward` maps dL/dout to one gradient per
 * input (same order as `inputs`); it runs with recording off.
 */
export function record(out: Tensor, name: string, inputs: readonly (Tensor | null)[], backward: (g: Tensor) => (Tensor | null)[]): Tensor {
  if (!needsGrad(...inputs)) return out;
  out.requiresGrad = true;
  out.gradFn = { name, inputs, backward };
  return out;
}

/** A tensor that shares data with t but is cut from the graph. */
export function detach(t: Tensor): Tensor {
  return t._view(t.shape, t.strides, t.offset);
}

export type AddFn = (a: Tensor, b: Tensor) => Tensor;

let addImpl: AddFn | null = null;
/** ops/ registers elementwise add here (breaks the import cycle autograd ↔ ops). */
export function _setGradAdd(fn: AddFn): void {
  addImpl = fn;
}

/**
 * Backpropagate from `root`. A scalar root needs no seed; otherwise pass `grad` of root's shape.
 * Leaf tensors with requiresGrad receive (accumulate into) `.grad`.
 */
export function backward(root: Tensor, grad?: Tensor): void {
  if (!root.requiresGrad) throw new DsvError('backward: the tensor does not require grad (no parameter with requiresGrad reached it)');
  if (!grad) {
    if (root.numel !== 1) throw new DsvError(`backward: root has shape ${fmtShape(root.shape)}; pass a gradient or reduce to a scalar first`);
    grad = onesLike(root);
  } else if (grad.shape.length !== root.shape.length || grad.shape.some((d, i) => d !== root.shape[i])) {
    throw new DsvError(`backward: gradient shape ${fmtShape(grad.shape)} does not match root shape ${fmtShape(root.shape)}`);
  }
  const add = addImpl!;
  // Topological order by iterative DFS (deep graphs must not overflow the JS stack).
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  const stack: [Tensor, number][] = [[root, 0]];
  seen.add(root);
  while (stack.length) {
    const top = stack[stack.length - 1]!;
    const [t, i] = top;
    const inputs = t.gradFn?.inputs ?? [];
    if (i < inputs.length) {
      top[1]++;
      const inp = inputs[i];
      if (inp && inp.requiresGrad && !seen.has(inp)) {
        seen.add(inp);
        stack.push([inp, 0]);
      }
    } else {
      stack.pop();
      order.push(t);
    }
  }
  const grads = new Map<Tensor, Tensor>();
  grads.set(root, grad);
  noGradRun(() => {
    for (let k = order.length - 1; k >= 0; k--) {
      const t = order[k]!;
      const g = grads.get(t);
      if (!g) continue;
      grads.delete(t);
      const node: GradNode | null = t.gradFn;
      if (!node) {
        t.grad = t.grad ? add(t.grad, g) : g;
        continue;
      }
      const gin = node.backward(g);
      node.inputs.forEach((inp, j) => {
        const gi = gin[j];
        if (!inp || !inp.requiresGrad || !gi) return;
        if (gi.shape.length !== inp.shape.length || gi.shape.some((d, q) => d !== inp.shape[q])) {
          throw new Error(`autograd: ${node.name} returned a gradient of shape ${fmtShape(gi.shape)} for an input of shape ${fmtShape(inp.shape)}`);
        }
        const prev = grads.get(inp);
        grads.set(inp, prev ? add(prev, gi) : gi);
      });
    }
  });
}

function noGradRun(fn: () => void): void {
  noGrad(fn);
}

function onesLike(t: Tensor): Tensor {
  const o = new Tensor(t.backend.alloc(t.dtype, t.numel), t.shape);
  t.backend.fill(o, 1);
  return o;
}
