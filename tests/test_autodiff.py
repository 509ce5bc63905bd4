"""Every differentiable op against central finite differences (float64), with broadcasting and
non-contiguous inputs; plus the engine itself: accumulation, reused nodes, deep graphs, no_grad, op labels and
the graph printer."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import array_shapes, mutually_broadcastable_shapes

from minimal.autodiff import Tensor, draw_graph, format_graph, no_grad, ops, print_graph
from minimal.autodiff.gradcheck import GradcheckError, gradcheck

SETTINGS = settings(max_examples=25, deadline=None)


def values(shape, seed, low=-2.0, high=2.0, layout="contiguous"):
    """Random float64 values of `shape`; layout 'transposed' or 'strided' gives a non-contiguous view."""
    rng = np.random.default_rng(seed)
    if layout == "transposed":
        return rng.uniform(low, high, shape[::-1]).T
    if layout == "strided":
        return rng.uniform(low, high, tuple(2 * s for s in shape))[tuple(slice(None, None, 2) for _ in shape)]
    return rng.uniform(low, high, shape)


def away_from_zero(shape, seed, layout="contiguous"):
    """Values with |x| in [0.3, 2]: kinks of absolute/relu and poles of log/div stay out of the difference step."""
    magnitude = values(shape, seed, 0.3, 2.0, layout)
    signs = np.where(np.random.default_rng(seed + 1).random(magnitude.shape) < 0.5, -1.0, 1.0)
    return magnitude * signs


layouts = st.sampled_from(["contiguous", "transposed", "strided"])
seeds = st.integers(0, 2**16)


# ------------------------------------------------------------------------------------------- binary, broadcasting
@SETTINGS
@given(mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=4), seeds, layouts,
       st.sampled_from(["add", "sub", "mul", "div"]))
def test_binary_ops_with_broadcasting(shapes, seed, layout, name):
    shape_a, shape_b = shapes.input_shapes
    a = values(shape_a, seed, layout=layout)
    b = away_from_zero(shape_b, seed + 7) if name == "div" else values(shape_b, seed + 7)
    gradcheck(getattr(ops, name), a, b)


def test_operators_and_python_scalars_keep_float32():
    x = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    y = (2.0 * x + 1) / 3.0 - x ** 2
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad, 2 / 3 - 2 * np.ones(3))


# ------------------------------------------------------------------------------------------- unary
UNARY = {
    "neg": (ops.neg, values),
    "exp": (ops.exp, values),
    "log": (ops.log, lambda s, k, layout: np.abs(away_from_zero(s, k, layout))),
    "absolute": (ops.absolute, away_from_zero),
    "relu": (ops.relu, away_from_zero),
    "power3": (lambda a: ops.power(a, 3), values),
    "power_half": (lambda a: ops.power(a, 0.5), lambda s, k, layout: np.abs(away_from_zero(s, k, layout))),
    "clip": (lambda a: ops.clip(a, -1.0, 1.0), away_from_zero),
}


@SETTINGS
@given(array_shapes(min_dims=1, max_dims=3, max_side=5), seeds, layouts, st.sampled_from(sorted(UNARY)))
def test_unary_ops(shape, seed, layout, name):
    fn, make = UNARY[name]
    x = make(shape, seed, layout=layout)
    if name == "clip":  # keep entries away from the clip edges ±1 as well
        x = np.where(np.abs(np.abs(x) - 1) < 0.05, x * 0.5, x)
    gradcheck(fn, x)


@pytest.mark.parametrize("exponent", [-2, -1, 0, 1, 2, 3])
def test_power_integer_exponents(exponent):
    gradcheck(lambda a: ops.power(a, exponent), away_from_zero((3, 4), exponent + 10))


@pytest.mark.parametrize("exponent", [-0.5, 0.5, 1.5, 2.5])
def test_power_fractional_exponents(exponent):
    gradcheck(lambda a: ops.power(a, exponent), np.abs(away_from_zero((3, 4), 7)))


def test_power_zero_exponent_has_zero_gradient_at_zero():
    """x⁰ = 1 everywhere, so d/dx = 0, also at x = 0 where 0·x⁻¹ would be NaN. (gradcheck alone would not
    catch a NaN: a NaN error compares False with the tolerance.)"""
    x = Tensor(np.array([-1.5, 0.0, 2.0]), requires_grad=True)
    y = ops.power(x, 0)
    np.testing.assert_array_equal(y.data, [1.0, 1.0, 1.0])
    y.backward(np.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(x.grad, [0.0, 0.0, 0.0])
    gradcheck(lambda a: ops.power(a, 0), np.array([-1.0, 0.0, 0.5]))


# ------------------------------------------------------------------------------------------- matmul
@SETTINGS
@given(st.integers(1, 4), st.integers(1, 5), st.integers(1, 4), st.sampled_from([(), (3,), (2, 1)]), seeds, layouts)
def test_matmul_batched_and_broadcast(m, k, n, batch, seed, layout):
    a = values(batch + (m, k), seed, layout=layout)
    b = values((k, n), seed + 1, layout=layout)
    gradcheck(ops.matmul, a, b)
    gradcheck(ops.matmul, values((m, k), seed + 2), values(batch + (k, n), seed + 3))


def test_matmul_shape_error_names_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        ops.matmul(Tensor(np.ones((2, 3))), Tensor(np.ones((4, 5))))


# ------------------------------------------------------------------------------------------- reductions
axis_choices = st.sampled_from([None, 0, -1, (0, 1)])


@SETTINGS
@given(array_shapes(min_dims=2, max_dims=3, max_side=4), axis_choices, st.booleans(), seeds, layouts,
       st.sampled_from(["reduce_sum", "mean", "reduce_max"]))
def test_reductions(shape, axis, keepdims, seed, layout, name):
    x = values(shape, seed, layout=layout)
    gradcheck(lambda a: getattr(ops, name)(a, axis=axis, keepdims=keepdims), x)


def test_reduce_max_shares_gradient_between_ties():
    x = Tensor(np.array([[1.0, 3.0, 3.0]]), requires_grad=True)
    ops.reduce_max(x, axis=1).sum().backward()
    np.testing.assert_allclose(x.grad, [[0, 0.5, 0.5]])


# ------------------------------------------------------------------------------------------- structure
@SETTINGS
@given(seeds, layouts)
def test_reshape_transpose_flatten(seed, layout):
    x = values((2, 3, 4), seed, layout=layout)
    gradcheck(lambda a: ops.reshape(a, (4, 6)), x)
    gradcheck(lambda a: ops.transpose(a, (2, 0, 1)), x)
    gradcheck(lambda a: ops.transpose(a), x)
    gradcheck(ops.flatten, x)


@pytest.mark.parametrize("axes", [(2, 0, 1), (0, 2, 1), (-1, 0, 1), (1, -1, 0), (-3, -1, -2), (2, -2, 0)])
def test_transpose_with_positive_and_negative_axes(axes):
    x = values((2, 3, 4), 1)
    np.testing.assert_array_equal(ops.transpose(Tensor(x), axes).data, np.transpose(x, axes))
    gradcheck(lambda a: ops.transpose(a, axes), x)
    gradcheck(lambda a: ops.transpose(a, axes), values((2, 3, 4), 1, layout="strided"))


@pytest.mark.parametrize("args", [(), (None,), ((1, 0, 2),), ([2, 0, 1],), (1, 0, 2), (-1, 0, 1), ((-1, -3, -2),)])
def test_tensor_transpose_takes_axes_like_numpy(args):
    """t.transpose(1, 0, 2), t.transpose((1, 0, 2)) and t.transpose() mean what they mean for an ndarray."""
    x = values((2, 3, 4), 2)
    np.testing.assert_array_equal(Tensor(x).transpose(*args).data, x.transpose(*args))
    gradcheck(lambda a: a.transpose(*args), x)


@pytest.mark.parametrize("index", [
    (slice(1, 3),), (0,), (slice(None), 2), (np.array([0, 2, 2, 1]),), (Ellipsis, slice(None, None, -1)),
    (np.array([0, 1, 1]), np.array([2, 0, 0])),
])
def test_getitem_including_repeated_indices(index):
    gradcheck(lambda a: a[index], values((3, 4), 3))


def test_concatenate():
    gradcheck(lambda a, b: ops.concatenate([a, b], axis=1), values((2, 3), 0), values((2, 1), 1))
    gradcheck(lambda a, b: ops.concatenate([a, b, a], axis=0), values((1, 3), 0), values((2, 3), 1))


def test_where():
    condition = np.array([[True, False, True], [False, False, True]])
    gradcheck(lambda a, b: ops.where(condition, a, b), values((2, 3), 0), values((1, 3), 1))


# ------------------------------------------------------------------------------------------- softmax and losses
@SETTINGS
@given(st.integers(1, 4), st.integers(2, 6), seeds)
def test_softmax_family_and_losses(batch, classes, seed):
    logits = values((batch, classes), seed, -4, 4)
    labels = np.random.default_rng(seed).integers(0, classes, batch)
    gradcheck(ops.log_softmax, logits)
    gradcheck(ops.softmax, logits)
    gradcheck(lambda a: ops.log_softmax(a, axis=0), logits)
    gradcheck(lambda a: ops.cross_entropy(a, labels), logits)
    other = values((batch, classes), seed + 1, -4, 4)
    gradcheck(lambda a, b: ops.kl_divergence(ops.softmax(a), ops.softmax(b)), logits, other)


def test_cross_entropy_value():
    logits = np.array([[2.0, 0.5, -1.0], [0.0, 0.0, 3.0]])
    labels = np.array([0, 1])
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    expected = -(log_probs[0, 0] + log_probs[1, 1]) / 2
    assert ops.cross_entropy(Tensor(logits), labels).item() == pytest.approx(expected)


def test_kl_divergence_matches_eq2_and_clamps_q():
    p = np.array([[0.7, 0.2, 0.1]])
    q = np.array([[0.5, 0.5, 0.0]])  # q = 0 is clamped at 1e-6
    expected = np.sum(p * (np.log(p) - np.log(np.maximum(q, 1e-6))))
    assert ops.kl_divergence(Tensor(p), Tensor(q)).item() == pytest.approx(expected)
    assert ops.kl_divergence(Tensor(p), Tensor(p)).item() == pytest.approx(0.0, abs=1e-12)


def test_dropout_masks_and_rescales():
    rng = np.random.default_rng(0)
    x = Tensor(np.ones((200, 50)), requires_grad=True)
    y = ops.dropout(x, 0.3, rng)
    kept = y.data != 0
    assert abs(kept.mean() - 0.7) < 0.02
    np.testing.assert_allclose(y.data[kept], 1 / 0.7)
    y.sum().backward()
    np.testing.assert_allclose(x.grad, y.data)  # gradient = the same mask and scale
    assert ops.dropout(x, 0.3, rng, training=False) is x
    # with the mask fixed (same seed) dropout is linear, so finite differences apply
    gradcheck(lambda a: ops.dropout(a, 0.5, np.random.default_rng(1)), values((3, 4), 0))


# ------------------------------------------------------------------------------------------- conv and pooling
@settings(max_examples=20, deadline=None)
@given(st.integers(1, 2), st.integers(1, 3), st.integers(1, 3), st.integers(3, 6), st.integers(3, 7),
       st.integers(1, 3), st.integers(1, 3), st.integers(1, 2), st.integers(0, 1), seeds, st.booleans())
def test_conv2d(batch, c_in, c_out, height, width, kh, kw, stride, padding, seed, with_bias):
    x = values((batch, c_in, height, width), seed, layout="transposed" if seed % 2 else "contiguous")
    w = values((c_out, c_in, kh, kw), seed + 1)
    if with_bias:
        gradcheck(lambda a, k, b: ops.conv2d(a, k, b, stride, padding), x, w, values((c_out,), seed + 2))
    else:
        gradcheck(lambda a, k: ops.conv2d(a, k, stride=stride, padding=padding), x, w)


def distinct_values(shape, seed):
    """A random permutation of well-separated values: no ties, so max-pooling is differentiable there."""
    rng = np.random.default_rng(seed)
    return rng.permutation(np.arange(np.prod(shape), dtype=np.float64)).reshape(shape) * 0.1


@pytest.mark.parametrize("shape, kernel, stride, padding, ceil_mode", [
    ((2, 3, 5, 5), 2, None, 0, True),     # 5 -> 3 with the partial last window (the paper's 25 -> 13)
    ((2, 3, 5, 5), 2, None, 0, False),    # 5 -> 2
    ((1, 1, 4, 7), (2, 3), (1, 2), 0, False),
    ((1, 2, 6, 5), 3, 2, 1, False),
])
def test_max_pool2d(shape, kernel, stride, padding, ceil_mode):
    gradcheck(lambda a: ops.max_pool2d(a, kernel, stride, padding, ceil_mode), distinct_values(shape, 0))


# ------------------------------------------------------------------------------------------- batch norm
BATCH_NORM_SHAPES = [(2, 3, 5, 7), (1, 2, 3, 1), (3, 1, 2, 2), (5, 4, 1, 1)]


@pytest.mark.parametrize("shape", BATCH_NORM_SHAPES)
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_batch_norm_with_batch_statistics(shape, layout):
    channels = shape[1]
    x = values(shape, 0, layout=layout)
    gradcheck(ops.batch_norm, x, values((channels,), 1), values((channels,), 2))


@pytest.mark.parametrize("shape", BATCH_NORM_SHAPES)
def test_batch_norm_with_given_statistics(shape):
    channels = shape[1]
    mean, var = values((channels,), 3), values((channels,), 4, 0.5, 2.0)
    gradcheck(lambda a, w, b: ops.batch_norm(a, w, b, mean, var), values(shape, 0), values((channels,), 1),
              values((channels,), 2))


def test_batch_norm_values():
    x = values((4, 3, 5, 6), 0)
    gamma, beta = np.array([1.0, 2.0, 0.5]), np.array([0.0, -1.0, 3.0])
    out = ops.batch_norm(Tensor(x), gamma, beta, eps=0).data
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), beta, atol=1e-12)  # per channel: mean β, std γ
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), gamma, rtol=1e-12)
    mean, var = np.array([0.1, -0.2, 0.3]), np.array([1.0, 4.0, 0.25])
    given = ops.batch_norm(Tensor(x), gamma, beta, mean, var, eps=0).data
    expected = gamma[:, None, None] * (x - mean[:, None, None]) / np.sqrt(var[:, None, None]) + beta[:, None, None]
    np.testing.assert_allclose(given, expected, rtol=1e-12)
    np.testing.assert_allclose(ops.batch_norm(Tensor(x[:1]), gamma, beta, mean, var, eps=0).data, expected[:1],
                               rtol=1e-12)  # with given statistics a sample does not depend on its batch


def test_batch_norm_keeps_float32():
    x = Tensor(np.ones((2, 3, 2, 2), dtype=np.float32), requires_grad=True)
    gamma = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    out = ops.batch_norm(x, gamma, np.zeros(3, np.float32))
    assert out.dtype == np.float32
    out.sum().backward()
    assert x.grad.dtype == np.float32 and gamma.grad.dtype == np.float32


# ------------------------------------------------------------------------------------------- the engine
def test_reused_node_accumulates():
    x = Tensor(np.array([3.0]), requires_grad=True)
    y = x * x + x  # x used three times
    y.backward(np.ones(1))
    np.testing.assert_allclose(x.grad, [7.0])


def test_leaf_grads_accumulate_and_intermediate_grads_reset():
    x = Tensor(np.array([2.0]), requires_grad=True)
    hidden = x * 3
    out = (hidden * hidden).sum()
    out.backward()
    out.backward()
    np.testing.assert_allclose(x.grad, [2 * 36.0])  # the leaf adds up over two calls
    np.testing.assert_allclose(hidden.grad, [12.0])  # the intermediate is recomputed, not doubled


def test_deep_graph_has_no_recursion_limit():
    x = Tensor(np.array(1.0), requires_grad=True)
    y = x
    for _ in range(20000):
        y = y * 1.0001
    y.backward()
    assert x.grad == pytest.approx(1.0001 ** 20000)


def test_no_grad_builds_no_graph():
    x = Tensor(np.ones(3), requires_grad=True)
    with no_grad():
        y = x * 2
    assert not y.requires_grad and y._parents == ()


def test_backward_needs_scalar_or_gradient():
    x = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match="scalar"):
        (x * 2).backward()


def test_gradcheck_detects_a_wrong_backward():
    def wrong_square(a):
        def backward(g):
            from minimal.autodiff.tensor import accumulate_grad
            accumulate_grad(a, g * a.data)  # should be 2·a
        return Tensor.from_op(a.data ** 2, (a,), backward)

    with pytest.raises(GradcheckError, match=r"input 0 \(shape \(3,\)\) is wrong at \(\d\,\)"):
        gradcheck(wrong_square, values((3,), 0))


def test_gradcheck_detects_a_nan_gradient():
    """A NaN compared with the tolerance is False: without care a NaN gradient passed (it hid pow(x, 0)'s)."""
    def square_with_nan_backward(a):
        def backward(g):
            from minimal.autodiff.tensor import accumulate_grad
            accumulate_grad(a, np.where(a.data > 0, 2 * a.data * g, np.nan))
        return Tensor.from_op(a.data ** 2, (a,), backward)

    with pytest.raises(GradcheckError, match="analytic nan"):
        gradcheck(square_with_nan_backward, np.array([1.0, -2.0, 3.0]))


# ------------------------------------------------------------------------------------------- spiking
def test_spike_forward_and_eq4_surrogate():
    v = Tensor(np.array([0.0, 0.5, 0.9, 1.0, 1.2, 2.5, -1.0]), requires_grad=True)
    threshold = Tensor(np.array(1.0), requires_grad=True)
    z = ops.spike(v, threshold, dampening=0.3)
    np.testing.assert_array_equal(z.data, [0, 0, 0, 0, 1, 1, 0])  # strictly above the threshold
    z.backward(np.ones(7))
    expected = 0.3 * np.maximum(1 - np.abs((v.data - 1.0) / 1.0), 0)  # Eq. 4
    np.testing.assert_allclose(v.grad, expected)
    np.testing.assert_allclose(threshold.grad, -expected.sum())


def test_spike_surrogate_scales_with_the_threshold():
    v = Tensor(np.array([0.015]), requires_grad=True)
    ops.spike(v, 0.01, dampening=0.3).backward(np.ones(1))
    np.testing.assert_allclose(v.grad, 0.3 * max(1 - abs((0.015 - 0.01) / 0.01), 0))


# ------------------------------------------------------------------------------------------- labels, graph printer
def small_graph():
    """y = x @ W + b, L = Σ y·y (the example of format_graph's docstring): y is used twice, x is a constant."""
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((4, 3)))
    w = Tensor(rng.standard_normal((3, 2)), requires_grad=True)
    b = Tensor(rng.standard_normal(2), requires_grad=True)
    y = x @ w + b
    return (y * y).sum(), y


def test_every_op_labels_its_output():
    a = Tensor(values((2, 3), 0), requires_grad=True)
    labelled = {
        "+": a + 1, "-": a - 1, "*": a * 2, "/": a / 2, "neg": -a, "**3": a ** 3, "matmul": a @ a.T,
        "exp": a.exp(), "log": ops.log(a * a), "absolute": a.abs(), "relu": a.relu(), "clip": ops.clip(a, 0, 1),
        "where": ops.where(a.data > 0, a, 0.0), "reduce_sum": a.sum(), "mean": a.mean(), "reduce_max": a.max(),
        "reshape": a.reshape(3, 2), "transpose": a.T, "getitem": a[0], "concatenate": ops.concatenate([a, a]),
        "log_softmax": ops.log_softmax(a), "softmax": ops.softmax(a),
        "cross_entropy": ops.cross_entropy(a, np.array([0, 2])), "spike": ops.spike(a, 1.0),
        "conv2d": ops.conv2d(a.reshape(1, 1, 2, 3), np.ones((1, 1, 2, 2))),
        "max_pool2d": ops.max_pool2d(a.reshape(1, 1, 2, 3), 2, ceil_mode=True),
        "batch_norm": ops.batch_norm(a.reshape(1, 2, 3, 1), np.ones(2), np.zeros(2)),
    }
    assert {label: t.op for label, t in labelled.items()} == {label: label for label in labelled}
    assert a.op == "" and Tensor(np.ones(2)).op == ""  # leaves have no op


def test_format_graph_shows_ops_shapes_and_reused_nodes():
    loss, _ = small_graph()
    assert format_graph(loss).splitlines() == [
        "[1] reduce_sum ()",
        "  [2] * (4, 2)",
        "    [3] + (4, 2)",
        "      [4] matmul (4, 2)",
        "        [5] leaf (3, 2)",
        "      [6] leaf (2,)",
        "    [3] + (4, 2), shown above",
    ]


def test_print_graph_prints_and_cuts_long_graphs(capsys):
    loss, _ = small_graph()
    print_graph(loss)
    assert capsys.readouterr().out == format_graph(loss) + "\n"
    x = Tensor(np.array(1.0), requires_grad=True)
    y = x
    for _ in range(5000):   # deep: the printer, like backward, does not recurse
        y = y * 1.0001
    lines = format_graph(y, max_lines=10).splitlines()
    assert len(lines) == 11 and lines[-1] == "... (cut after 10 lines)"


def test_draw_graph_has_a_node_per_tensor_and_an_edge_per_input():
    pytest.importorskip("graphviz")
    loss, _ = small_graph()
    source = draw_graph(loss).source
    assert source.count("->") == 6   # W→matmul, matmul→+, b→+, +→* twice (y·y), *→reduce_sum
    for label in ("reduce_sum ()", "* (4, 2)", "matmul (4, 2)", "leaf (3, 2)", "leaf (2,)"):
        assert label in source
