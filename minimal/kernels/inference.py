"""numba kernels of the CNN's evaluation path (minimal/nn/inference.py): convolution, 2×2 max-pooling, bias and
ReLU fused, forward only, images in channels-last layout (N, H, W, C).

Why channels last. The training kernels (conv.py) keep PyTorch's (N, C, H, W) and build the patch matrix with one
column per output pixel, so that the product comes out filters-first and has to be transposed back into (N, F, …).
Evaluation needs no backward pass, so it can choose the layout that suits the forward pass alone: with the
channels last, one patch (a row of the patch matrix) is KH runs of KW·C consecutive numbers of the input, and the
product patches @ W comes out as (N, OH, OW, F), already the channels-last input of the next layer.

The two convolutions of the paper's CNN differ a lot:
  conv1  1 input channel: each output is a sum of only 16 products. BLAS is slow at such a short inner dimension
         (measured: ~1/3 of its speed on conv2's products), so `conv_pool_relu` computes it directly and pools
         at once: every pooled output computes the four convolution outputs of its 2×2 window as four independent
         sums (which the CPU can overlap) and keeps their maximum. The convolution output is never stored.
  conv2  64 input channels, 1024 products per output: `im2col` builds the patch matrix of a few images (small
         enough to stay in the CPU cache), BLAS multiplies, `bias_pool_relu` pools.

Pooling is the CNN's: 2×2 windows, stride 2, ceil mode (a last partial window is kept: 25 -> 13). A partial
window re-reads its last row or column instead of padding with −inf; the maximum is the same.
The bias is added after the maximum: max(a + b, c + b) = max(a, c) + b exactly in floating point (rounding is
monotone), so this equals ReLU(max-pool(conv + b)) of the autodiff path, with one addition per pooled output.

All kernels are parallel over images (each thread owns whole images, so the result does not depend on the
number of threads) and compiled with cache=True. Their NumPy references are in tests/test_inference.py.
"""
import functools

import numpy as np
from numba import njit, prange

# Allow fused multiply-add (one rounding instead of two; results change in the last bit only). No other fast-math
# flag: sums keep their order (the same on any machine and thread count), and a NaN still wins the max-pool.
CONTRACT = {"contract"}


def pooled_size(size):
    """Output length of 2×2, stride-2, ceil-mode pooling along one axis: 25 -> 13, 10 -> 5."""
    return (size + 1) // 2


@functools.lru_cache(maxsize=None)
def conv_pool_relu_kernel(kernel_h, kernel_w, channels):
    """The fused kernel for one kernel size and channel count (compile-time constants, so that the sum over the
    kernel_h·kernel_w·channels products unrolls into straight-line code; one compilation per shape, cached).

    kernel(x, weights, bias, out):
      x       (N, H, W, C) images, channels last
      weights (KH·KW·C, F): row k = (kh·KW + kw)·C + c holds the weights of that input position for every filter
      bias    (F,)
      out     (N, PH, PW, F) = ReLU(max over each 2×2 window of (x ⋆ w) + bias), PH = ceil((H − KH + 1) / 2)
    """
    taps = kernel_h * kernel_w * channels

    @njit(parallel=True, cache=True, fastmath=CONTRACT)
    def conv_pool_relu(x, weights, bias, out):
        n_images, height, width = x.shape[0], x.shape[1], x.shape[2]
        n_filters = weights.shape[1]
        out_h, out_w = height - kernel_h + 1, width - kernel_w + 1      # the convolution's output size
        zero = x.dtype.type(0)
        for n in prange(n_images):
            patches = np.empty((4, taps), x.dtype)                       # the four patches of one 2×2 window
            for py in range(out.shape[1]):
                for px in range(out.shape[2]):
                    for corner in range(4):
                        oy = min(2 * py + corner // 2, out_h - 1)        # a partial window re-reads its edge
                        ox = min(2 * px + corner % 2, out_w - 1)
                        k = 0
                        for kh in range(kernel_h):
                            for kw in range(kernel_w):
                                for c in range(channels):
                                    patches[corner, k] = x[n, oy + kh, ox + kw, c]
                                    k += 1
                    for f in range(n_filters):                           # SIMD over the filters
                        s0 = s1 = s2 = s3 = zero
                        for k in range(taps):
                            s0 += patches[0, k] * weights[k, f]
                            s1 += patches[1, k] * weights[k, f]
                            s2 += patches[2, k] * weights[k, f]
                            s3 += patches[3, k] * weights[k, f]
                        out[n, py, px, f] = max(max(max(s0, s1), max(s2, s3)) + bias[f], zero)

    return conv_pool_relu


@njit(parallel=True, cache=True)
def im2col(x, cols):
    """cols[n, oy, ox, kh, kw, c] = x[n, oy + kh, ox + kw, c]: the patch matrix, one row (KH·KW·C numbers) per
    output pixel, when cols (N, OH, OW, KH, KW, C) is viewed as (N·OH·OW, KH·KW·C). x: (N, H, W, C)."""
    out_h, out_w, kernel_h, kernel_w, channels = cols.shape[1:]
    for n in prange(x.shape[0]):
        for oy in range(out_h):
            for ox in range(out_w):
                for kh in range(kernel_h):
                    for kw in range(kernel_w):
                        for c in range(channels):                        # a run of KW·C consecutive numbers
                            cols[n, oy, ox, kh, kw, c] = x[n, oy + kh, ox + kw, c]


@njit(parallel=True, cache=True)
def bias_pool_relu(y, bias, out):
    """out[n, f, py, px] = ReLU(max of y[n, 2py:2py+2, 2px:2px+2, f] + bias[f]) for y (N, OH, OW, F).

    The output is written channels first, (N, F, PH, PW): flattened, it is the order of the autodiff path's
    flatten, so the dense layers after it take the model's own weights."""
    out_h, out_w, n_filters = y.shape[1], y.shape[2], y.shape[3]
    zero = y.dtype.type(0)
    for n in prange(y.shape[0]):
        for py in range(out.shape[2]):
            y0, y1 = 2 * py, min(2 * py + 1, out_h - 1)
            for px in range(out.shape[3]):
                x0, x1 = 2 * px, min(2 * px + 1, out_w - 1)
                for f in range(n_filters):
                    best = max(max(y[n, y0, x0, f], y[n, y0, x1, f]), max(y[n, y1, x0, f], y[n, y1, x1, f]))
                    out[n, f, py, px] = max(best + bias[f], zero)
