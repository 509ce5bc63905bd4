"""Numba kernels for 2-D convolution and max-pooling, NCHW layout, float32 or float64.

Convolution as a matrix product (im2col)
----------------------------------------
Written from its definition (conv_reference.py) a convolution runs far below what the CPU can do. Instead we
copy the input patch that each output pixel sees into one row of a "patch matrix", and let BLAS do all the
multiply-adds. The input is first copied channels-last and zero-padded, x_cl (N, Hp, Wp, C), so that one patch
row is KH runs of KW·C consecutive numbers:

    rows[(n, oh, ow), k] = x_cl[n, oh*SH + kh, ow*SW + kw, c]      k = (kh*KW + kw)*C + c   (C*KH*KW columns)
    W2[f, k]             = w[f, c, kh, kw]                         the filters in the same (kh, kw, c) order

rows is (N*OH*OW, C*KH*KW): one row per (sample, output pixel). With G2[f, (n, oh, ow)] = grad_out[n, f, oh, ow]
(grad_out with its sample and filter axes swapped):

    forward          Y = W2 @ rows.T     (F, N*OH*OW), then out[n, f] = Y[f, n] + bias[f]
    grad of weight   grad_W2 = G2 @ rows (F, C*KH*KW): sums over samples and output pixels at once
    grad of input    grad_rows = G2.T @ W2, then col2im adds every entry of grad_rows back onto the input
                     pixel it was copied from (a pixel sits in several patches)

So both backward passes are matrix products too: all heavy arithmetic runs in BLAS, and the numba kernels only
move data, in parallel over the samples.

What this file changes for speed, compared with the plain versions in conv_reference.py (same functions, same
results up to rounding):
- channels last inside: a patch row is copied as KH runs of KW*C numbers (1 KB for the CNN's second layer),
  and col2im adds runs just as long; with channels first the runs would be KW numbers long;
- the products are filters-first (F, N*OH*OW), so that going back to (N, F, OH, OW) moves whole runs of OH*OW
  numbers (one per sample and filter), and the bias is added on the way;
- the batch is cut into a few equal chunks of samples (at least two; CHUNK_BYTES below), and the chunks'
  products run at the same time, one per thread, OpenBLAS set to one thread ("the products" below);
- conv2d_forward can hand its patch rows to conv2d_backward_weight (ops.conv2d does), so a training step builds
  them once;
- max-pooling is one loop over windows, parallel over the N*C planes, compiled once per window size (so the
  window loops unroll), remembering where each maximum came from (argmax) for the backward.
The numba kernels index with loop variables (never negative, so numba drops its negative-index checks). All are
compiled with cache=True (the first call in a fresh environment compiles, a few seconds); with
NUMBA_DISABLE_JIT=1 they run as plain Python, correct but only for tiny shapes.

Measurements, and the variants we tried and rejected: docs/performance.md, "CNN training step and
convolution kernels".
"""
import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from numba import njit, prange

from . import blas


# ------------------------------------------------------------------------------------------- small helpers
def as_pair(value, name):
    """(h, w) from an int or a pair of ints: how kernel sizes, strides and paddings are given everywhere."""
    pair = (value, value) if np.isscalar(value) else tuple(value)
    if len(pair) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return int(pair[0]), int(pair[1])


def _float_dtype(*arrays):
    """The dtype the kernels compute in: float32 if every input is float32 (or smaller), else float64."""
    dtype = np.result_type(*arrays, np.float32)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"convolution/pooling needs real floating-point inputs, got dtypes "
                         f"{[np.asarray(a).dtype for a in arrays]}")
    return dtype


def _check_ndim(array, ndim, what, name):
    if array.ndim != ndim:
        raise ValueError(f"{what}: {name} must have {ndim} dimensions, got shape {array.shape}")


def _check_stride_padding(stride, padding, what):
    if min(stride) < 1 or min(padding) < 0:
        raise ValueError(f"{what}: stride must be >= 1 and padding >= 0, got stride={stride}, padding={padding}")


# ------------------------------------------------------------------------------------------- output sizes
def conv2d_output_size(in_size, kernel, stride, padding):
    """Output length along one axis: how many kernel positions fit in the zero-padded input."""
    if kernel < 1 or stride < 1:
        raise ValueError(f"kernel size and stride must be >= 1, got kernel {kernel}, stride {stride}")
    padded = in_size + 2 * padding
    if padded < kernel:
        raise ValueError(f"kernel size {kernel} does not fit in input size {in_size} with padding {padding}")
    return (padded - kernel) // stride + 1


def pool_output_size(in_size, kernel, stride, padding, ceil_mode):
    """Output length along one axis of max-pooling (PyTorch's rule).

    floor mode counts the windows that fit entirely in the padded input. ceil mode also keeps a last, partial
    window, but only if it starts inside the input or the left padding (never in the right padding).
    Example: in_size 25, kernel 2, stride 2 -> 12 (floor) or 13 (ceil).
    """
    span = in_size + 2 * padding - kernel
    if span < 0:
        raise ValueError(f"pooling kernel {kernel} does not fit in input size {in_size} with padding {padding}")
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1                 # ceil(span / stride) + 1
    if (out - 1) * stride >= in_size + padding:  # the last window would start in the right padding: drop it
        out -= 1
    return out


# ------------------------------------------------------------------------------------------- numba kernels
@njit(parallel=True, cache=True)
def _to_channels_last(x, x_cl, pad_h, pad_w):
    """x_cl[n, pad_h + h, pad_w + w, c] = x[n, c, h, w]. The border of x_cl (the padding) is not touched."""
    n_samples, n_channels, height, width = x.shape
    for n in prange(n_samples):
        for h in range(height):
            for w in range(width):
                for c in range(n_channels):
                    x_cl[n, pad_h + h, pad_w + w, c] = x[n, c, h, w]


@njit(parallel=True, cache=True)
def _to_channels_first(x_cl, x, pad_h, pad_w):
    """x[n, c, h, w] = x_cl[n, pad_h + h, pad_w + w, c]: the inverse of _to_channels_last (padding dropped)."""
    n_samples, n_channels, height, width = x.shape
    for n in prange(n_samples):
        for c in range(n_channels):
            for h in range(height):
                for w in range(width):
                    x[n, c, h, w] = x_cl[n, pad_h + h, pad_w + w, c]


@njit(parallel=True, cache=True)
def _im2col(x_cl, rows, kernel_h, kernel_w, stride_h, stride_w):
    """Fill rows[n, oh, ow, k] = x_cl[n, oh*stride_h + kh, ow*stride_w + kw, c], k = (kh*KW + kw)*C + c.

    x_cl: zero-padded channels-last input (N, Hp, Wp, C). rows: (N, OH, OW, KH*KW*C), every entry overwritten.
    For fixed (oh, ow, kh) the KW*C entries are consecutive in both arrays: one run per kernel row.
    """
    n_samples, out_h, out_w = rows.shape[0], rows.shape[1], rows.shape[2]
    run = kernel_w * x_cl.shape[3]
    x_lines = x_cl.reshape(n_samples, x_cl.shape[1], -1)      # (N, Hp, Wp*C): one image row per line
    for job in prange(n_samples * out_h):                     # (sample, output row) pairs
        n, oh = job // out_h, job % out_h
        for ow in range(out_w):
            first = ow * stride_w * x_cl.shape[3]             # where the patch starts in its input rows
            for kh in range(kernel_h):
                line = oh * stride_h + kh
                for i in range(run):
                    rows[n, oh, ow, kh * run + i] = x_lines[n, line, first + i]


@njit(parallel=True, cache=True)
def _col2im(grad_rows, grad_x_cl, kernel_h, kernel_w, stride_h, stride_w):
    """The adjoint of _im2col: grad_x_cl[n, oh*stride_h + kh, ow*stride_w + kw, c] += grad_rows[n, oh, ow, k].

    grad_x_cl: zero-padded channels-last gradient (N, Hp, Wp, C), accumulated into (+=) because overlapping
    patches share pixels; each pixel's contributions are added in (oh, ow, kh) order. Each thread owns whole
    samples n, so no two threads write the same element.
    The runs are taken as 1-D views (`target`, `source`) before the inner loop: indexing the 3-D and 4-D arrays
    inside it kept the compiler from vectorising the additions, and the kernel ran at 1/4 of this speed
    (docs/performance.md); the order of the additions, and so every bit of the result, is the same.
    """
    n_samples, out_h, out_w = grad_rows.shape[0], grad_rows.shape[1], grad_rows.shape[2]
    run = kernel_w * grad_x_cl.shape[3]
    grad_lines = grad_x_cl.reshape(n_samples, grad_x_cl.shape[1], -1)
    for n in prange(n_samples):
        for oh in range(out_h):
            for ow in range(out_w):
                first = ow * stride_w * grad_x_cl.shape[3]
                patch = grad_rows[n, oh, ow]
                for kh in range(kernel_h):
                    target = grad_lines[n, oh * stride_h + kh, first:first + run]
                    source = patch[kh * run:(kh + 1) * run]
                    for i in range(run):
                        target[i] += source[i]


@njit(parallel=True, cache=True)
def _filters_to_samples(product, bias, out):
    """out[n, f, :] = product[f, n, :] + bias[f]: the filters-first product back in (N, F, OH*OW)."""
    n_filters, n_samples, n_pixels = product.shape
    for n in prange(n_samples):
        for f in range(n_filters):
            for p in range(n_pixels):
                out[n, f, p] = product[f, n, p] + bias[f]


@njit(parallel=True, cache=True)
def _samples_to_filters(grad_out, g2):
    """g2[f, n, :] = grad_out[n, f, :]: G2 of the module docstring, grad_out (N, F, OH*OW) filters-first."""
    n_samples, n_filters, n_pixels = grad_out.shape
    for n in prange(n_samples):
        for f in range(n_filters):
            for p in range(n_pixels):
                g2[f, n, p] = grad_out[n, f, p]


@functools.lru_cache(maxsize=None)
def _max_pool_kernel(kernel_h, kernel_w):
    """The max-pooling forward kernel, compiled for one window size.

    With the window size a compile-time constant the compiler unrolls the two window loops into straight-line
    code. lru_cache builds one kernel per window size per process; numba's cache=True keeps the compiled code on
    disk between processes.
    """
    @njit(parallel=True, cache=True)
    def max_pool_forward(x, out, argmax, stride_h, stride_w, pad_h, pad_w):
        """out[i, oh, ow] = max of x[i] over one window; argmax holds where it was (flat index h*W + w).

        x: (planes, H, W) with planes = N*C. Ties go to the first element in row-major order (strict >).
        A NaN wins, as in PyTorch (the last NaN of the window; value != value is true only for NaN), so
        pooling never hides a diverged activation.

        Padding counts as -inf. Instead of skipping window positions outside the input (a branch per element)
        we clamp them to the nearest edge row/column, which lies in the same window: a window always overlaps
        the input. A clamped position re-reads an element the window already has, same value, same index.
        Copies of the top row / left column are read just before the originals and in the same order, copies
        of the bottom row / right column after them, so the first maximum found (max and argmax) is unchanged.
        """
        n_planes, height, width = x.shape
        out_h, out_w = out.shape[1], out.shape[2]
        for i in prange(n_planes):
            for oh in range(out_h):
                for ow in range(out_w):
                    h_first = min(max(oh * stride_h - pad_h, 0), height - 1)   # first window element inside
                    w_first = min(max(ow * stride_w - pad_w, 0), width - 1)
                    best = x[i, h_first, w_first]
                    best_index = h_first * width + w_first
                    for kh in range(kernel_h):
                        h = min(max(oh * stride_h - pad_h + kh, 0), height - 1)
                        for kw in range(kernel_w):
                            w = min(max(ow * stride_w - pad_w + kw, 0), width - 1)
                            value = x[i, h, w]
                            if value > best or value != value:
                                best = value
                                best_index = h * width + w
                    out[i, oh, ow] = best
                    argmax[i, oh, ow] = best_index

    return max_pool_forward


@njit(parallel=True, cache=True)
def _max_pool_backward(grad_out, argmax, grad_x):
    """grad_x[i, argmax[i, j]] += grad_out[i, j]: each output's gradient goes to the input that won its window.

    grad_out, argmax: (planes, OH*OW); grad_x: (planes, H*W), zero on entry. += because with stride < kernel
    one input can win several overlapping windows. A thread owns whole planes, so writes never collide.
    Returns how many argmax entries lie outside a plane (skipped; the caller reports them): checked here, in the
    one pass over argmax, rather than by two more passes (min and max) before.
    """
    n_planes, n_out = grad_out.shape
    plane_size = grad_x.shape[1]
    outside = 0
    for i in prange(n_planes):
        for j in range(n_out):
            k = argmax[i, j]
            if k < 0 or k >= plane_size:
                outside += 1
            else:
                grad_x[i, k] += grad_out[i, j]
    return outside


# ------------------------------------------------------------------------------------------- convolution
# A batch is cut into equal chunks of samples: at least MIN_CHUNKS (so that two threads multiply at once), more
# if one chunk's patch rows plus its product would take more than CHUNK_BYTES. Up to glibc's largest heap block
# (32 MB) freed memory is reused by the next call (see minimal/kernels/__init__.py); a larger block would be
# fresh memory from the OS, page-faulted on every call. Chunks depend on the sizes only, never on the thread count.
CHUNK_BYTES = 24 * 2**20
MIN_CHUNKS = 2


class _ConvShape:
    """The sizes of one convolution and how its batch is cut into chunks."""

    def __init__(self, n_samples, n_channels, input_hw, n_filters, kernel_hw, stride, padding, dtype):
        self.n, self.c, self.f = n_samples, n_channels, n_filters
        self.h, self.w = (int(size) for size in input_hw)
        self.kh, self.kw = (int(k) for k in kernel_hw)
        self.stride, self.padding, self.dtype = stride, padding, dtype
        self.out_h = conv2d_output_size(self.h, self.kh, stride[0], padding[0])
        self.out_w = conv2d_output_size(self.w, self.kw, stride[1], padding[1])
        self.patch = n_channels * self.kh * self.kw    # columns of the patch matrix = weights per filter
        self.pixels = self.out_h * self.out_w         # output pixels per sample and filter
        floats_per_sample = (self.patch + n_filters) * self.pixels
        most = max(1, CHUNK_BYTES // (floats_per_sample * dtype.itemsize))
        n_chunks = max(MIN_CHUNKS, -(-n_samples // most))
        self.per_chunk = max(1, -(-n_samples // n_chunks))    # equal chunks, the last one maybe shorter

    def chunks(self):
        """(start, stop) of consecutive chunks of samples."""
        return [(start, min(start + self.per_chunk, self.n)) for start in range(0, self.n, self.per_chunk)]

    def channels_last(self, x):
        """x (N, C, H, W) zero-padded and channels-last: (N, Hp, Wp, C)."""
        (ph, pw) = self.padding
        x_cl = np.zeros((self.n, self.h + 2 * ph, self.w + 2 * pw, self.c), dtype=self.dtype)
        _to_channels_last(x, x_cl, ph, pw)
        return x_cl

    def filters_channels_last(self, w):
        """W2 (F, KH*KW*C): each filter as one row, in the (kh, kw, c) order of the patch rows."""
        return np.ascontiguousarray(w.transpose(0, 2, 3, 1)).reshape(self.f, self.patch)

    def im2col(self, x_cl, start, stop):
        """The patch rows of samples start..stop-1 as a matrix (stop - start)*OH*OW by C*KH*KW."""
        rows = np.empty((stop - start, self.out_h, self.out_w, self.patch), dtype=self.dtype)
        _im2col(x_cl[start:stop], rows, self.kh, self.kw, *self.stride)
        return rows.reshape(-1, self.patch)

    def grad_filters_first(self, grad_out, start, stop):
        """G2 of samples start..stop-1 as a matrix F by (stop - start)*OH*OW."""
        g2 = np.empty((self.f, stop - start, self.pixels), dtype=self.dtype)
        _samples_to_filters(grad_out[start:stop].reshape(stop - start, self.f, self.pixels), g2)
        return g2.reshape(self.f, -1)


# ------------------------------------------------------------------------------------------- the products
# The chunks' matrix products run at the same time, one chunk per thread of a small pool, with OpenBLAS on one
# thread. We do not let OpenBLAS split each product over its own threads: its threads wait for each other
# spinning, and on our 2-core machine, shared with other jobs, that made a CNN training step 1.3x PyTorch's
# instead of 0.8x (docs/performance.md). A product on one thread also sums in one fixed order, so the results do
# not depend on the number of threads. OpenBLAS's thread count is process-wide (kernels/blas.py): the other
# products of a training step (the dense layers) run on one thread too, until an evaluation path sets it back.
_pools = {}   # process id -> the product threads (a forked child must not use its parent's threads)


def _product_pool():
    """The threads that run the products (as many as numba's), or None where OpenBLAS's thread count cannot be
    set (another BLAS: the products then run one after another, each on that BLAS's own threads)."""
    if os.getpid() not in _pools:
        _pools[os.getpid()] = None if blas.SET_BLAS_THREADS is None else ThreadPoolExecutor(
            numba.config.NUMBA_NUM_THREADS, thread_name_prefix="conv-product")
    return _pools[os.getpid()]


def _in_parallel(product, items):
    """[product(item) for item in items], computed at the same time on the product threads, each product on one
    OpenBLAS thread (one after another in this thread where OpenBLAS's thread count cannot be set)."""
    pool = _product_pool()
    if pool is None:
        return [product(item) for item in items]
    blas.use_one_blas_thread()
    return list(pool.map(product, items))


# ------------------------------------------------------------------------------------------- convolution
def patch_rows(x, kernel_hw, stride=(1, 1), padding=(0, 0)):
    """The patch matrix of a whole batch with one row per output pixel: rows (n, oh, ow), columns (kh, kw, c)
    (channels last, the layout the convolutions below multiply), shape (N·OH·OW, KH·KW·C), and (OH, OW)."""
    kernel_hw = as_pair(kernel_hw, "kernel size")
    stride, padding = as_pair(stride, "stride"), as_pair(padding, "padding")
    _check_stride_padding(stride, padding, "patch_rows")
    x = np.asarray(x)
    _check_ndim(x, 4, "patch_rows", "x")
    x = np.ascontiguousarray(x, dtype=_float_dtype(x))
    s = _ConvShape(x.shape[0], x.shape[1], x.shape[2:], 1, kernel_hw, stride, padding, x.dtype)
    return s.im2col(s.channels_last(x), 0, x.shape[0]), (s.out_h, s.out_w)


def im2col(x, kernel_hw, stride=(1, 1), padding=(0, 0)):
    """The patch matrix of a whole batch in the layout of conv_reference.im2col: cols[k, n, oh*OW + ow] with
    k = (c*KH + kh)*KW + kw, shape (C*KH*KW, N, OH*OW), and (OH, OW). (The convolutions below use their own
    channels-last patch rows, chunk by chunk; this is for code that wants the patches themselves.)"""
    rows, (out_h, out_w) = patch_rows(x, kernel_hw, stride, padding)
    n, c = np.shape(x)[:2]
    kh, kw = as_pair(kernel_hw, "kernel size")
    cols = rows.reshape(n, out_h * out_w, kh, kw, c).transpose(4, 2, 3, 0, 1)      # (c, kh, kw, n, pixel)
    return np.ascontiguousarray(cols).reshape(c * kh * kw, n, out_h * out_w), (out_h, out_w)


def conv2d_forward(x, w, stride=(1, 1), padding=(0, 0), bias=None, return_patches=False):
    """Cross-correlation (what deep-learning libraries call convolution), plus an optional bias per filter.

    x (N, C, H, W), w (F, C, KH, KW), bias (F,) -> out (N, F, OH, OW), OH = (H + 2*pad_h - KH) // stride_h + 1.
    return_patches: return (out, patches), the patch rows of every chunk, which conv2d_backward_weight can take
    instead of building them again (a training step keeps them from its forward to its backward pass).
    """
    stride, padding = as_pair(stride, "stride"), as_pair(padding, "padding")
    _check_stride_padding(stride, padding, "conv2d_forward")
    x, w = np.asarray(x), np.asarray(w)
    _check_ndim(x, 4, "conv2d_forward", "x")
    _check_ndim(w, 4, "conv2d_forward", "w")
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"conv2d_forward: x has {x.shape[1]} channels (x shape {x.shape}) but the filters "
                         f"expect {w.shape[1]} (w shape {w.shape})")
    dtype = _float_dtype(x, w)
    s = _ConvShape(x.shape[0], x.shape[1], x.shape[2:], w.shape[0], w.shape[2:], stride, padding, dtype)
    bias = np.zeros(s.f, dtype) if bias is None else np.ascontiguousarray(bias, dtype=dtype).reshape(s.f)
    x_cl, filters = s.channels_last(x), s.filters_channels_last(w.astype(dtype, copy=False))
    chunks = s.chunks()
    rows = [s.im2col(x_cl, start, stop) for start, stop in chunks]
    products = _in_parallel(lambda chunk_rows: filters @ chunk_rows.T, rows)           # W2 @ rows.T
    out = np.empty((s.n, s.f, s.pixels), dtype=dtype)
    for (start, stop), product in zip(chunks, products):
        _filters_to_samples(product.reshape(s.f, stop - start, s.pixels), bias, out[start:stop])
    out = out.reshape(s.n, s.f, s.out_h, s.out_w)
    return (out, rows) if return_patches else out


def conv2d_backward_input(grad_out, w, input_hw, stride, padding):
    """Gradient of conv2d_forward with respect to x: (N, F, OH, OW), (F, C, KH, KW) -> (N, C, H, W)."""
    stride, padding = as_pair(stride, "stride"), as_pair(padding, "padding")
    _check_stride_padding(stride, padding, "conv2d_backward_input")
    grad_out, w = np.asarray(grad_out), np.asarray(w)
    _check_ndim(grad_out, 4, "conv2d_backward_input", "grad_out")
    _check_ndim(w, 4, "conv2d_backward_input", "w")
    dtype = _float_dtype(grad_out, w)
    s = _ConvShape(grad_out.shape[0], w.shape[1], input_hw, w.shape[0], w.shape[2:], stride, padding, dtype)
    if grad_out.shape[1:] != (s.f, s.out_h, s.out_w):
        raise ValueError(f"conv2d_backward_input: grad_out shape {grad_out.shape} does not match w shape "
                         f"{w.shape} on input {(s.h, s.w)}: expected (N, {s.f}, {s.out_h}, {s.out_w})")
    grad_out = np.ascontiguousarray(grad_out, dtype=dtype)
    filters = s.filters_channels_last(w.astype(dtype, copy=False))
    chunks = s.chunks()
    g2s = [s.grad_filters_first(grad_out, start, stop) for start, stop in chunks]
    grad_rows = _in_parallel(lambda g2: g2.T @ filters, g2s)                           # G2.T @ W2
    (ph, pw) = padding
    grad_x_cl = np.zeros((s.n, s.h + 2 * ph, s.w + 2 * pw, s.c), dtype=dtype)
    for (start, stop), chunk_grad_rows in zip(chunks, grad_rows):
        _col2im(chunk_grad_rows.reshape(stop - start, s.out_h, s.out_w, s.patch), grad_x_cl[start:stop],
                s.kh, s.kw, *stride)
    grad_x = np.empty((s.n, s.c, s.h, s.w), dtype=dtype)
    _to_channels_first(grad_x_cl, grad_x, ph, pw)                 # the gradient on the padding is dropped
    return grad_x


def conv2d_backward_weight(grad_out, x, kernel_hw, stride, padding, patches=None):
    """Gradient of conv2d_forward with respect to w: (N, F, OH, OW), (N, C, H, W) -> (F, C, KH, KW).
    patches: the patch rows conv2d_forward returned for this x (return_patches=True), or None to build them."""
    stride, padding = as_pair(stride, "stride"), as_pair(padding, "padding")
    _check_stride_padding(stride, padding, "conv2d_backward_weight")
    grad_out, x = np.asarray(grad_out), np.asarray(x)
    _check_ndim(grad_out, 4, "conv2d_backward_weight", "grad_out")
    _check_ndim(x, 4, "conv2d_backward_weight", "x")
    dtype = _float_dtype(grad_out, x)
    s = _ConvShape(x.shape[0], x.shape[1], x.shape[2:], grad_out.shape[1], kernel_hw, stride, padding, dtype)
    if grad_out.shape[0] != x.shape[0] or grad_out.shape[2:] != (s.out_h, s.out_w):
        raise ValueError(f"conv2d_backward_weight: grad_out shape {grad_out.shape} does not match x shape "
                         f"{x.shape} with kernel {(s.kh, s.kw)}: expected ({s.n}, F, {s.out_h}, {s.out_w})")
    grad_out = np.ascontiguousarray(grad_out, dtype=dtype)
    chunks = s.chunks()
    if patches is None:
        x_cl = s.channels_last(x)
        patches = [s.im2col(x_cl, start, stop) for start, stop in chunks]
    pairs = [(s.grad_filters_first(grad_out, start, stop), rows) for (start, stop), rows in zip(chunks, patches)]
    per_chunk = _in_parallel(lambda pair: pair[0] @ pair[1], pairs)   # G2 @ rows: sums samples and pixels
    grad_filters = per_chunk[0]
    for chunk_sum in per_chunk[1:]:                                   # added in chunk order, on any thread count
        grad_filters = grad_filters + chunk_sum
    return np.ascontiguousarray(grad_filters.reshape(s.f, s.kh, s.kw, s.c).transpose(0, 3, 1, 2))


# ------------------------------------------------------------------------------------------- max-pooling
def max_pool2d_forward(x, kernel=(2, 2), stride=(2, 2), padding=(0, 0), ceil_mode=False):
    """Max over (KH, KW) windows of x (N, C, H, W). Returns (out, argmax), both (N, C, OH, OW).

    argmax[n, c, oh, ow] is the flat index h*W + w, within plane (n, c), of the winning input element.
    Padding counts as -inf; it may be at most half the kernel (as in PyTorch), so no window is all padding.
    """
    kernel, stride, padding = as_pair(kernel, "kernel"), as_pair(stride, "stride"), as_pair(padding, "padding")
    _check_stride_padding(stride, padding, "max_pool2d_forward")
    if min(kernel) < 1 or padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"max_pool2d_forward: kernel must be >= 1 and padding at most half the kernel, "
                         f"got kernel={kernel}, padding={padding}")
    x = np.asarray(x)
    _check_ndim(x, 4, "max_pool2d_forward", "x")
    x = np.ascontiguousarray(x, dtype=_float_dtype(x))
    n, c, height, width = x.shape
    out_h = pool_output_size(height, kernel[0], stride[0], padding[0], ceil_mode)
    out_w = pool_output_size(width, kernel[1], stride[1], padding[1], ceil_mode)
    out = np.empty((n * c, out_h, out_w), dtype=x.dtype)
    argmax = np.empty((n * c, out_h, out_w), dtype=np.int64)
    _max_pool_kernel(*kernel)(x.reshape(n * c, height, width), out, argmax, *stride, *padding)
    return out.reshape(n, c, out_h, out_w), argmax.reshape(n, c, out_h, out_w)


def max_pool2d_backward(grad_out, argmax, input_shape):
    """Gradient of max_pool2d_forward with respect to x: route each grad_out entry to its argmax input."""
    grad_out, argmax = np.asarray(grad_out), np.asarray(argmax)
    input_shape = tuple(int(s) for s in input_shape)
    if grad_out.shape != argmax.shape or len(input_shape) != 4 or grad_out.ndim != 4 \
            or grad_out.shape[:2] != input_shape[:2]:
        raise ValueError(f"max_pool2d_backward: grad_out shape {grad_out.shape}, argmax shape {argmax.shape} "
                         f"and input shape {input_shape} do not match (need equal (N, C, OH, OW) and same N, C)")
    n, c, height, width = input_shape
    planes = n * c
    grad_out = np.ascontiguousarray(grad_out, dtype=_float_dtype(grad_out))
    argmax = np.ascontiguousarray(argmax, dtype=np.int64)
    grad_x = np.zeros((planes, height * width), dtype=grad_out.dtype)
    if _max_pool_backward(grad_out.reshape(planes, -1), argmax.reshape(planes, -1), grad_x):
        raise ValueError(f"max_pool2d_backward: argmax holds indices outside a {height}x{width} plane "
                         f"(input shape {input_shape}); was it made by max_pool2d_forward on this input?")
    return grad_x.reshape(input_shape)
