"""Tensor: a NumPy array that remembers how it was made, so gradients can flow back through it.

Every op (in ops.py) builds its output with `Tensor.from_op(data, parents, backward, op)`. The `backward` closure
receives the gradient of the output and adds (`+=`) the gradients of the inputs into their `.grad`. Adding
instead of assigning is what makes a tensor used twice (x * x, a shared weight) get both contributions. `op` is
a short label ("matmul", "+", "relu"), as micrograd's `_op`: `print_graph(loss)` lists what backward will walk,
and `draw_graph(loss)` draws it (with the optional `graphviz` package).

`loss.backward()` orders the graph with an *iterative* depth-first search (no recursion limit on long graphs,
e.g. an LSNN unrolled over hundreds of time steps), resets the gradients of the intermediate tensors, then calls
every backward closure from the loss down to the leaves. Leaves (parameters, inputs) keep accumulating across
calls until you reset them (the optimiser's `zero_grad()`), as in PyTorch.
"""
import contextlib

import numpy as np

_grad_enabled = True


@contextlib.contextmanager
def no_grad():
    """Inside this block ops build no graph: outputs are plain constants (inference, attacks, evaluation)."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


class Tensor:
    """An n-dimensional array with an optional gradient.

    data          : the np.ndarray itself (float32 for training, float64 for gradient checks)
    grad          : np.ndarray of the same shape after backward(), else None
    requires_grad : True for parameters and for anything computed from them while grad is enabled
    """

    __array_priority__ = 100  # so `ndarray * Tensor` calls Tensor.__rmul__ instead of NumPy broadcasting over it

    def __init__(self, data, requires_grad=False, dtype=None):
        self.data = np.asarray(data, dtype=dtype)
        self.grad = None
        self.requires_grad = requires_grad
        self._parents = ()
        self._backward = None
        self.op = ""  # the label of the op that made this tensor ("" for a leaf: a parameter or an input)

    @classmethod
    def from_op(cls, data, parents, backward, op=""):
        """The output of an op labelled `op`. It joins the graph only if grad is enabled and some parent needs a
        gradient."""
        out = cls(data)
        out.op = op
        tracked = tuple(p for p in parents if p.requires_grad)
        if _grad_enabled and tracked:
            out.requires_grad = True
            out._parents = tracked
            out._backward = backward
        return out

    # ----------------------------------------------------------------------------------------------- backward
    def backward(self, grad=None):
        """Fill `.grad` of every tensor that this one depends on.

        grad: d(final)/d(self); defaults to 1 for a scalar (the usual `loss.backward()`).
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad (built under no_grad, "
                               "or from constants only)")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward() without a gradient needs a scalar, got shape {self.shape}")
            grad = np.ones_like(self.data)
        order = self._topological_order()
        for node in order:
            if node._backward is not None:  # intermediate tensors start from zero on every call
                node.grad = None
        accumulate_grad(self, np.asarray(grad, dtype=self.data.dtype))
        for node in reversed(order):
            if node._backward is not None and node.grad is not None:
                node._backward(node.grad)

    def _topological_order(self):
        """Every tensor this one depends on, each after all of its parents (iterative DFS, post-order)."""
        order, visited = [], set()
        stack = [(self, False)]
        while stack:
            node, parents_done = stack.pop()
            if parents_done:
                order.append(node)
                continue
            if id(node) in visited:
                continue
            visited.add(id(node))
            stack.append((node, True))
            stack.extend((parent, False) for parent in node._parents if id(parent) not in visited)
        return order

    def zero_grad(self):
        self.grad = None

    # ----------------------------------------------------------------------------------------------- array info
    @property
    def shape(self):
        return self.data.shape

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self):
        return self.data.size

    def __len__(self):
        return len(self.data)

    def numpy(self):
        return self.data

    def item(self):
        return self.data.item()

    def __repr__(self):
        flag = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({self.data!r}{flag})"

    # ----------------------------------------------------------------------------------------------- operators
    # Each operator is an op of ops.py. ops.py imports this file (every op builds a Tensor), so this file must not
    # import ops.py at its top: each file would wait for the other to finish loading (an import circle). `_ops()`
    # imports it when an operator is used, long after both files are loaded.
    def __add__(self, other): return _ops().add(self, other)
    def __radd__(self, other): return _ops().add(other, self)
    def __sub__(self, other): return _ops().sub(self, other)
    def __rsub__(self, other): return _ops().sub(other, self)
    def __mul__(self, other): return _ops().mul(self, other)
    def __rmul__(self, other): return _ops().mul(other, self)
    def __truediv__(self, other): return _ops().div(self, other)
    def __rtruediv__(self, other): return _ops().div(other, self)
    def __neg__(self): return _ops().neg(self)
    def __pow__(self, exponent): return _ops().power(self, exponent)
    def __matmul__(self, other): return _ops().matmul(self, other)
    def __rmatmul__(self, other): return _ops().matmul(other, self)
    def __getitem__(self, index): return _ops().getitem(self, index)

    # methods keep NumPy's names (t.sum(), t.max(), t.abs()); the ops behind them are named so that they do not
    # hide Python's sum, max and abs inside ops.py
    def sum(self, axis=None, keepdims=False): return _ops().reduce_sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False): return _ops().mean(self, axis, keepdims)
    def max(self, axis=None, keepdims=False): return _ops().reduce_max(self, axis, keepdims)
    def reshape(self, *shape): return _ops().reshape(self, shape[0] if len(shape) == 1 else shape)

    def transpose(self, *axes):
        """t.transpose(1, 0) or t.transpose((1, 0)), as in NumPy; no axes (or None) reverses them."""
        if len(axes) == 1 and (axes[0] is None or isinstance(axes[0], (tuple, list))):
            axes = axes[0]
        return _ops().transpose(self, tuple(axes) if axes else None)

    def exp(self): return _ops().exp(self)
    def log(self): return _ops().log(self)
    def abs(self): return _ops().absolute(self)
    def relu(self): return _ops().relu(self)

    @property
    def T(self):
        return _ops().transpose(self)


def _ops():
    """The module ops.py, imported at the first use (see "operators" in Tensor)."""
    from . import ops
    return ops


def accumulate_grad(tensor, grad):
    """tensor.grad += grad (the first contribution is copied, so no two tensors ever share a grad buffer)."""
    if not tensor.requires_grad:
        return
    if grad.shape != tensor.shape:
        raise ValueError(f"gradient of shape {grad.shape} for a tensor of shape {tensor.shape}")
    if tensor.grad is None:
        tensor.grad = np.array(grad, dtype=tensor.data.dtype)
    else:
        tensor.grad += grad


# ---------------------------------------------------------------------------------------------------- the graph
def format_graph(tensor, max_lines=100):
    """The graph behind `tensor` as text: one line per tensor, its op label and shape, the inputs of an op
    indented below it. y = x @ W + b, L = (y * y).sum() gives

        [1] reduce_sum ()
          [2] * (4, 2)
            [3] + (4, 2)
              [4] matmul (4, 2)
                [5] leaf (3, 2)
              [6] leaf (2,)
            [3] + (4, 2), shown above

    Only tensors that need a gradient are in the graph (x, a constant, is not). A tensor used twice (here y) is
    listed once; later uses refer back to its number. The text stops after `max_lines` lines.
    """
    lines, numbers = [], {}
    stack = [(tensor, 0)]                                  # (node, depth), depth-first: no recursion limit
    while stack:
        if len(lines) == max_lines:
            lines.append(f"... (cut after {max_lines} lines)")
            break
        node, depth = stack.pop()
        seen = id(node) in numbers
        numbers.setdefault(id(node), len(numbers) + 1)
        line = f"{'  ' * depth}[{numbers[id(node)]}] {_label(node)} {node.shape}"
        lines.append(line + ", shown above" if seen else line)
        if not seen:  # reversed: the stack pops the first input first
            stack.extend((parent, depth + 1) for parent in reversed(node._parents))
    return "\n".join(lines)


def print_graph(tensor, max_lines=100):
    """Print format_graph(tensor): what `tensor.backward()` walks, from the output down to the leaves."""
    print(format_graph(tensor, max_lines))


def draw_graph(tensor):
    """The graph behind `tensor` as a graphviz.Digraph, as micrograd's draw_dot: a box per tensor (op label and
    shape), an arrow from each input to the op that uses it. A notebook shows it; `.render("graph")` writes a
    file. Needs the optional `graphviz` Python package (and Graphviz's `dot` program to render)."""
    try:
        import graphviz
    except ImportError:
        raise ImportError("draw_graph needs the graphviz Python package (pip install graphviz); "
                          "print_graph needs nothing") from None
    dot = graphviz.Digraph(graph_attr={"rankdir": "LR"}, node_attr={"shape": "box"})
    for node in tensor._topological_order():
        dot.node(str(id(node)), f"{_label(node)} {node.shape}")
        for parent in node._parents:
            dot.edge(str(id(parent)), str(id(node)))
    return dot


def _label(node):
    """The op label, "leaf" for a tensor no op made, "op" for an op that set no label."""
    return node.op or ("op" if node._parents else "leaf")
