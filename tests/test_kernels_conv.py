"""Convolution and max-pooling kernels (minimal/kernels/conv.py) against the plain versions of
minimal/kernels/conv_reference.py (written for reading: a convolution is a sum over the kernel offsets of
shifted slices of the padded input; a max-pool looks at every window explicitly). Shapes stay tiny so the
tests also run with NUMBA_DISABLE_JIT=1 (the kernels then execute as plain Python).
"""
import contextlib
import itertools

import numba
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minimal.autodiff import Tensor, ops
from minimal.kernels import conv, conv_reference as reference
from minimal.nn.cnn import CNN

SETTINGS = settings(max_examples=30, deadline=None)
TOLERANCE = {np.float64: dict(rtol=1e-10, atol=1e-10), np.float32: dict(rtol=1e-4, atol=1e-4)}


# ------------------------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def samples_per_chunk(samples, x, w, stride, padding):
    """Temporarily set conv.CHUNK_BYTES so that the batch is cut into chunks of `samples` samples (the last
    chunk may be shorter); None leaves the default."""
    saved = conv.CHUNK_BYTES
    if samples is not None:
        out_h = conv.conv2d_output_size(x.shape[2], w.shape[2], stride[0], padding[0])
        out_w = conv.conv2d_output_size(x.shape[3], w.shape[3], stride[1], padding[1])
        floats_per_sample = (w.shape[1] * w.shape[2] * w.shape[3] + w.shape[0]) * out_h * out_w
        conv.CHUNK_BYTES = samples * floats_per_sample * np.dtype(x.dtype).itemsize
    try:
        yield
    finally:
        conv.CHUNK_BYTES = saved


def non_contiguous(a):
    """The same values as a, seen through a strided view of a bigger array (every other element)."""
    bigger = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)
    bigger[..., ::2] = a
    view = bigger[..., ::2]
    assert view.size <= 1 or not view.flags.c_contiguous
    return view


def assert_close(actual, expected, dtype):
    assert actual.dtype == dtype
    np.testing.assert_allclose(actual, expected, **TOLERANCE[dtype])


@st.composite
def conv_cases(draw):
    """A small convolution: shapes, stride, padding, dtype, layout and chunking drawn at random."""
    n, c, f = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    h, w = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    kh = draw(st.integers(1, h + 2 * padding[0]))
    kw = draw(st.integers(1, w + 2 * padding[1]))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    weight = rng.standard_normal((f, c, kh, kw)).astype(dtype)
    if draw(st.booleans()):
        x = non_contiguous(x)
    if draw(st.booleans()):
        weight = non_contiguous(weight)
    chunk = draw(st.sampled_from([1, 2, None]))            # samples per chunk; None: the default (all)
    return x, weight, stride, padding, dtype, chunk, rng


@st.composite
def pool_cases(draw):
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    h = draw(st.integers(max(1, kernel[0] - 2 * padding[0]), 9))
    w = draw(st.integers(max(1, kernel[1] - 2 * padding[1]), 9))
    ceil_mode = draw(st.booleans())
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):   # few distinct values: many ties, so the "first element wins" rule matters
        x = rng.integers(-2, 3, (n, c, h, w)).astype(dtype)
    else:
        x = rng.standard_normal((n, c, h, w)).astype(dtype)
    if draw(st.booleans()):
        x = non_contiguous(x)
    return x, kernel, stride, padding, ceil_mode, dtype, rng


# ------------------------------------------------------------------------------------------- convolution
@SETTINGS
@given(conv_cases())
def test_conv2d_forward_and_backwards_match_reference(case):
    x, w, stride, padding, dtype, chunk, rng = case
    with samples_per_chunk(chunk, x, w, stride, padding):
        out = conv.conv2d_forward(x, w, stride, padding)
        assert_close(out, reference.conv2d_forward(x, w, stride, padding), dtype)
        g = rng.standard_normal(out.shape).astype(dtype)
        if rng.random() < 0.5:
            g = non_contiguous(g)
        grad_x = conv.conv2d_backward_input(g, w, x.shape[2:], stride, padding)
        assert grad_x.shape == x.shape
        assert_close(grad_x, reference.conv2d_backward_input(g, w, x.shape[2:], stride, padding), dtype)
        grad_w = conv.conv2d_backward_weight(g, x, w.shape[2:], stride, padding)
        assert grad_w.shape == w.shape
        assert_close(grad_w, reference.conv2d_backward_weight(g, x, w.shape[2:], stride, padding), dtype)


@SETTINGS
@given(conv_cases())
def test_im2col_matches_reference(case):
    x, w, stride, padding, dtype, _, _ = case
    cols, out_hw = conv.im2col(x, w.shape[2:], stride, padding)
    expected_cols, expected_hw = reference.im2col(np.asarray(x), w.shape[2:], stride, padding)
    assert out_hw == expected_hw and cols.dtype == dtype
    np.testing.assert_array_equal(cols, expected_cols)


def test_im2col_times_the_filters_is_the_convolution():
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, 3, 2))
    cols, (out_h, out_w) = conv.im2col(x, (3, 2), 2, 1)
    product = w.reshape(4, -1) @ cols.reshape(len(cols), -1)                 # (F, N·OH·OW)
    out = product.reshape(4, 2, out_h, out_w).transpose(1, 0, 2, 3)
    np.testing.assert_allclose(out, reference.conv2d_forward(x, w, (2, 2), (1, 1)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel_hw, stride", [((3, 2), (1, 1)), ((4, 4), (1, 1)), ((3, 3), (2, 1))])
def test_col2im_adds_each_pixels_contributions_in_a_fixed_order(kernel_hw, stride):
    """Bit for bit what a plain loop gives that adds the patches in (oh, ow, kh) order: the kernel's order of
    additions is part of the numbers a training run produces (float32 sums depend on their order)."""
    rng = np.random.default_rng(7)
    (kh, kw), (sh, sw), channels = kernel_hw, stride, 5
    grad_rows = rng.standard_normal((3, 4, 5, kh * kw * channels)).astype(np.float32)
    height, width = (4 - 1) * sh + kh, (5 - 1) * sw + kw
    kernel_result = np.zeros((3, height, width, channels), np.float32)
    conv._col2im(grad_rows, kernel_result, kh, kw, sh, sw)
    expected = np.zeros_like(kernel_result)
    for oh, ow, row in itertools.product(range(4), range(5), range(kh)):
        run = grad_rows[:, oh, ow, row * kw * channels:(row + 1) * kw * channels].reshape(3, kw, channels)
        expected[:, oh * sh + row, ow * sw:ow * sw + kw] += run
    np.testing.assert_array_equal(kernel_result, expected)


@SETTINGS
@given(conv_cases())
def test_conv2d_backwards_are_adjoints_of_forward(case):
    """<conv(x, w), g> = <x, backward_input(g)> = <w, backward_weight(g, x)>: conv is linear in x and in w."""
    x, w, stride, padding, _, chunk, rng = case
    x, w = x.astype(np.float64), w.astype(np.float64)
    with samples_per_chunk(chunk, x, w, stride, padding):
        out = conv.conv2d_forward(x, w, stride, padding)
        g = rng.standard_normal(out.shape)
        inner = np.sum(out * g)
        grad_x = conv.conv2d_backward_input(g, w, x.shape[2:], stride, padding)
        grad_w = conv.conv2d_backward_weight(g, x, w.shape[2:], stride, padding)
    np.testing.assert_allclose(np.sum(x * grad_x), inner, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.sum(w * grad_w), inner, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("x_shape, w_shape, stride, padding", [
    ((1, 1, 5, 5), (1, 1, 5, 5), (1, 1), (0, 0)),     # batch 1, one channel, kernel = input: a 1x1 output
    ((2, 3, 6, 4), (4, 3, 6, 4), (1, 1), (0, 0)),     # non-square input, kernel = input
    ((2, 2, 7, 5), (3, 2, 3, 2), (2, 2), (1, 0)),     # non-square kernel, stride 2, padding on one axis
    ((1, 2, 4, 9), (2, 2, 2, 3), (1, 2), (2, 1)),     # padding wider than the stride
    ((3, 1, 28, 28), (4, 1, 4, 4), (1, 1), (0, 0)),   # the paper's first layer, few filters
    ((2, 3, 13, 13), (2, 3, 4, 4), (1, 1), (0, 0)),   # the paper's second layer, few channels
])
def test_conv2d_named_shapes(x_shape, w_shape, stride, padding, dtype):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(x_shape).astype(dtype), rng.standard_normal(w_shape).astype(dtype)
    with samples_per_chunk(2, x, w, stride, padding):     # chunks of 2 samples, the last one may be shorter
        out = conv.conv2d_forward(x, w, stride, padding)
        assert out.shape[2:] == tuple(conv.conv2d_output_size(x_shape[i + 2], w_shape[i + 2], stride[i], padding[i])
                                      for i in range(2))
        g = rng.standard_normal(out.shape).astype(dtype)
        grad_x = conv.conv2d_backward_input(g, w, x_shape[2:], stride, padding)
        grad_w = conv.conv2d_backward_weight(g, x, w_shape[2:], stride, padding)
    assert_close(out, reference.conv2d_forward(x, w, stride, padding), dtype)
    assert_close(grad_x, reference.conv2d_backward_input(g, w, x_shape[2:], stride, padding), dtype)
    assert_close(grad_w, reference.conv2d_backward_weight(g, x, w_shape[2:], stride, padding), dtype)


def test_backward_weight_takes_the_forwards_patches():
    """The patch rows conv2d_forward returns (what ops.conv2d keeps for its backward) give the same grad of w as
    building them again, on a batch cut into three chunks."""
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((5, 3, 7, 6)), rng.standard_normal((4, 3, 3, 2))
    with samples_per_chunk(2, x, w, (2, 1), (1, 0)):
        out, patches = conv.conv2d_forward(x, w, (2, 1), (1, 0), return_patches=True)
        g = rng.standard_normal(out.shape)
        assert len(patches) == 3
        np.testing.assert_array_equal(conv.conv2d_backward_weight(g, x, (3, 2), (2, 1), (1, 0), patches),
                                      conv.conv2d_backward_weight(g, x, (3, 2), (2, 1), (1, 0)))


def test_chunks_cover_the_batch_in_order():
    x, w = np.zeros((5, 2, 6, 6), np.float32), np.zeros((3, 2, 3, 3), np.float32)
    with samples_per_chunk(2, x, w, (1, 1), (0, 0)):
        shape = conv._ConvShape(5, 2, (6, 6), 3, (3, 3), (1, 1), (0, 0), x.dtype)
        assert list(shape.chunks()) == [(0, 2), (2, 4), (4, 5)]


def test_conv2d_accepts_int_stride_and_padding_and_mixed_dtypes():
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 2, 6, 6)), rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    out = conv.conv2d_forward(x, w, 2, 1)
    assert out.dtype == np.float64      # float64 wins, as in NumPy
    np.testing.assert_allclose(out, reference.conv2d_forward(x, w, (2, 2), (1, 1)), rtol=1e-6, atol=1e-6)


def test_conv2d_output_size():
    assert conv.conv2d_output_size(28, 4, 1, 0) == 25
    assert conv.conv2d_output_size(13, 4, 1, 0) == 10
    assert conv.conv2d_output_size(7, 3, 2, 1) == 4
    assert conv.conv2d_output_size(5, 5, 1, 0) == 1
    with pytest.raises(ValueError, match="does not fit"):
        conv.conv2d_output_size(3, 6, 1, 1)


def test_conv2d_bad_shapes_name_both_shapes():
    x, w = np.zeros((2, 3, 8, 8)), np.zeros((4, 5, 3, 3))
    with pytest.raises(ValueError, match=r"\(2, 3, 8, 8\).*\(4, 5, 3, 3\)"):
        conv.conv2d_forward(x, w)
    with pytest.raises(ValueError, match="4 dimensions"):
        conv.conv2d_forward(np.zeros((3, 8, 8)), w)
    with pytest.raises(ValueError, match="does not fit"):
        conv.conv2d_forward(np.zeros((1, 5, 2, 2)), w)
    w = np.zeros((4, 3, 3, 3))
    with pytest.raises(ValueError, match=r"\(2, 4, 5, 5\).*\(4, 3, 3, 3\)"):
        conv.conv2d_backward_input(np.zeros((2, 4, 5, 5)), w, (8, 8), (1, 1), (0, 0))   # output is 6x6
    with pytest.raises(ValueError, match=r"\(2, 5, 6, 6\).*\(4, 3, 3, 3\)"):
        conv.conv2d_backward_input(np.zeros((2, 5, 6, 6)), w, (8, 8), (1, 1), (0, 0))   # 5 filters, not 4
    with pytest.raises(ValueError, match=r"\(3, 4, 6, 6\).*\(2, 3, 8, 8\)"):
        conv.conv2d_backward_weight(np.zeros((3, 4, 6, 6)), x, (3, 3), (1, 1), (0, 0))  # batch 3 vs 2
    with pytest.raises(ValueError, match="stride"):
        conv.conv2d_forward(x, w, stride=0)


# ------------------------------------------------------------------------------------------- max-pooling
@SETTINGS
@given(pool_cases())
def test_max_pool_forward_and_backward_match_reference(case):
    x, kernel, stride, padding, ceil_mode, dtype, rng = case
    out, argmax = conv.max_pool2d_forward(x, kernel, stride, padding, ceil_mode)
    expected_out, expected_argmax = reference.max_pool2d_forward(np.asarray(x), kernel, stride, padding, ceil_mode)
    assert out.dtype == dtype and out.shape == expected_out.shape
    np.testing.assert_array_equal(out, expected_out)
    np.testing.assert_array_equal(argmax, expected_argmax)
    g = rng.standard_normal(out.shape).astype(dtype)
    grad_x = conv.max_pool2d_backward(g, argmax, x.shape)
    assert grad_x.dtype == dtype and grad_x.shape == x.shape
    np.testing.assert_allclose(grad_x, reference.max_pool2d_backward(g, expected_argmax, x.shape), **TOLERANCE[dtype])


@pytest.mark.parametrize("in_size, kernel, stride, padding, floor, ceil", [
    (25, 2, 2, 0, 12, 13),    # the paper's CNN: 25x25 -> 13x13 in ceil mode
    (10, 2, 2, 0, 5, 5),
    (5, 3, 2, 1, 3, 3),
    (4, 2, 3, 0, 1, 2),
    (5, 2, 2, 1, 3, 3),       # ceil would give 4, but that window would start in the right padding
    (6, 2, 2, 1, 4, 4),
    (1, 1, 1, 0, 1, 1),
])
def test_pool_output_size_follows_pytorch(in_size, kernel, stride, padding, floor, ceil):
    assert conv.pool_output_size(in_size, kernel, stride, padding, False) == floor
    assert conv.pool_output_size(in_size, kernel, stride, padding, True) == ceil
    assert reference.pool_output_size(in_size, kernel, stride, padding, False) == floor
    assert reference.pool_output_size(in_size, kernel, stride, padding, True) == ceil


def test_max_pool_cnn_shape_keeps_last_partial_window():
    x = np.random.default_rng(0).standard_normal((2, 3, 25, 25)).astype(np.float32)
    out, argmax = conv.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0), ceil_mode=True)
    assert out.shape == (2, 3, 13, 13) and argmax.shape == (2, 3, 13, 13)
    np.testing.assert_array_equal(out[:, :, -1, -1], x[:, :, 24, 24])   # the 1x1 corner window
    full_windows = x[:, :, :24, :24].reshape(2, 3, 12, 2, 12, 2).max(axis=(3, 5))
    np.testing.assert_array_equal(out[:, :, :12, :12], full_windows)


def test_max_pool_ties_go_to_first_element_and_overlaps_accumulate():
    x = np.ones((1, 1, 4, 4))
    out, argmax = conv.max_pool2d_forward(x, (3, 3), (1, 1), (1, 1))        # every window is a tie
    tops, lefts = np.maximum(np.arange(4) - 1, 0), np.maximum(np.arange(4) - 1, 0)
    np.testing.assert_array_equal(argmax[0, 0], tops[:, None] * 4 + lefts[None, :])
    grad = conv.max_pool2d_backward(np.ones_like(out), argmax, x.shape)
    assert grad.sum() == out.size                                           # nothing lost, some inputs win twice
    assert grad[0, 0, 0, 0] == 4                                            # won by 4 overlapping windows


def test_max_pool_padding_is_minus_infinity_and_nan_wins():
    x = -np.ones((1, 1, 3, 3), dtype=np.float32)
    out, _ = conv.max_pool2d_forward(x, (2, 2), (2, 2), (1, 1))
    np.testing.assert_array_equal(out, -1)                                  # never the 0 of zero-padding
    x[0, 0, 1, 1] = np.nan
    out, argmax = conv.max_pool2d_forward(x, (3, 3), (3, 3), (0, 0))
    assert np.isnan(out[0, 0, 0, 0]) and argmax[0, 0, 0, 0] == 4


def test_max_pool_bad_arguments_raise():
    x = np.zeros((2, 3, 6, 6))
    with pytest.raises(ValueError, match="half the kernel"):
        conv.max_pool2d_forward(x, (2, 2), (2, 2), (2, 2))
    with pytest.raises(ValueError, match="4 dimensions"):
        conv.max_pool2d_forward(np.zeros((3, 6, 6)))
    out, argmax = conv.max_pool2d_forward(x)
    with pytest.raises(ValueError, match=r"\(2, 3, 3, 3\).*\(2, 3, 4, 4\).*\(2, 3, 6, 6\)"):
        conv.max_pool2d_backward(out, np.zeros((2, 3, 4, 4), dtype=np.int64), x.shape)
    with pytest.raises(ValueError, match=r"\(2, 3, 3, 3\).*\(2, 4, 6, 6\)"):
        conv.max_pool2d_backward(out, argmax, (2, 4, 6, 6))
    with pytest.raises(ValueError, match="outside"):
        conv.max_pool2d_backward(out, argmax, (2, 3, 2, 2))


# ------------------------------------------------------------------------------------------- determinism
def test_cnn_gradients_are_the_same_on_one_numba_thread_or_two():
    """A CNN training step's output and gradients, bit for bit, on one numba thread or two: the kernels give whole
    samples to a thread and cut the batch into chunks by size, never by thread count. (OpenBLAS itself may round
    differently on another number of BLAS threads, even for a plain x @ W: that is not ours to fix.)"""
    rng = np.random.default_rng(0)
    model, x, y = CNN(rng), rng.random((37, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 37)
    threads_before, results = numba.get_num_threads(), []
    try:
        for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(threads)
            model.zero_grad()
            logits = model(Tensor(x))
            ops.cross_entropy(logits, y).backward()
            results.append([logits.data] + [p.grad.copy() for p in model.parameters()])
    finally:
        numba.set_num_threads(threads_before)
    for first, last in zip(results[0], results[-1]):
        np.testing.assert_array_equal(first, last)
