"""numba kernel for the interval matrix product x @ W of 2-D intervals: bounds for every x̲ ≤ x ≤ x̄, W̲ ≤ W ≤ W̄.

The plain NumPy reference is `bilinear_bounds` in minimal/interval.py (tested equal). Per term x·w, with the
positive and negative parts a⁺ = max(a, 0), a⁻ = min(a, 0), and W[k] the k-th row of W:

    lower = Σ_k  x̲⁺_k W̲⁺[k] + x̄⁺_k W̲⁻[k] + x̲⁻_k W̄⁺[k] + x̄⁻_k W̄⁻[k]
    upper = Σ_k  x̄⁺_k W̄⁺[k] + x̲⁺_k W̄⁻[k] + x̄⁻_k W̲⁺[k] + x̲⁻_k W̲⁻[k]

For a term with x ≥ 0 (x̲⁻ = x̄⁻ = 0) this is x̲ W̲⁺ + x̄ W̲⁻ = x̲ W̲ + (x̄ − x̲) W̲⁻ for the lower bound and
x̄ W̄ − (x̄ − x̲) W̄⁻ for the upper one: half the arithmetic, so such terms get their own loop.

Why a kernel: in the LSNN, x is the spike interval z_{t−1} ∈ {[0,0], [0,1], [1,1]}, once per time step. A term
with x̲_k = x̄_k = 0 adds nothing, and in most steps most neurons surely stay silent: skipping them saves work, as
the fused LSNN kernel does for points. It also keeps BLAS out of the time loop: BLAS's threads and numba's
compete for the same cores (see kernels/lsnn.py), and on a busy 2-core machine we measured a BLAS product of
this size (100×256 @ 256×256) anywhere between 0.15 and 100 ms. The kernel is serial for the same reason: it
runs twice per time step on small arrays, and a parallel loop must wait until every thread got a core.
"""
import numpy as np
from numba import njit


def matmul_bounds(x_lo, x_hi, w_lo, w_hi):
    """(lower, upper) of x @ W for x̲ ≤ x̄ of shape (N, K) and W̲ ≤ W̄ of shape (K, M)."""
    dtype = np.result_type(x_lo, x_hi, w_lo, w_hi)
    arrays = tuple(np.ascontiguousarray(a, dtype=dtype) for a in (x_lo, x_hi, w_lo, w_hi))
    lower = np.empty((x_lo.shape[0], w_lo.shape[1]), dtype)
    upper = np.empty_like(lower)
    _matmul_bounds(*arrays, lower, upper)
    return lower, upper


@njit(cache=True)
def _matmul_bounds(x_lo, x_hi, w_lo, w_hi, lower, upper):
    """Fills lower and upper (N, M), row by row of x, skipping its zero entries."""
    n_rows, n_inner = x_lo.shape
    n_cols = w_lo.shape[1]
    zero = lower.dtype.type(0)
    for n in range(n_rows):
        lower[n, :] = zero
        upper[n, :] = zero
        for k in range(n_inner):
            x_low, x_high = x_lo[n, k], x_hi[n, k]
            if x_low == zero and x_high == zero:        # the term adds nothing
                continue
            if x_low >= zero:                           # x ≥ 0: spikes, ReLU outputs, firing rates
                width = x_high - x_low
                for j in range(n_cols):
                    lower[n, j] += x_low * w_lo[k, j] + width * min(w_lo[k, j], zero)
                    upper[n, j] += x_high * w_hi[k, j] - width * min(w_hi[k, j], zero)
                continue
            lo_pos, hi_pos = max(x_low, zero), max(x_high, zero)            # x̲⁺, x̄⁺
            lo_neg, hi_neg = min(x_low, zero), min(x_high, zero)            # x̲⁻, x̄⁻
            for j in range(n_cols):
                wl_pos, wl_neg = max(w_lo[k, j], zero), min(w_lo[k, j], zero)  # W̲⁺, W̲⁻
                wh_pos, wh_neg = max(w_hi[k, j], zero), min(w_hi[k, j], zero)  # W̄⁺, W̄⁻
                lower[n, j] += lo_pos * wl_pos + hi_pos * wl_neg + lo_neg * wh_pos + hi_neg * wh_neg
                upper[n, j] += hi_pos * wh_pos + lo_pos * wh_neg + hi_neg * wl_pos + lo_neg * wl_neg
