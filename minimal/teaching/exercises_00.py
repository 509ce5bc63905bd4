"""Graders of notebook 00 (the engine): 0.1 the recursive topological order, 0.2 unbroadcast, 0.3 a tanh op with
its backward, 0.4 the convolution as loops."""
import numpy as np

from ..autodiff import Tensor, ops
from ..autodiff.gradcheck import GradcheckError, gradcheck
from ..kernels.conv_reference import conv2d_forward
from .grading import compare_arrays, fail, grader


# ---------------------------------------------------------------------------------------------------- 0.1
@grader("0.1")
def check_topological_order(topological_order, scalar_class):
    """topological_order(root) -> list of every node root depends on (root included), each after its parents.
    The graph is built with the notebook's Scalar class: e = (a·b + a)·(a·b + a) + b reuses a, b and d."""
    a, b = scalar_class(2.0), scalar_class(3.0)
    d = a * b + a
    root = d * d + b
    order = topological_order(root)
    if not isinstance(order, list):
        fail("0.1", f"return a list of nodes, got {type(order).__name__}")
    names = {id(node): f"{node.op or 'leaf'} (value {node.value:g})" for node in reachable(root)}
    seen = set()
    for node in order:
        if id(node) in seen:
            fail("0.1", f"{names[id(node)]} is listed twice: remember which nodes you visited and skip them "
                        f"(a and d are used twice in this graph)")
        for parent in node._parents:
            if id(parent) not in seen:
                fail("0.1", f"{names[id(node)]} comes before its input {names[id(parent)]}: append a node only "
                            f"after all of its parents (post-order)")
        seen.add(id(node))
    missing = [names[key] for key in names if key not in seen]
    if missing:
        fail("0.1", f"{len(missing)} of {len(names)} nodes are missing, e.g. {missing[0]}: visit every parent")
    return f"all {len(names)} nodes, each once and after its inputs"


def reachable(root):
    """Every node the root depends on (an iterative search, independent of the student's answer)."""
    nodes, stack = {}, [root]
    while stack:
        node = stack.pop()
        if id(node) not in nodes:
            nodes[id(node)] = node
            stack.extend(node._parents)
    return list(nodes.values())


# ---------------------------------------------------------------------------------------------------- 0.2
UNBROADCAST_CASES = [((4, 3), (3,)), ((4, 3), (4, 1)), ((2, 4, 3), (4, 3)), ((2, 4, 3), (1, 3)), ((5,), (1,)),
                     ((4, 3), (4, 3))]


@grader("0.2")
def check_unbroadcast(unbroadcast):
    """unbroadcast(grad, shape) -> grad summed down to `shape`, against minimal.autodiff.ops.unbroadcast."""
    rng = np.random.default_rng(0)
    for grad_shape, shape in UNBROADCAST_CASES:
        grad = rng.standard_normal(grad_shape)
        compare_arrays("0.2", f"unbroadcast(gradient of shape {grad_shape}, {shape})",
                       unbroadcast(grad.copy(), shape), ops.unbroadcast(grad, shape),
                       unbroadcast_slips(grad, shape))
    return f"{len(UNBROADCAST_CASES)} shapes, from leading axes added to size-1 axes stretched"


def unbroadcast_slips(grad, shape):
    """The results of the usual wrong answers for one case."""
    leading = grad.sum(axis=tuple(range(grad.ndim - len(shape))))
    stretched = tuple(axis for axis, size in enumerate(shape) if size == 1 and leading.shape[axis] != 1)
    return [("the size-1 axes that broadcasting stretched are summed away entirely: keep them "
             "(sum with keepdims=True)", leading.sum(axis=stretched)),
            ("only the added leading axes are summed; the size-1 axes stretched by broadcasting must be summed "
             "too", leading),
            ("averaged instead of summed: every broadcast copy of an entry sends its whole gradient back",
             ops.unbroadcast(grad, shape) * np.prod(shape) / grad.size)]


# ---------------------------------------------------------------------------------------------------- 0.3
@grader("0.3")
def check_tanh(tanh):
    """tanh(a) -> Tensor: forward np.tanh, labelled "tanh", backward checked by gradcheck (also when the input
    is used twice, which fails when .grad is assigned instead of accumulated)."""
    x = np.random.default_rng(1).standard_normal((5, 7))
    out = tanh(Tensor(x))
    if not isinstance(out, Tensor):
        fail("0.3", f"tanh should return a Tensor (Tensor.from_op), got {type(out).__name__}")
    compare_arrays("0.3", "the forward tanh(a)", out.data, np.tanh(x))
    if out.op != "tanh":
        fail("0.3", f"the output is labelled {out.op!r}: pass \"tanh\" as Tensor.from_op's label "
                    f"(print_graph shows it)")
    for what, function in [("tanh(a)", tanh), ("tanh(a) + a, where a is used twice", lambda a: tanh(a) + a)]:
        try:
            gradcheck(function, x)
        except GradcheckError as error:
            hint = ("d tanh(a)/da = 1 − tanh(a)², times the incoming gradient g" if function is tanh else
                    "a tensor used twice lost a contribution: add into .grad with accumulate_grad, never assign")
            fail("0.3", f"the backward of {what} is wrong: {error}. Hint: {hint}")
    return "forward, label and backward agree with np.tanh and finite differences"


# ---------------------------------------------------------------------------------------------------- 0.4
@grader("0.4")
def check_conv2d_loops(conv2d_loops):
    """conv2d_loops(x, w) -> the valid, stride-1 convolution (cross-correlation), against conv_reference."""
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, 3, 2))
    expected = conv2d_forward(x, w, (1, 1), (0, 0))
    slips = [("the kernel is flipped (a true convolution); the CNN's convolution is a cross-correlation: "
              "x[n, c, i + p, j + q]·w[f, c, p, q]", conv2d_forward(x, w[:, :, ::-1, ::-1], (1, 1), (0, 0))),
             ("only channel 0 is summed: the sum runs over every input channel c",
              conv2d_forward(x[:, :1], w[:, :1], (1, 1), (0, 0)))]
    got = conv2d_loops(x, w)
    if np.shape(got) != expected.shape:
        fail("0.4", f"the output has shape {np.shape(got)}, expected {expected.shape}: (samples, filters, "
                    f"H − KH + 1, W − KW + 1) for a valid convolution")
    compare_arrays("0.4", "the convolution of a (2, 3, 7, 6) input with (4, 3, 3, 2) filters", got, expected, slips)
    return "equal to minimal/kernels/conv_reference.py on 3 channels and a 3×2 kernel"
