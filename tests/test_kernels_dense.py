"""The fused dense kernel (minimal/kernels/dense.py) against the composed NumPy ops it replaces."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minimal.kernels import dense

TOLERANCE = {np.float64: dict(rtol=1e-12, atol=1e-12), np.float32: dict(rtol=1e-5, atol=1e-5)}


def ref_forward(x, w, b, activation):
    pre = x @ w + b
    return np.maximum(pre, 0) if activation == "relu" else pre


def ref_backward(grad_y, x, w, y, activation):
    grad_pre = grad_y * (y > 0) if activation == "relu" else grad_y
    return grad_pre @ w.T, x.T @ grad_pre, grad_pre.sum(axis=0)


def strided(a):
    """The same values as a through a non-contiguous view (every other column of a wider array)."""
    wider = np.zeros((a.shape[0], 2 * a.shape[1]), dtype=a.dtype)
    wider[:, ::2] = a
    return wider[:, ::2]


@settings(max_examples=30, deadline=None)
@given(batch=st.integers(1, 7), n_in=st.integers(1, 9), n_out=st.integers(1, 9),
       activation=st.sampled_from(dense.ACTIVATIONS), dtype=st.sampled_from([np.float64, np.float32]),
       layout=st.sampled_from(["contiguous", "strided", "transposed"]), seed=st.integers(0, 2**32 - 1))
def test_linear_matches_composed_numpy(batch, n_in, n_out, activation, dtype, layout, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, n_in)).astype(dtype)
    w = rng.standard_normal((n_in, n_out)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    if layout == "strided":
        x, w = strided(x), strided(w)
    elif layout == "transposed":          # Fortran-ordered views
        x, w = np.asfortranarray(x), np.asfortranarray(w)
    y = dense.linear_forward(x, w, b, activation)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, ref_forward(x, w, b, activation), **TOLERANCE[dtype])
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    if layout == "strided":
        grad_y = strided(grad_y)
    for got, want in zip(dense.linear_backward(grad_y, x, w, y, activation),
                         ref_backward(grad_y, x, w, y, activation)):
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, **TOLERANCE[dtype])


@pytest.mark.parametrize("n_in, n_out, activation", [(1600, 256, "relu"), (256, 64, "relu"), (64, 10, "none")])
def test_linear_cnn_shapes_float32(n_in, n_out, activation):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, n_in), dtype=np.float32)
    w = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32)
    b = rng.standard_normal(n_out).astype(np.float32)
    y = dense.linear_forward(x, w, b, activation)
    np.testing.assert_allclose(y, ref_forward(x, w, b, activation), rtol=1e-5, atol=1e-5)
    grad_y = rng.standard_normal(y.shape, dtype=np.float32)
    for got, want in zip(dense.linear_backward(grad_y, x, w, y, activation),
                         ref_backward(grad_y, x, w, y, activation)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_linear_bad_arguments_name_the_shapes():
    x, w, b = np.zeros((4, 3)), np.zeros((5, 2)), np.zeros(2)
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(5, 2\)"):
        dense.linear_forward(x, w, b)
    with pytest.raises(ValueError, match=r"b shape \(3,\)"):
        dense.linear_forward(x, np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="activation"):
        dense.linear_forward(x, np.zeros((3, 2)), b, "tanh")
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(4, 2\)"):
        dense.linear_backward(np.zeros((4, 3)), x, np.zeros((3, 2)), np.zeros((4, 2)))
