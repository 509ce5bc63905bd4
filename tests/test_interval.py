"""Interval arithmetic (minimal/interval.py) and the interval passes of the CNN and the LSNN.

Soundness is the property everything rests on: for random operands, every value computed from points inside the
input intervals (their corners included) lies inside the output interval. Then: the sign-split matrix product
equals the four-corner reference (exactly so for weight boxes), the numba kernels equal their NumPy references,
bounds shrink as ζ shrinks, and at ζ = 0 the interval pass is the point pass, bit for bit.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minimal import interval
from minimal.autodiff import Tensor, no_grad, ops
from minimal.interval import Interval, bilinear_bounds
from minimal.kernels import interval as interval_kernels
from minimal.nn.cnn import CNN
from minimal.nn.lsnn import LSNN

SEEDS = st.integers(0, 2**32 - 1)
FEW = settings(max_examples=25, deadline=None)
TOLERANCE = 1e-9  # float64 rounding: bounds hold up to it (relative)


# ---------------------------------------------------------------------------------------------------- helpers
def random_interval(rng, shape):
    """An interval with every kind of entry: points, zeros, wide and narrow, straddling 0 or not."""
    lo = rng.standard_normal(shape)
    width = np.abs(rng.standard_normal(shape)) * rng.choice([0.0, 0.01, 1.0], size=shape)
    lo[rng.random(shape) < 0.2] = 0.0
    return Interval(lo, lo + width)


def random_spikes(rng, shape, may=None):
    """Spike intervals [0,0], [0,1] and [1,1], with a fraction `may` (default: random) that may spike."""
    may = rng.random() if may is None else may
    hi = (rng.random(shape) < may).astype(float)
    return Interval(hi * (rng.random(shape) < 0.3), hi)


def points_inside(box, rng, count=6):
    """The two extreme corners, random corners (each entry at lo or hi) and random points inside the box."""
    yield box.lo
    yield box.hi
    for _ in range(count):
        yield np.where(rng.random(box.shape) < 0.5, box.lo, box.hi)
        yield box.lo + rng.random(box.shape) * (box.hi - box.lo)


def assert_inside(box, value, what):
    slack = TOLERANCE * (1 + np.abs(value))
    assert np.all(box.lo - slack <= value) and np.all(value <= box.hi + slack), f"{what} escapes its bounds"


def four_corner_matmul(x, w):
    """The reference bound of x @ W: every term x_k·w_k bounded by its four corner products, then summed."""
    corners = [a[..., :, :, None] * b[..., None, :, :] for a in (x.lo, x.hi) for b in (w.lo, w.hi)]  # (…, N, K, M)
    return Interval(np.minimum.reduce(corners).sum(axis=-2), np.maximum.reduce(corners).sum(axis=-2))


def four_corner_conv2d(x, w):
    """The reference bound of a stride-1 valid convolution, from the four corners of every term."""
    kh, kw = w.shape[2:]
    patches = [np.lib.stride_tricks.sliding_window_view(a, (kh, kw), axis=(2, 3)) for a in (x.lo, x.hi)]
    corners = [np.einsum("nchwij,fcij->nfhwcij", p, f) for p in patches for f in (w.lo, w.hi)]
    return Interval(np.minimum.reduce(corners).sum(axis=(4, 5, 6)), np.maximum.reduce(corners).sum(axis=(4, 5, 6)))


def weight_box(rng, shape, zeta):
    return Interval.weight_box(rng.standard_normal(shape), zeta)


# ---------------------------------------------------------------------------------------------------- construction
def test_construction_checks_order_shape_and_nan():
    Interval(np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="lo <= hi everywhere, but 1 of 3"):
        Interval(np.array([0.0, 2.0, 0.0]), np.ones(3))
    with pytest.raises(ValueError, match=r"same shape, got \(3,\) and \(4,\)"):
        Interval(np.zeros(3), np.ones(4))
    with pytest.raises(ValueError, match="NaN"):
        Interval(np.zeros(2), np.array([1.0, np.nan]))


def test_weight_box_is_the_relative_box():
    theta = np.array([-2.0, 0.0, 0.5], dtype=np.float32)
    box = Interval.weight_box(theta, 0.1)
    np.testing.assert_allclose(box.lo, [-2.2, 0.0, 0.45], rtol=1e-6)
    np.testing.assert_allclose(box.hi, [-1.8, 0.0, 0.55], rtol=1e-6)
    assert box.dtype == np.float32
    assert np.array_equal(Interval.weight_box(theta, 0).width, np.zeros(3))
    with pytest.raises(ValueError, match="zeta must be >= 0"):
        Interval.weight_box(theta, -0.1)


def test_shape_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"shapes \(3, 4\) and \(5, 2\) do not match"):
        interval.matmul(Interval.point(np.zeros((3, 4))), Interval.point(np.ones((5, 2))))
    with pytest.raises(ValueError, match=r"\(3,\).*\(4,\)"):
        interval.add(Interval.point(np.zeros(3)), np.zeros(4))


# ---------------------------------------------------------------------------------------------------- soundness
@FEW
@given(seed=SEEDS, rows=st.integers(1, 4), cols=st.integers(1, 5))
def test_elementwise_operations_are_sound(seed, rows, cols):
    rng = np.random.default_rng(seed)
    a, b = random_interval(rng, (rows, cols)), random_interval(rng, (rows, cols))
    point = rng.standard_normal(cols)
    results = {"add": interval.add(a, b), "sub": interval.sub(a, b), "mul": interval.mul(a, b),
               "mul point": interval.mul(a, point), "mul number": interval.mul(-1.5, a), "neg": interval.neg(a),
               "relu": interval.relu(a), "sum": interval.sum(a, axis=1), "mean": interval.mean(a, axis=0),
               "spike": interval.spike(a, b)}
    for x, y in zip(points_inside(a, rng), points_inside(b, rng)):
        values = {"add": x + y, "sub": x - y, "mul": x * y, "mul point": x * point, "mul number": -1.5 * x,
                  "neg": -x, "relu": np.maximum(x, 0), "sum": x.sum(axis=1), "mean": x.mean(axis=0),
                  "spike": (x > y).astype(float)}
        for name, value in values.items():
            assert_inside(results[name], value, name)


def test_spike_is_never_sometimes_or_always():
    v = Interval(np.array([0.0, 0.0, 2.0]), np.array([0.5, 2.0, 3.0]))
    z = interval.spike(v, Interval(np.ones(3), np.full(3, 1.5)))
    assert np.array_equal(z.lo, [0, 0, 1]) and np.array_equal(z.hi, [0, 1, 1])  # [0,0], [0,1], [1,1]


def test_refractory_counter_update_takes_the_hull_where_the_spike_is_uncertain():
    """r_{t+1} = where(z, refractory, max(r − 1, 0)), for z = [0,0], [1,1], [0,1] and r = [1, 2]."""
    z = Interval(np.array([0.0, 1.0, 0.0]), np.array([0.0, 1.0, 1.0]))
    r = Interval(np.full(3, 1.0), np.full(3, 2.0))
    r_next = interval.where(z, 2, interval.relu(r - 1))
    assert np.array_equal(r_next.lo, [0, 2, 0]) and np.array_equal(r_next.hi, [1, 2, 2])
    allowed = interval.equal(Interval(np.array([0.0, 0.0, 1.0]), np.array([0.0, 2.0, 2.0])), 0)
    assert np.array_equal(allowed.lo, [1, 0, 0]) and np.array_equal(allowed.hi, [1, 1, 0])


@FEW
@given(seed=SEEDS, n=st.integers(1, 4), k=st.integers(1, 6), m=st.integers(1, 5), spikes=st.booleans())
def test_matmul_is_sound_and_the_sign_split_is_the_four_corner_bound(seed, n, k, m, spikes):
    """For any x, and for spike intervals (the kernel's row selection, with few or many x̄ = 1)."""
    rng = np.random.default_rng(seed)
    x = random_spikes(rng, (n, k)) if spikes else random_interval(rng, (n, k))
    w = weight_box(rng, (k, m), rng.choice([1e-3, 0.1, 1.0]))     # a weight box: w̲, w̄ have the sign of Θ
    reference = four_corner_matmul(x, w)
    for name, product in {"numba kernel": interval.matmul(x, w),
                          "NumPy sign split": bilinear_bounds(x, w, np.matmul)}.items():
        np.testing.assert_allclose(product.lo, reference.lo, rtol=1e-10, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(product.hi, reference.hi, rtol=1e-10, atol=1e-12, err_msg=name)
    for x_point, w_point in zip(points_inside(x, rng), points_inside(w, rng)):
        assert_inside(reference, x_point @ w_point, "x @ W")


@FEW
@given(seed=SEEDS, n=st.integers(1, 4), k=st.integers(1, 6), m=st.integers(1, 5))
def test_sign_split_contains_the_four_corner_bound_when_both_straddle_zero(seed, n, k, m):
    rng = np.random.default_rng(seed)
    x, w = random_interval(rng, (n, k)), random_interval(rng, (k, m))
    reference = four_corner_matmul(x, w)
    for product in (interval.matmul(x, w), bilinear_bounds(x, w, np.matmul)):
        assert np.all(product.lo <= reference.lo + 1e-12) and np.all(reference.hi <= product.hi + 1e-12)


def kernel_test_inputs(rng, n, k):
    """x for the matrix product kernel: sparse and dense spikes (few or many x̄ = 1: the two ways of selecting rows
    of W), spike rows mixed with other rows, any intervals, and points of either sign (x ≥ 0, x ≤ 0 terms)."""
    mixed = random_spikes(rng, (n, k), may=0.8)
    mixed.lo[::2], mixed.hi[::2] = (rng.random((k,)), 1 + rng.random((k,)))
    point = rng.standard_normal((n, k))
    return {"sparse spikes": random_spikes(rng, (n, k), may=0.2), "dense spikes": random_spikes(rng, (n, k), may=0.9),
            "mixed rows": mixed, "intervals": random_interval(rng, (n, k)), "point": Interval.point(point),
            "negative": Interval(-1 - np.abs(point), -np.abs(point))}


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 7, 5), (5, 2, 9), (64, 33, 17)])
def test_numba_kernel_equals_the_numpy_sign_split(shape):
    n, k, m = shape
    rng = np.random.default_rng(n + k + m)
    w = random_interval(rng, (k, m))
    for name, x in kernel_test_inputs(rng, n, k).items():
        lower, upper = interval_kernels.matmul_bounds(x.lo, x.hi, w.lo, w.hi)
        reference = bilinear_bounds(x, w, np.matmul)
        np.testing.assert_allclose(lower, reference.lo, rtol=1e-12, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(upper, reference.hi, rtol=1e-12, atol=1e-12, err_msg=name)


def test_rows_of_spikes_are_summed_the_cheaper_way():
    """FEW_ONES visits the rows with x̄ = 1; MANY_ONES those with x̲ = 1 and those with x̄ = 0 (kernels/interval.py)."""
    k = interval_kernels
    sparse, dense = np.array([0.0, 0, 0, 1]), np.array([0.0, 1, 1, 1])
    assert k._row_kind(np.zeros(4), sparse) == k.FEW_ONES
    assert k._row_kind(np.zeros(4), dense) == k.MANY_ONES
    assert k._row_kind(dense, dense) == k.FEW_ONES            # sure spikes are visited by MANY_ONES, too
    assert k._row_kind(np.zeros(4), np.array([0.0, 0, 0.5, 1])) == k.GENERAL


def test_numba_kernel_in_float32_and_on_a_strided_x():
    """The LSNN passes x_t = x[:, t], a strided view, in float32."""
    rng = np.random.default_rng(0)
    x = random_spikes(rng, (6, 4, 40), may=0.7)
    w = Interval.weight_box(rng.standard_normal((40, 9)), 0.01)
    x_lo, x_hi, w_lo, w_hi = (a.astype(np.float32) for a in (x.lo[:, 1], x.hi[:, 1], w.lo, w.hi))
    lower, upper = interval_kernels.matmul_bounds(x_lo, x_hi, w_lo, w_hi)
    reference = bilinear_bounds(Interval(x_lo, x_hi), Interval(w_lo, w_hi), np.matmul)
    assert lower.dtype == np.float32
    np.testing.assert_allclose(lower, reference.lo, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(upper, reference.hi, rtol=1e-5, atol=1e-5)


# -------------------------------------------------------------------------------------------------- elementwise kernels
# Plain NumPy references of the kernels in kernels/interval.py.
def numpy_mul(a_lo, a_hi, b_lo, b_hi):
    corners = [a_lo * b_lo, a_lo * b_hi, a_hi * b_lo, a_hi * b_hi]
    return np.minimum.reduce(corners), np.maximum.reduce(corners)


def numpy_spike(v_lo, v_hi, b_lo, b_hi):
    return (v_lo > b_hi).astype(v_lo.dtype), (v_hi > b_lo).astype(v_lo.dtype)


def numpy_equal(lo, hi, value):
    return ((lo == value) & (hi == value)).astype(lo.dtype), ((lo <= value) & (value <= hi)).astype(lo.dtype)


def numpy_where(c_lo, c_hi, a_lo, a_hi, b_lo, b_hi):
    surely, possibly = c_lo > 0, c_hi > 0
    return (np.where(surely, a_lo, np.where(possibly, np.minimum(a_lo, b_lo), b_lo)),
            np.where(surely, a_hi, np.where(possibly, np.maximum(a_hi, b_hi), b_hi)))


def kernel_operands(name, rng, shape):
    """Bounds for one elementwise kernel: intervals of every kind, refractory counters 0, 1, 2, spike conditions."""
    a, b = random_interval(rng, shape), random_interval(rng, shape)
    if name == "equal":
        counter = np.sort(rng.integers(0, 3, (2,) + shape), axis=0)
        return [counter[0], counter[1], np.ones(shape)]
    if name == "where":
        spikes = random_spikes(rng, shape)
        return [spikes.lo, spikes.hi, a.lo, a.hi, b.lo, b.hi]
    return [a.lo, a.hi] if name == "parts" else [a.lo, a.hi, b.lo, b.hi]


k = interval_kernels
KERNELS = {  # name: (the kernels' bounds, the NumPy reference's)
    "mul": (lambda *a: (k.mul_lower(*a), k.mul_upper(*a)), numpy_mul),
    "spike": (lambda v_lo, v_hi, b_lo, b_hi: (k.exceeds(v_lo, b_hi), k.exceeds(v_hi, b_lo)), numpy_spike),
    "equal": (lambda lo, hi, value: (k.equal_lower(lo, hi, value), k.equal_upper(lo, hi, value)), numpy_equal),
    "where": (lambda c_lo, c_hi, a_lo, a_hi, b_lo, b_hi: (k.where_lower(c_lo, c_hi, a_lo, b_lo),
                                                          k.where_upper(c_lo, c_hi, a_hi, b_hi)), numpy_where),
    "parts": (lambda a, b: (k.negative_part(a), k.positive_part(b)), lambda a, b: (np.minimum(a, 0), np.maximum(b, 0))),
}


@pytest.mark.parametrize("name", list(KERNELS))
@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5), (2, 3, 17)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_elementwise_kernels_equal_their_numpy_references(name, shape, dtype):
    kernel, reference = KERNELS[name]
    rng = np.random.default_rng(len(shape) * 100 + shape[-1])
    arrays = [a.astype(dtype) for a in kernel_operands(name, rng, shape)]
    for layout, operands in {"contiguous": arrays, "strided": [a.T for a in arrays]}.items():
        for result, expected in zip(kernel(*operands), reference(*operands)):
            assert result.dtype == dtype and result.shape == expected.shape, layout
            np.testing.assert_array_equal(result, expected, err_msg=f"{name}, {layout}")


def test_interval_ops_broadcast_numbers_and_rows():
    """The kernels are ufuncs, which broadcast; interval.where and interval.equal fill numbers out first."""
    rng = np.random.default_rng(0)
    spikes, counter = random_spikes(rng, (4, 6)), Interval(np.zeros((4, 6)), np.full((4, 6), 2.0))
    row = random_interval(rng, (6,))
    r_next = interval.where(spikes, 2, counter)
    expected = numpy_where(spikes.lo, spikes.hi, 2.0, 2.0, counter.lo, counter.hi)
    np.testing.assert_array_equal(r_next.lo, expected[0])
    np.testing.assert_array_equal(r_next.hi, expected[1])
    product, expected = interval.mul(spikes, row), numpy_mul(spikes.lo, spikes.hi, row.lo, row.hi)
    np.testing.assert_array_equal(product.lo, expected[0])
    np.testing.assert_array_equal(product.hi, expected[1])
    allowed = interval.equal(counter, 0)
    assert np.all(allowed.lo == 0) and np.all(allowed.hi == 1)
    z = interval.spike(Interval.point(np.ones((2, 3), dtype=np.float32)), 0.5)
    assert z.dtype == np.float32 and np.all(z.lo == 1)


def test_batched_matmul_goes_through_numpy_and_matches_the_reference():
    rng = np.random.default_rng(0)
    x, w = random_interval(rng, (2, 3, 4)), weight_box(rng, (4, 5), 0.1)
    product, reference = interval.matmul(x, w), four_corner_matmul(x, w)
    np.testing.assert_allclose(product.lo, reference.lo, rtol=1e-10)
    np.testing.assert_allclose(product.hi, reference.hi, rtol=1e-10)


@FEW
@given(seed=SEEDS, channels=st.integers(1, 3), filters=st.integers(1, 3), side=st.integers(3, 6))
def test_conv2d_and_max_pool_are_sound_and_conv_is_the_four_corner_bound(seed, channels, filters, side):
    rng = np.random.default_rng(seed)
    x = random_interval(rng, (2, channels, side, side))
    w = weight_box(rng, (filters, channels, 2, 2), 0.1)
    b = weight_box(rng, (filters,), 0.1)
    y = interval.conv2d(x, w, b)
    reference = four_corner_conv2d(x, w)
    np.testing.assert_allclose(y.lo, reference.lo + b.lo[:, None, None], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(y.hi, reference.hi + b.hi[:, None, None], rtol=1e-10, atol=1e-12)
    pooled = interval.max_pool2d(y, 2, ceil_mode=True)
    for x_point, w_point, b_point in zip(points_inside(x, rng), points_inside(w, rng), points_inside(b, rng)):
        y_point = ops.conv2d(x_point, w_point, b_point).data
        assert_inside(y, y_point, "conv2d")
        assert_inside(pooled, ops.max_pool2d(y_point, 2, ceil_mode=True).data, "max_pool2d")


# ---------------------------------------------------------------------------------------------------- models
def small_cnn(seed):
    return CNN(np.random.default_rng(seed), channels=3, kernel_size=3, hidden=(8, 6), num_classes=4, image_size=10)


def small_lsnn(seed):
    return LSNN(np.random.default_rng(seed), 2, 3, num_hidden=10, dtype=np.float64)


def theta64(model):
    return {name: p.data.astype(np.float64) for name, p in model.named_parameters()}


def interval_logits(model, x, zeta, path):
    boxes = {name: Interval.weight_box(value, zeta) for name, value in theta64(model).items()}
    with no_grad():
        return model(x, boxes, **path)


def point_logits(model, x, params, path):
    with no_grad():
        return model(x, params, **path).data


MODELS = {  # name: (model, inputs, keyword arguments of the forward pass)
    "cnn": (small_cnn, lambda rng: rng.random((3, 1, 10, 10)), {}),
    "lsnn": (small_lsnn, lambda rng: 2 * rng.standard_normal((3, 12, 2)), {"path": "reference"}),
    "lsnn fused": (small_lsnn, lambda rng: 2 * rng.standard_normal((3, 12, 2)), {"path": "fused"}),
}


@pytest.mark.parametrize("name", list(MODELS))
@settings(max_examples=8, deadline=None)
@given(seed=SEEDS, zeta=st.sampled_from([1e-4, 1e-2, 0.1]))
def test_every_network_in_the_weight_box_has_its_logits_inside_the_bounds(name, seed, zeta):
    build, inputs, path = MODELS[name]
    rng = np.random.default_rng(seed)
    model, x = build(seed % 1000), inputs(rng)
    bounds = interval_logits(model, x, zeta, path)
    boxes = {key: Interval.weight_box(value, zeta) for key, value in theta64(model).items()}
    networks = zip(*(points_inside(box, rng, count=3) for box in boxes.values()))  # corners, random points
    for draw, values in enumerate(networks):
        assert_inside(bounds, point_logits(model, x, dict(zip(boxes, values)), path), f"{name}, network {draw}")


@settings(max_examples=10, deadline=None)
@given(seed=SEEDS, zeta=st.sampled_from([1e-3, 1e-2, 5e-2]))
def test_lsnn_spike_bounds_hold_every_spike_of_every_network_in_the_box(seed, zeta):
    """Sharper than the logits: each network's spike trains (membrane, threshold, refractory counter and reset
    all at work) lie inside the spike intervals, step by step."""
    rng = np.random.default_rng(seed)
    model, x = small_lsnn(seed % 1000), 2 * rng.standard_normal((3, 20, 2))
    boxes = {key: Interval.weight_box(value, zeta) for key, value in theta64(model).items()}
    with no_grad():
        bounds = model.reference_spikes(x, boxes["w_in"], boxes["w_rec"] * model.off_diagonal)
        for w_in, w_rec in zip(*(points_inside(boxes[key], rng, count=10) for key in ("w_in", "w_rec"))):
            spikes = model.reference_spikes(Tensor(x), w_in, w_rec * model.off_diagonal).data
            assert np.all(bounds.lo <= spikes) and np.all(spikes <= bounds.hi)
    assert np.any(bounds.lo == 1), "some spikes should be certain"


@pytest.mark.parametrize("name", list(MODELS))
def test_bounds_tighten_monotonically_as_zeta_shrinks(name):
    build, inputs, path = MODELS[name]
    model, x = build(0), inputs(np.random.default_rng(1))
    previous = None
    for zeta in (0.1, 1e-2, 1e-3, 1e-4, 0.0):
        bounds = interval_logits(model, x, zeta, path)
        if previous is not None:
            slack = 1e-12 * (1 + np.abs(bounds.lo))
            assert np.all(previous.lo <= bounds.lo + slack) and np.all(bounds.hi <= previous.hi + slack), zeta
        previous = bounds
    assert np.array_equal(previous.lo, previous.hi)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cnn_at_zeta_zero_equals_the_point_pass_exactly(dtype):
    model = small_cnn(0)
    x = np.random.default_rng(1).random((4, 1, 10, 10)).astype(dtype)
    theta = {name: p.data.astype(dtype) for name, p in model.named_parameters()}
    with no_grad():
        point = model(Tensor(x), theta).data
        bounds = model(Interval.point(x), {name: Interval.weight_box(v, 0.0) for name, v in theta.items()})
    assert bounds.dtype == dtype
    assert np.array_equal(bounds.lo, point) and np.array_equal(bounds.hi, point)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lsnn_at_zeta_zero_equals_the_reference_point_pass_exactly(dtype):
    model = LSNN(np.random.default_rng(0), 2, 3, num_hidden=16, dtype=dtype)
    x = (2 * np.random.default_rng(1).standard_normal((4, 30, 2))).astype(dtype)
    with no_grad():
        point = model(x, path="reference").data
        boxes = {name: Interval.weight_box(p.data, 0.0) for name, p in model.named_parameters()}
        bounds = model(Interval.point(x), boxes, path="reference")
    assert model.record_state(x)["spikes"].mean() > 0.05, "the test inputs should make neurons spike"
    assert bounds.dtype == dtype
    assert np.array_equal(bounds.lo, point) and np.array_equal(bounds.hi, point)


def test_lsnn_accepts_a_mix_of_interval_and_point_parameters():
    """Only W_rec uncertain: Tensors (the model's own W_in) meet Intervals inside the step, through functional."""
    model = small_lsnn(0)
    x = 2 * np.random.default_rng(1).standard_normal((3, 12, 2))
    with no_grad():
        bounds = model(x, {"w_rec": Interval.weight_box(model.w_rec.data, 0.05)}, path="reference")
        point = model(x, path="reference").data
    assert_inside(bounds, point, "logits")
    assert np.any(bounds.width > 0)


def test_lsnn_fused_path_refuses_interval_inputs():
    model = small_lsnn(0)
    with pytest.raises(ValueError, match="point inputs only; use path='reference'"):
        model(Interval.point(np.zeros((1, 3, 2))), {"w_in": Interval.weight_box(model.w_in.data, 0.1)})


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("zeta", [0.0, 1e-4, 1e-2, 0.1])
def test_lsnn_fused_interval_kernel_equals_the_reference_interval_pass_bit_for_bit(dtype, zeta):
    """kernels/lsnn_interval.py does the reference path's float operations in the same order. 37 neurons, 5 samples
    (odd; two threads split them 3 + 2), enough input that spikes are sure, possible and refractory."""
    model = LSNN(np.random.default_rng(0), 3, 4, num_hidden=37, dtype=dtype)
    x = (3 * np.random.default_rng(1).standard_normal((5, 40, 3))).astype(dtype)
    boxes = {name: Interval.weight_box(p.data, zeta) for name, p in model.named_parameters()}
    with no_grad():
        reference, fused = model(x, boxes, path="reference"), model(x, boxes)
        spikes = model.reference_spikes(x, boxes["w_in"], boxes["w_rec"] * model.off_diagonal)
    assert fused.dtype == dtype
    np.testing.assert_array_equal(fused.lo, reference.lo)
    np.testing.assert_array_equal(fused.hi, reference.hi)
    if zeta > 0:
        assert np.any(spikes.lo == 1) and np.any(spikes.hi > spikes.lo), "sure and uncertain spikes both occur"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lsnn_fused_path_at_zeta_zero_equals_its_point_pass_exactly(dtype):
    """Boxes of width 0 are points: the fused path then runs the point kernel, so IBP at ζ = 0 is the model."""
    model = LSNN(np.random.default_rng(0), 2, 3, num_hidden=16, dtype=dtype)
    x = (2 * np.random.default_rng(1).standard_normal((4, 30, 2))).astype(dtype)
    with no_grad():
        point = model(x).data
        bounds = model(x, {name: Interval.weight_box(p.data, 0.0) for name, p in model.named_parameters()})
    assert np.array_equal(bounds.lo, point) and np.array_equal(bounds.hi, point)


def test_lsnn_fused_interval_kernel_with_a_dropout_mask_equals_the_reference():
    model = LSNN(np.random.default_rng(0), 3, 4, num_hidden=23, dropout=0.3)
    x = (3 * np.random.default_rng(1).standard_normal((4, 30, 3))).astype(np.float32)
    boxes = {name: Interval.weight_box(p.data, 1e-2) for name, p in model.named_parameters()}
    with no_grad():     # training mode with an rng: one dropout mask per sample, the same from the same seed
        reference = model(x, boxes, path="reference", rng=np.random.default_rng(2))
        fused = model(x, boxes, rng=np.random.default_rng(2))
    np.testing.assert_array_equal(fused.lo, reference.lo)
    np.testing.assert_array_equal(fused.hi, reference.hi)


def test_lsnn_fused_interval_kernel_with_a_mix_of_interval_and_point_parameters():
    """W_in a point: the reference multiplies x_t W_in with BLAS, the kernel row by row: equal up to rounding."""
    model = small_lsnn(0)
    x = 2 * np.random.default_rng(1).standard_normal((3, 12, 2))
    box = {"w_rec": Interval.weight_box(model.w_rec.data, 0.05)}
    with no_grad():
        reference, fused = model(x, box, path="reference"), model(x, box)
    np.testing.assert_allclose(fused.lo, reference.lo, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fused.hi, reference.hi, rtol=1e-12, atol=1e-12)
    assert np.any(fused.width > 0)
