"""Numba kernels for 2-D convolution and max-pooling, NCHW layout, float32 or float64.

Convolution as a matrix product (im2col)
----------------------------------------
Written from its definition (conv_reference.py) a convolution runs far below what the CPU can do. Instead we
copy every input patch that one output pixel sees into a column of a "patch matrix" `cols`, and let BLAS do
all the multiply-adds. With the input zero-padded to (N, C, Hp, Wp) and output size (OH, OW):

    cols[k, n, p] = x_padded[n, c, oh*SH + kh, ow*SW + kw]
        k = (c*KH + kh)*KW + kw    which weight of a filter     (C*KH*KW rows)
        n                          which sample
        p = oh*OW + ow             which output pixel

Viewed as a matrix, cols is (C*KH*KW, N*OH*OW): one column per (sample, output pixel). With the filters as
the rows of W2 = w.reshape(F, C*KH*KW) and G2[f, (n, p)] = grad_out[n, f, p] (grad_out with its sample and
filter axes swapped):

    forward          product  = W2 @ cols      (F, N*OH*OW), then out[n, f, p] = product[f, (n, p)]
    grad of weight   grad_W2  = G2 @ cols.T    (F, C*KH*KW): sums over samples and output pixels at once
    grad of input    grad_cols = W2.T @ G2     then col2im adds every entry of grad_cols back onto the input
                                               pixel it was copied from (a pixel sits in several patches)

So both backward passes are matrix products too: all heavy arithmetic runs in BLAS, and the numba kernels
only move data, in parallel over the samples.

What this file changes for speed, compared with the plain versions in conv_reference.py (same functions, same
results):
- the sums over kernel offsets become one matrix product per chunk of a few samples (CHUNK_BYTES below), so
  that the chunk's patch matrix is still in the CPU cache when BLAS reads it;
- im2col and col2im are numba loops that index with loop variables (never negative, so numba drops its
  negative-index checks), with a separate contiguous inner loop for stride 1, on input padded once beforehand;
- max-pooling is one loop over windows, parallel over the N*C planes, compiled once per window size (so the
  window loops unroll), remembering where each maximum came from (argmax) for the backward.
All kernels are compiled with cache=True (the first call in a fresh environment compiles, a few seconds); with
NUMBA_DISABLE_JIT=1 they run as plain Python, correct but only for tiny shapes.

Measurements, and the variants we tried and rejected: docs/performance.md, "Convolution kernels".
"""
import functools

import numpy as np
from numba import njit, prange


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
def _im2col(x, cols, kernel_h, kernel_w, stride_h, stride_w, out_h, out_w):
    """Fill cols[k, n, oh*out_w + ow] = x[n, c, oh*stride_h + kh, ow*stride_w + kw], k = (c*KH + kh)*KW + kw.

    x: zero-padded input (N, C, Hp, Wp). cols: (C*KH*KW, N, out_h*out_w), every entry overwritten.
    """
    n_samples, n_channels = x.shape[0], x.shape[1]
    for n in prange(n_samples):                       # samples are independent: one per thread at a time
        for c in range(n_channels):
            for kh in range(kernel_h):
                for kw in range(kernel_w):
                    k = (c * kernel_h + kh) * kernel_w + kw
                    for oh in range(out_h):
                        ih = oh * stride_h + kh       # input row seen by this output row
                        p0 = oh * out_w               # first output pixel of this row
                        if stride_w == 1:                 # contiguous reads: copied with SIMD
                            for ow in range(out_w):
                                cols[k, n, p0 + ow] = x[n, c, ih, ow + kw]
                        else:
                            for ow in range(out_w):
                                cols[k, n, p0 + ow] = x[n, c, ih, ow * stride_w + kw]


@njit(parallel=True, cache=True)
def _col2im(cols, grad_x, kernel_h, kernel_w, stride_h, stride_w, out_h, out_w):
    """The adjoint of _im2col: grad_x[n, c, oh*stride_h + kh, ow*stride_w + kw] += cols[k, n, oh*out_w + ow].

    grad_x: zero-padded input gradient (N, C, Hp, Wp), accumulated into (+=) because overlapping patches
    share pixels. Each thread owns whole samples n, so no two threads write the same element.
    """
    n_samples, n_channels = grad_x.shape[0], grad_x.shape[1]
    for n in prange(n_samples):
        for c in range(n_channels):
            for kh in range(kernel_h):
                for kw in range(kernel_w):
                    k = (c * kernel_h + kh) * kernel_w + kw
                    for oh in range(out_h):
                        ih = oh * stride_h + kh
                        p0 = oh * out_w
                        if stride_w == 1:
                            for ow in range(out_w):
                                grad_x[n, c, ih, ow + kw] += cols[k, n, p0 + ow]
                        else:
                            for ow in range(out_w):
                                grad_x[n, c, ih, ow * stride_w + kw] += cols[k, n, p0 + ow]


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
    """
    n_planes, n_out = grad_out.shape
    for i in prange(n_planes):
        for j in range(n_out):
            grad_x[i, argmax[i, j]] += grad_out[i, j]


# ------------------------------------------------------------------------------------------- convolution
# Samples per chunk are chosen so that one chunk's patch matrix plus its product take about this many bytes:
# small enough to stay in the CPU cache between im2col and the product.
CHUNK_BYTES = 4 * 2**20


class _ConvShape:
    """The sizes of one convolution and how its batch is cut into chunks."""

    def __init__(self, n_samples, n_channels, input_hw, n_filters, kernel_hw, stride, padding, dtype):
        self.n, self.c, self.f = n_samples, n_channels, n_filters
        self.kh, self.kw = (int(k) for k in kernel_hw)
        self.stride, self.padding, self.dtype = stride, padding, dtype
        self.out_h = conv2d_output_size(input_hw[0], self.kh, stride[0], padding[0])
        self.out_w = conv2d_output_size(input_hw[1], self.kw, stride[1], padding[1])
        self.patch = n_channels * self.kh * self.kw    # rows of the patch matrix = weights per filter
        self.pixels = self.out_h * self.out_w         # output pixels per sample and filter
        floats_per_sample = (self.patch + n_filters) * self.pixels
        self.per_chunk = max(1, min(n_samples, CHUNK_BYTES // (floats_per_sample * dtype.itemsize)))

    def chunks(self):
        """(start, stop) of consecutive chunks of samples."""
        for start in range(0, self.n, self.per_chunk):
            yield start, min(start + self.per_chunk, self.n)

    def work_buffer(self, rows):
        """Flat scratch memory for a (rows, per_chunk, pixels) array, allocated once per call; see _leading."""
        return np.empty(rows * self.per_chunk * self.pixels, dtype=self.dtype)

    def im2col(self, x_padded, start, stop, buffer):
        """The patch matrix (C*KH*KW, stop - start, OH*OW) of samples start..stop-1, written into buffer."""
        cols = _leading(buffer, (self.patch, stop - start, self.pixels))
        _im2col(x_padded[start:stop], cols, self.kh, self.kw, *self.stride, self.out_h, self.out_w)
        return cols


def _leading(buffer, shape):
    """The first prod(shape) entries of a flat buffer as a contiguous array of that shape (a view).

    The last chunk may be shorter than the others; taking the front of the buffer keeps it contiguous.
    """
    return buffer[:int(np.prod(shape))].reshape(shape)


def _pad_input(x, pad_h, pad_w):
    """Zero-pad the two spatial axes (no copy when there is no padding)."""
    if pad_h == 0 and pad_w == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (pad_h, pad_h), (pad_w, pad_w)))


def _filters_first(grad_out):
    """G2 (F, n*OH*OW) from grad_out (n, F, OH, OW): the sample and filter axes swapped, as one matrix."""
    n, f = grad_out.shape[:2]
    return np.ascontiguousarray(grad_out.reshape(n, f, -1).transpose(1, 0, 2)).reshape(f, -1)


def im2col(x, kernel_hw, stride=(1, 1), padding=(0, 0)):
    """The patch matrix of a whole batch, cols[k, n, p] as in the module docstring: shape (C*KH*KW, N, OH*OW),
    and (OH, OW). (The convolutions below cut it into chunks; this is for code that wants the patches themselves,
    such as the PCM crossbar of minimal/pcm.py.)"""
    kernel_hw = as_pair(kernel_hw, "kernel size")
    stride, padding = as_pair(stride, "stride"), as_pair(padding, "padding")
    _check_stride_padding(stride, padding, "im2col")
    x = np.asarray(x)
    _check_ndim(x, 4, "im2col", "x")
    x = np.ascontiguousarray(x, dtype=_float_dtype(x))
    n, c, height, width = x.shape
    out_h = conv2d_output_size(height, kernel_hw[0], stride[0], padding[0])
    out_w = conv2d_output_size(width, kernel_hw[1], stride[1], padding[1])
    cols = np.empty((c * kernel_hw[0] * kernel_hw[1], n, out_h * out_w), dtype=x.dtype)
    _im2col(_pad_input(x, *padding), cols, *kernel_hw, *stride, out_h, out_w)
    return cols, (out_h, out_w)


def conv2d_forward(x, w, stride=(1, 1), padding=(0, 0)):
    """Cross-correlation (what deep-learning libraries call convolution), no bias.

    x (N, C, H, W), w (F, C, KH, KW) -> out (N, F, OH, OW), OH = (H + 2*pad_h - KH) // stride_h + 1.
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
    x, w = np.ascontiguousarray(x, dtype=dtype), np.ascontiguousarray(w, dtype=dtype)
    s = _ConvShape(x.shape[0], x.shape[1], x.shape[2:], w.shape[0], w.shape[2:], stride, padding, dtype)
    x_padded = _pad_input(x, *padding)
    filters = w.reshape(s.f, s.patch)                                 # W2: one filter per row
    cols_buffer, product_buffer = s.work_buffer(s.patch), s.work_buffer(s.f)
    out = np.empty((s.n, s.f, s.pixels), dtype=dtype)
    for start, stop in s.chunks():
        cols = s.im2col(x_padded, start, stop, cols_buffer)
        product = _leading(product_buffer, (s.f, stop - start, s.pixels))
        np.matmul(filters, cols.reshape(s.patch, -1), out=product.reshape(s.f, -1))
        out[start:stop] = product.transpose(1, 0, 2)                 # (F, chunk, P) -> (chunk, F, P)
    return out.reshape(s.n, s.f, s.out_h, s.out_w)


def conv2d_backward_input(grad_out, w, input_hw, stride, padding):
    """Gradient of conv2d_forward with respect to x: (N, F, OH, OW), (F, C, KH, KW) -> (N, C, H, W)."""
    stride, padding = as_pair(stride, "stride"), as_pair(padding, "padding")
    _check_stride_padding(stride, padding, "conv2d_backward_input")
    grad_out, w = np.asarray(grad_out), np.asarray(w)
    _check_ndim(grad_out, 4, "conv2d_backward_input", "grad_out")
    _check_ndim(w, 4, "conv2d_backward_input", "w")
    height, width = (int(size) for size in input_hw)
    dtype = _float_dtype(grad_out, w)
    s = _ConvShape(grad_out.shape[0], w.shape[1], (height, width), w.shape[0], w.shape[2:], stride, padding, dtype)
    if grad_out.shape[1:] != (s.f, s.out_h, s.out_w):
        raise ValueError(f"conv2d_backward_input: grad_out shape {grad_out.shape} does not match w shape "
                         f"{w.shape} on input {(height, width)}: expected (N, {s.f}, {s.out_h}, {s.out_w})")
    grad_out, w = np.asarray(grad_out, dtype=dtype), np.ascontiguousarray(w, dtype=dtype)
    filters_t = w.reshape(s.f, s.patch).T                             # W2.T (C*KH*KW, F), a view
    grad_cols_buffer = s.work_buffer(s.patch)
    grad_x = np.zeros((s.n, s.c, height + 2 * padding[0], width + 2 * padding[1]), dtype=dtype)
    for start, stop in s.chunks():
        grad_cols = _leading(grad_cols_buffer, (s.patch, stop - start, s.pixels))
        np.matmul(filters_t, _filters_first(grad_out[start:stop]), out=grad_cols.reshape(s.patch, -1))
        _col2im(grad_cols, grad_x[start:stop], s.kh, s.kw, *stride, s.out_h, s.out_w)
    if padding != (0, 0):  # drop the gradient that fell on the zero padding
        grad_x = np.ascontiguousarray(grad_x[:, :, padding[0]:padding[0] + height, padding[1]:padding[1] + width])
    return grad_x


def conv2d_backward_weight(grad_out, x, kernel_hw, stride, padding):
    """Gradient of conv2d_forward with respect to w: (N, F, OH, OW), (N, C, H, W) -> (F, C, KH, KW)."""
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
    grad_out, x = np.asarray(grad_out, dtype=dtype), np.ascontiguousarray(x, dtype=dtype)
    x_padded = _pad_input(x, *padding)
    cols_buffer = s.work_buffer(s.patch)
    grad_w = np.zeros((s.f, s.patch), dtype=dtype)
    for start, stop in s.chunks():
        cols = s.im2col(x_padded, start, stop, cols_buffer)
        # (F, chunk*P) @ (chunk*P, C*KH*KW): sums over the chunk's samples and output pixels
        grad_w += _filters_first(grad_out[start:stop]) @ cols.reshape(s.patch, -1).T
    return grad_w.reshape(s.f, s.c, s.kh, s.kw)


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
    if argmax.size and (argmax.min() < 0 or argmax.max() >= height * width):  # the kernel does not check bounds
        raise ValueError(f"max_pool2d_backward: argmax holds indices outside a {height}x{width} plane "
                         f"(input shape {input_shape}); was it made by max_pool2d_forward on this input?")
    grad_x = np.zeros((planes, height * width), dtype=grad_out.dtype)
    _max_pool_backward(grad_out.reshape(planes, -1), argmax.reshape(planes, -1), grad_x)
    return grad_x.reshape(input_shape)
