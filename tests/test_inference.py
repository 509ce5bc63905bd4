"""The evaluation path (minimal/nn/inference.py, minimal/kernels/inference.py): its kernels against plain NumPy on
odd shapes, and the logits of the CNN, the MLP and the LSNN against the models' own autodiff forward."""
import numba
import numpy as np
import pytest

from minimal.autodiff import Tensor, no_grad
from minimal.data.common import Split
from minimal.interval import Interval
from minimal.kernels import conv_reference
from minimal.kernels import inference as kernels
from minimal.metrics import accuracy, predict_logits
from minimal.nn import inference
from minimal.nn.cnn import CNN
from minimal.nn.lsnn import LSNN
from minimal.nn.mlp import MLP
from minimal.robust.mismatch import mismatch_draws

FLOAT32 = dict(rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------------- references
def pool_relu_reference(y, bias):
    """ReLU(max-pool 2×2, stride 2, ceil mode (y + bias)) of y (N, F, H, W), from the readable reference kernel."""
    pooled, _ = conv_reference.max_pool2d_forward(y + bias.reshape(1, -1, 1, 1), (2, 2), (2, 2), (0, 0), True)
    return np.maximum(pooled, 0)


def conv_block_reference(x, w, bias):
    """ReLU(max-pool(conv(x, w) + bias)) in (N, C, H, W) layout, plain NumPy."""
    return pool_relu_reference(conv_reference.conv2d_forward(x, w, (1, 1), (0, 0)), bias)


def channels_last(a):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def random_block(rng, n, channels, height, width, filters, kernel_h, kernel_w):
    x = rng.standard_normal((n, channels, height, width)).astype(np.float32)
    w = rng.standard_normal((filters, channels, kernel_h, kernel_w)).astype(np.float32)
    return x, w, rng.standard_normal(filters).astype(np.float32)


# ---------------------------------------------------------------------------------------------------- kernels
@pytest.mark.parametrize("n, channels, height, width, filters, kernel_h, kernel_w",
                         [(1, 1, 5, 5, 1, 2, 2), (3, 1, 9, 7, 5, 3, 2), (2, 3, 8, 11, 7, 4, 4), (4, 2, 6, 6, 3, 1, 3)])
def test_fused_conv_pool_relu_equals_numpy(n, channels, height, width, filters, kernel_h, kernel_w):
    """Odd and even convolution outputs (ceil-mode pooling keeps a partial last window), one or more channels."""
    rng = np.random.default_rng(n + channels + height + width)
    x, w, bias = random_block(rng, n, channels, height, width, filters, kernel_h, kernel_w)
    expected = channels_last(conv_block_reference(x, w, bias))
    out = np.empty_like(expected)
    kernels.conv_pool_relu_kernel(kernel_h, kernel_w, channels)(channels_last(x), inference.filters_last(w), bias, out)
    np.testing.assert_allclose(out, expected, **FLOAT32)
    assert 0 < np.count_nonzero(out) < out.size                     # ReLU cut some, not all


@pytest.mark.parametrize("n, channels, height, width, kernel_h, kernel_w", [(1, 1, 3, 3, 3, 3), (2, 3, 7, 5, 2, 4)])
def test_im2col_rows_are_the_patches(n, channels, height, width, kernel_h, kernel_w):
    rng = np.random.default_rng(height)
    x = channels_last(rng.standard_normal((n, channels, height, width)).astype(np.float32))
    out_h, out_w = height - kernel_h + 1, width - kernel_w + 1
    cols = np.empty((n, out_h, out_w, kernel_h, kernel_w, channels), np.float32)
    kernels.im2col(x, cols)
    windows = np.lib.stride_tricks.sliding_window_view(x, (kernel_h, kernel_w), axis=(1, 2))   # (n, oh, ow, c, kh, kw)
    np.testing.assert_array_equal(cols, windows.transpose(0, 1, 2, 4, 5, 3))


@pytest.mark.parametrize("n, height, width, filters", [(1, 1, 1, 1), (3, 5, 4, 6), (2, 10, 10, 3)])
def test_bias_pool_relu_equals_numpy_and_writes_channels_first(n, height, width, filters):
    rng = np.random.default_rng(height * width)
    y = rng.standard_normal((n, height, width, filters)).astype(np.float32)
    bias = rng.standard_normal(filters).astype(np.float32)
    expected = pool_relu_reference(y.transpose(0, 3, 1, 2), bias)
    out = np.empty_like(expected)
    kernels.bias_pool_relu(y, bias, out)
    np.testing.assert_array_equal(out, expected)                    # a max and one addition: exact


def test_workspace_reuses_its_memory_and_keeps_names_apart():
    workspace = inference.Workspace()
    first = workspace.array("a", (4, 5))
    assert np.shares_memory(workspace.array("a", (2, 3)), first)   # smaller: the same memory
    assert not np.shares_memory(workspace.array("b", (4, 5)), first)
    assert workspace.array("a", (6, 5)).shape == (6, 5)            # larger: new memory


# ---------------------------------------------------------------------------------------------------- models
def autodiff_logits(model, x, params=None):
    model.eval()
    with no_grad():
        return model(Tensor(x), params).data


def lsnn_inputs(rng, n):
    return (2 * rng.standard_normal((n, 30, 3))).astype(np.float32)


MODELS = {"cnn": (lambda rng: CNN(rng), lambda rng, n: rng.random((n, 1, 28, 28), dtype=np.float32)),
          "small cnn": (lambda rng: CNN(rng, channels=5, kernel_size=3, hidden=(7, 6), num_classes=3, image_size=11),
                        lambda rng, n: rng.standard_normal((n, 1, 11, 11)).astype(np.float32)),
          "mlp": (lambda rng: MLP(rng, sizes=(784, 33, 17, 10)),
                  lambda rng, n: rng.random((n, 1, 28, 28), dtype=np.float32)),
          "lsnn": (lambda rng: LSNN(rng, 3, 4, num_hidden=37), lsnn_inputs)}


@pytest.mark.parametrize("name", MODELS)
def test_evaluation_path_equals_the_autodiff_forward(name):
    """At the model's own parameters and at a mismatch draw; 2 * CHUNK_IMAGES + 3 samples: chunks and a rest."""
    build, inputs = MODELS[name]
    rng = np.random.default_rng(0)
    model, x = build(rng), inputs(rng, 2 * inference.CHUNK_IMAGES + 3)
    draw = next(mismatch_draws(model, 0.5, 1, rng))
    for params in (None, draw):
        forward = inference.forward_function(model, params)
        assert forward is not None
        got, expected = forward(x), autodiff_logits(model, x, params)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    assert not np.allclose(inference.forward_function(model, draw)(x), inference.forward_function(model)(x))


def test_predict_logits_uses_the_evaluation_path_and_restores_training_mode():
    rng = np.random.default_rng(1)
    model, x = CNN(rng), rng.random((13, 1, 28, 28), dtype=np.float32)
    expected = np.concatenate([inference.forward_function(model)(x[:8]), inference.forward_function(model)(x[8:])])
    assert model.training
    np.testing.assert_array_equal(predict_logits(model, x, batch_size=8), expected)
    assert model.training


def test_other_parameters_take_the_models_own_forward():
    """Intervals (IBP), float64 (gradient checks) and unknown models: forward_function says None."""
    rng = np.random.default_rng(2)
    model = MLP(rng, sizes=(784, 9, 8, 10))
    box = {"fc1.weight": Interval.weight_box(model.fc1.weight.data, 0.1)}
    assert inference.forward_function(model, box) is None
    assert inference.forward_function(model, {"fc1.weight": model.fc1.weight.data.astype(np.float64)}) is None
    assert inference.forward_function(object()) is None
    assert inference.forward_function(model, {"fc1.weight": np.zeros((784, 3), np.float32)}) is None   # wrong shape
    with pytest.raises(ValueError, match=r"images \(N, 1, H, W\), got shape \(2, 3, 28, 28\)"):
        inference.forward_function(CNN(rng))(np.zeros((2, 3, 28, 28), np.float32))


def test_same_logits_on_one_thread_or_two():
    """Same seed, same numbers on one numba thread or two: every kernel gives each image to one thread, which sums
    in a fixed order. (OpenBLAS's products, conv2 and the dense layers, may round differently on another number of
    BLAS threads, and for another number of rows: a batch size is part of the command.)"""
    rng = np.random.default_rng(4)
    threads_before, logits = numba.get_num_threads(), []
    cnn, images = CNN(rng), rng.random((19, 1, 28, 28), dtype=np.float32)
    lsnn, beats = LSNN(rng, 3, 4, num_hidden=37), lsnn_inputs(rng, 9)
    try:
        for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(threads)
            logits.append((predict_logits(cnn, images), predict_logits(lsnn, beats)))
    finally:
        numba.set_num_threads(threads_before)
    for first, last in zip(logits[0], logits[-1]):
        np.testing.assert_array_equal(first, last)


def test_accuracy_counts_the_largest_logit():
    rng = np.random.default_rng(5)
    model, x = MLP(rng, sizes=(784, 9, 8, 10)), rng.random((30, 1, 28, 28), dtype=np.float32)
    labels = autodiff_logits(model, x).argmax(axis=1)
    assert accuracy(model, Split(x, labels), batch_size=7) == 1.0
    assert accuracy(model, Split(x, (labels + 1) % 10), batch_size=7) == 0.0
