"""Convolution and max-pooling written for reading, not for speed: what the fast kernels of conv.py must equal.

Same functions, same arguments, same results as conv.py (up to rounding: these compute in float64), NCHW
layout; stride, padding and kernel sizes are (h, w) pairs. tests/test_kernels_conv.py compares the two on
random shapes. The definitions, with x_padded the input zero-padded by (PH, PW) on each side:

    conv          out[n, f, i, j] = Σ_c Σ_kh Σ_kw  w[f, c, kh, kw] · x_padded[n, c, i·SH + kh, j·SW + kw]
    max-pooling   out[n, c, i, j] = max of x over the window of rows i·SH − PH … + KH − 1, columns likewise
"""
import numpy as np


# ------------------------------------------------------------------------------------------- convolution
def pad(x, padding, value=0.0):
    """x (N, C, H, W) with `value` added around the two spatial axes: (PH, PW) rows/columns on each side."""
    (ph, pw) = padding
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def window_slices(kh, kw, stride, out_hw):
    """For kernel offset (kh, kw): the slices of x_padded that hold, for every output pixel (i, j), the input
    element x_padded[.., i·SH + kh, j·SW + kw] that this offset multiplies."""
    (sh, sw), (oh, ow) = stride, out_hw
    return slice(kh, kh + sh * (oh - 1) + 1, sh), slice(kw, kw + sw * (ow - 1) + 1, sw)


def conv2d_output_size(in_size, kernel, stride, padding):
    """How many kernel positions fit along one axis of the padded input."""
    return (in_size + 2 * padding - kernel) // stride + 1


def im2col(x, kernel_hw, stride, padding):
    """The patch matrix and (OH, OW): one column per (sample n, output pixel (i, j)) holding the input patch that
    output pixel sees, cols[(c·KH + kh)·KW + kw, n, i·OW + j] = x_padded[n, c, i·SH + kh, j·SW + kw]."""
    n, c, h, w = x.shape
    (kh_size, kw_size), (sh, sw) = kernel_hw, stride
    out_h = conv2d_output_size(h, kh_size, sh, padding[0])
    out_w = conv2d_output_size(w, kw_size, sw, padding[1])
    xp = pad(x, padding)
    cols = np.zeros((c * kh_size * kw_size, n, out_h * out_w), dtype=x.dtype)
    for channel in range(c):
        for kh in range(kh_size):
            for kw in range(kw_size):
                k = (channel * kh_size + kh) * kw_size + kw
                for i in range(out_h):
                    for j in range(out_w):
                        cols[k, :, i * out_w + j] = xp[:, channel, i * sh + kh, j * sw + kw]
    return cols, (out_h, out_w)


def conv2d_forward(x, w, stride, padding):
    """The sum over kernel offsets (kh, kw): each offset multiplies a shifted, strided view of the input by one
    tap of every filter (a product over the channels). x (N, C, H, W), w (F, C, KH, KW) -> (N, F, OH, OW)."""
    xp = pad(x.astype(np.float64), padding)
    f, _, kh_size, kw_size = w.shape
    out_h = conv2d_output_size(x.shape[2], kh_size, stride[0], padding[0])
    out_w = conv2d_output_size(x.shape[3], kw_size, stride[1], padding[1])
    out = np.zeros((x.shape[0], f, out_h, out_w))
    for kh in range(kh_size):
        for kw in range(kw_size):
            rows, cols = window_slices(kh, kw, stride, (out_h, out_w))
            out += np.einsum("nchw,fc->nfhw", xp[:, :, rows, cols], w[:, :, kh, kw].astype(np.float64))
    return out


def conv2d_backward_input(grad_out, w, input_hw, stride, padding):
    """Gradient with respect to x: every output gradient flows back to the input elements its window touched,
    weighted by the filter tap that multiplied them; what falls on the padding is dropped."""
    (h, wd), (ph, pw) = input_hw, padding
    grad = np.zeros((grad_out.shape[0], w.shape[1], h + 2 * ph, wd + 2 * pw))
    for kh in range(w.shape[2]):
        for kw in range(w.shape[3]):
            rows, cols = window_slices(kh, kw, stride, grad_out.shape[2:])
            grad[:, :, rows, cols] += np.einsum("nfhw,fc->nchw", grad_out.astype(np.float64),
                                                w[:, :, kh, kw].astype(np.float64))
    return grad[:, :, ph:ph + h, pw:pw + wd]


def conv2d_backward_weight(grad_out, x, kernel_hw, stride, padding):
    """Gradient with respect to w: grad_w[f, c, kh, kw] = Σ_n Σ_i Σ_j grad_out[n, f, i, j] · x_padded[n, c,
    i·SH + kh, j·SW + kw], one kernel offset at a time."""
    xp = pad(x.astype(np.float64), padding)
    grad = np.zeros((grad_out.shape[1], x.shape[1]) + tuple(kernel_hw))
    for kh in range(kernel_hw[0]):
        for kw in range(kernel_hw[1]):
            rows, cols = window_slices(kh, kw, stride, grad_out.shape[2:])
            grad[:, :, kh, kw] = np.einsum("nfhw,nchw->fc", grad_out.astype(np.float64), xp[:, :, rows, cols])
    return grad


# ------------------------------------------------------------------------------------------- max-pooling
def pool_output_size(in_size, kernel, stride, padding, ceil_mode):
    """Count the windows one by one (PyTorch's rule). floor: the window fits in the padded input. ceil: also a
    partial last window, as long as the previous window did not already reach the end and it starts before the
    right padding."""
    count = 0
    while True:
        start = count * stride
        if ceil_mode:
            keep = (count == 0 or start - stride + kernel < in_size + 2 * padding) and start < in_size + padding
        else:
            keep = start + kernel <= in_size + 2 * padding
        if not keep:
            return count
        count += 1


def max_pool2d_forward(x, kernel, stride, padding, ceil_mode):
    """Every window explicitly: the max of its elements inside the input (padding is never the max), and argmax,
    the flat index h·W + w of the first maximal one in row-major order. Returns (out, argmax)."""
    n, c, h, w = x.shape
    out_h = pool_output_size(h, kernel[0], stride[0], padding[0], ceil_mode)
    out_w = pool_output_size(w, kernel[1], stride[1], padding[1], ceil_mode)
    out = np.empty((n, c, out_h, out_w), dtype=x.dtype)
    argmax = np.empty((n, c, out_h, out_w), dtype=np.int64)
    for i in range(out_h):
        for j in range(out_w):
            top, left = i * stride[0] - padding[0], j * stride[1] - padding[1]
            rows = np.arange(max(top, 0), min(top + kernel[0], h))
            cols = np.arange(max(left, 0), min(left + kernel[1], w))
            window = x[:, :, rows[:, None], cols[None, :]].reshape(n, c, -1)
            first = window.argmax(axis=-1)                   # np.argmax returns the first maximum
            out[:, :, i, j] = window.max(axis=-1)
            argmax[:, :, i, j] = rows[first // len(cols)] * w + cols[first % len(cols)]
    return out, argmax


def max_pool2d_backward(grad_out, argmax, input_shape):
    """Gradient with respect to x: each output gradient goes to the input element that won its window (added up
    where one element won several overlapping windows)."""
    n, c, h, w = input_shape
    grad = np.zeros((n * c, h * w))
    planes = np.repeat(np.arange(n * c), argmax[0, 0].size)
    np.add.at(grad, (planes, argmax.reshape(-1)), grad_out.reshape(-1))
    return grad.reshape(input_shape)
