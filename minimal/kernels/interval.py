"""numba kernels for interval arithmetic (minimal/interval.py): the matrix product x @ W of 2-D intervals, and the
elementwise bounds that NumPy would compute in several passes each.

Their plain NumPy references are in tests/test_interval.py (and `bilinear_bounds` in minimal/interval.py for the
product); the kernels are tested equal to them.

Why kernels: the LSNN's interval pass runs ~15 interval operations per time step on arrays of (batch × neurons) =
100 × 256 entries, 100 steps in a row. At that size a NumPy pass costs a few microseconds, and an interval product
a·b in NumPy is ten of them (four corner products, three minima, three maxima). A numba ufunc that computes a
bound in one pass is several times faster. (The ufuncs compute one bound each: numba compiles a ufunc with one
output only. A numba function filling both bounds would read the inputs once instead of twice, but calling it
from Python costs ~5 µs more than a ufunc, which is more than it saves.)

The matrix product. Per term x·w, with the positive and negative parts a⁺ = max(a, 0), a⁻ = min(a, 0), and W[k]
the k-th row of W:

    lower = Σ_k  x̲⁺_k W̲⁺[k] + x̄⁺_k W̲⁻[k] + x̲⁻_k W̄⁺[k] + x̄⁻_k W̄⁻[k]
    upper = Σ_k  x̄⁺_k W̄⁺[k] + x̲⁺_k W̄⁻[k] + x̄⁻_k W̲⁺[k] + x̲⁻_k W̲⁻[k]

For a term with x ≥ 0 (x̲⁻ = x̄⁻ = 0) this is x̲ W̲ + (x̄ − x̲) W̲⁻ for the lower bound and x̄ W̄ − (x̄ − x̲) W̄⁻ for
the upper one; with x ≤ 0 (x̲⁺ = x̄⁺ = 0) it is x̄ W̄ − (x̄ − x̲) W̄⁺ and x̲ W̲ + (x̄ − x̲) W̲⁺: half the arithmetic, so
such terms get their own loops.

In the LSNN, x is the spike interval z_{t−1}, once per time step, and every entry is [0,0], [0,1] or [1,1]. Then
the products are selections of rows of W, no multiplication needed:

    lower = Σ_{k: x̲_k = 1} W̲⁺[k] + Σ_{k: x̄_k = 1} W̲⁻[k]      upper = Σ_{k: x̄_k = 1} W̄⁺[k] + Σ_{k: x̲_k = 1} W̄⁻[k]

Sure spikes (x̲ = 1) are few, as in the point network, but once the weights are uncertain most neurons *may*
spike (x̄ = 1): at ζ = 1e-3, 94 % of the ECG LSNN's spikes may happen and 1 % surely do. So the kernel sums a row
of x one of two ways, whichever visits fewer rows of W (_binary_row): the rows k with x̄_k = 1, or, when most
x̄_k are 1, the sum over all rows of W (computed once per product) minus the rows with x̄_k = 0. Both ways add the
sign split's terms, in another order: the bounds agree with it up to rounding.

The product kernel keeps BLAS out of the LSNN's time loop: BLAS's threads and numba's compete for the same cores
(see kernels/lsnn.py), and on a busy 2-core machine we measured a BLAS product of this size (100×256 @ 256×256)
anywhere between 0.15 and 100 ms. All kernels here are serial for the same reason: they run ~15 times per time
step on small arrays, and a parallel loop must wait until every thread got a core.
"""
import functools

import numpy as np
from numba import njit, vectorize

GENERAL, FEW_ONES, MANY_ONES = 0, 1, 2   # the kinds of rows of x: any values, or 0/1 intervals (see _row_kind)


# ---------------------------------------------------------------------------------------------------- x @ W
def matmul_bounds(x_lo, x_hi, w_lo, w_hi):
    """(lower, upper) of x @ W for x̲ ≤ x̄ of shape (N, K) and W̲ ≤ W̄ of shape (K, M)."""
    dtype = np.result_type(x_lo, x_hi, w_lo, w_hi)
    lower = np.empty((x_lo.shape[0], w_lo.shape[1]), dtype)
    upper = np.empty_like(lower)
    _matmul_bounds(x_lo.astype(dtype, copy=False), x_hi.astype(dtype, copy=False),   # x may be strided (x[:, t])
                   np.ascontiguousarray(w_lo, dtype), np.ascontiguousarray(w_hi, dtype), lower, upper)
    return lower, upper


@njit(cache=True)
def _matmul_bounds(x_lo, x_hi, w_lo, w_hi, lower, upper):
    """Fills lower and upper (N, M), row by row of x: rows of 0/1 intervals by selecting rows of W, others by
    the sign split, skipping zero entries."""
    n_rows, n_inner = x_lo.shape
    kinds = np.empty(n_rows, np.int8)
    for n in range(n_rows):
        kinds[n] = _row_kind(x_lo[n], x_hi[n])
    rows = np.empty(n_inner, np.int64)                  # positions k of the rows of W to add
    lo_neg_sums = np.zeros(w_lo.shape[1], lower.dtype)  # Σ_k W̲⁻[k], needed for MANY_ONES rows only
    hi_pos_sums = np.zeros(w_lo.shape[1], lower.dtype)  # Σ_k W̄⁺[k]
    if np.any(kinds == MANY_ONES):
        rows[:] = np.arange(n_inner)
        _add_clipped_rows(w_lo, rows, n_inner, -np.inf, 0, 1, lo_neg_sums)
        _add_clipped_rows(w_hi, rows, n_inner, 0, np.inf, 1, hi_pos_sums)
    for n in range(n_rows):
        if kinds[n] == GENERAL:
            _general_row(x_lo[n], x_hi[n], w_lo, w_hi, lower[n], upper[n])
        else:
            _binary_row(x_lo[n], x_hi[n], w_lo, w_hi, kinds[n] == MANY_ONES, lo_neg_sums, hi_pos_sums, rows,
                        lower[n], upper[n])


@njit(cache=True)
def _row_kind(x_lo, x_hi):
    """For a row of 0/1 intervals ([0,0], [0,1], [1,1]) the cheaper way to sum it (see _binary_row): MANY_ONES if
    it visits fewer rows of W than FEW_ONES does. GENERAL for any other row."""
    binary, ones, sure = True, 0, 0
    for k in range(x_lo.shape[0]):                      # & and |, not `and` and `or`: no branches (SIMD)
        binary &= ((x_lo[k] == 0) | (x_lo[k] == 1)) & ((x_hi[k] == 0) | (x_hi[k] == 1))
        ones += x_hi[k] == 1
        sure += x_lo[k] == 1
    if not binary:
        return GENERAL
    return MANY_ONES if (x_lo.shape[0] - ones) + sure < ones else FEW_ONES


@njit(cache=True)
def _binary_row(x_lo, x_hi, w_lo, w_hi, many_ones, lo_neg_sums, hi_pos_sums, rows, lower, upper):
    """lower = Σ_{x̲_k = 1} W̲⁺[k] + Σ_{x̄_k = 1} W̲⁻[k] and upper = Σ_{x̄_k = 1} W̄⁺[k] + Σ_{x̲_k = 1} W̄⁻[k]
    for one row of 0/1 intervals, visiting the rows of W one of two ways (`rows`: room for their positions):
      FEW_ONES   rows with x̲_k = 1 add all of W̲[k] (= W̲⁺[k] + W̲⁻[k]), rows with x̲_k = 0, x̄_k = 1 add W̲⁻[k]
      MANY_ONES  rows with x̲_k = 1 add W̲⁺[k]; then Σ_{x̄_k = 1} W̲⁻[k] = Σ_k W̲⁻[k] − Σ_{x̄_k = 0} W̲⁻[k]
    (and the same for upper)."""
    zero = lower.dtype.type(0)
    lower[:], upper[:] = zero, zero
    n_sure = _positions(x_lo, 1, rows)                  # x̲_k = 1: surely spiking
    if many_ones:
        _add_clipped_rows(w_lo, rows, n_sure, 0, np.inf, 1, lower)
        _add_clipped_rows(w_hi, rows, n_sure, -np.inf, 0, 1, upper)
        lower += lo_neg_sums
        upper += hi_pos_sums
        n_silent = _positions(x_hi, 0, rows)            # x̄_k = 0: surely silent
        _add_clipped_rows(w_lo, rows, n_silent, -np.inf, 0, -1, lower)
        _add_clipped_rows(w_hi, rows, n_silent, 0, np.inf, -1, upper)
    else:
        _add_clipped_rows(w_lo, rows, n_sure, -np.inf, np.inf, 1, lower)
        _add_clipped_rows(w_hi, rows, n_sure, -np.inf, np.inf, 1, upper)
        n_maybe = _positions(x_hi - x_lo, 1, rows)      # x̲_k = 0, x̄_k = 1: may spike
        _add_clipped_rows(w_lo, rows, n_maybe, -np.inf, 0, 1, lower)
        _add_clipped_rows(w_hi, rows, n_maybe, 0, np.inf, 1, upper)


@njit(cache=True)
def _positions(values, value, out):
    """Write the positions k where values[k] == value into `out` and return how many there are."""
    count = 0
    for k in range(values.shape[0]):
        out[count] = k                 # written always, kept only if values[k] == value: no branch to mispredict
        count += values[k] == value
    return count


@njit(cache=True)
def _add_clipped_rows(w, rows, count, low, high, sign, out):
    """out += sign · Σ_a clip(w[rows[a]], low, high) over a < count: with (low, high) = (0, ∞) the positive parts
    W⁺, with (−∞, 0) the negative parts W⁻, with (−∞, ∞) all of W. Four rows at a time: each pass over `out`
    reads and writes it once for four rows instead of four times."""
    low, high, sign = out.dtype.type(low), out.dtype.type(high), out.dtype.type(sign)  # float32 stays float32
    a = 0
    while a + 4 <= count:
        k0, k1, k2, k3 = rows[a], rows[a + 1], rows[a + 2], rows[a + 3]
        for j in range(out.shape[0]):
            out[j] += sign * ((min(max(w[k0, j], low), high) + min(max(w[k1, j], low), high))
                              + (min(max(w[k2, j], low), high) + min(max(w[k3, j], low), high)))
        a += 4
    for b in range(a, count):
        k = rows[b]
        for j in range(out.shape[0]):
            out[j] += sign * min(max(w[k, j], low), high)


@njit(cache=True)
def _general_row(x_lo, x_hi, w_lo, w_hi, lower, upper):
    """One row of x @ W by the sign split, for any values of x; zero entries of x are skipped."""
    zero = lower.dtype.type(0)
    lower[:], upper[:] = zero, zero
    for k in range(x_lo.shape[0]):
        x_low, x_high = x_lo[k], x_hi[k]
        if x_low == zero and x_high == zero:            # the term adds nothing
            continue
        width = x_high - x_low
        if x_low >= zero:                               # x ≥ 0: ReLU outputs, firing rates
            for j in range(lower.shape[0]):
                lower[j] += x_low * w_lo[k, j] + width * min(w_lo[k, j], zero)
                upper[j] += x_high * w_hi[k, j] - width * min(w_hi[k, j], zero)
            continue
        if x_high <= zero:                              # x ≤ 0: half of the inputs of a point x
            for j in range(lower.shape[0]):
                lower[j] += x_high * w_hi[k, j] - width * max(w_hi[k, j], zero)
                upper[j] += x_low * w_lo[k, j] + width * max(w_lo[k, j], zero)
            continue
        lo_pos, hi_pos = max(x_low, zero), max(x_high, zero)            # x̲⁺, x̄⁺
        lo_neg, hi_neg = min(x_low, zero), min(x_high, zero)            # x̲⁻, x̄⁻
        for j in range(lower.shape[0]):
            wl_pos, wl_neg = max(w_lo[k, j], zero), min(w_lo[k, j], zero)  # W̲⁺, W̲⁻
            wh_pos, wh_neg = max(w_hi[k, j], zero), min(w_hi[k, j], zero)  # W̄⁺, W̄⁻
            lower[j] += lo_pos * wl_pos + hi_pos * wl_neg + lo_neg * wh_pos + hi_neg * wh_neg
            upper[j] += hi_pos * wh_pos + lo_pos * wh_neg + hi_neg * wl_pos + lo_neg * wl_neg


# ---------------------------------------------------------------------------------------------------- elementwise
def ufunc(function):
    """Decorator: a function of numbers as a NumPy ufunc, compiled by numba (numba.vectorize) with a float32 and a
    float64 loop. Like NumPy's own ufuncs it broadcasts and picks the loop by its inputs' dtype.

    Compiled on first use: numba builds each ufunc for ~0.1 s even from its disk cache, which at import would
    slow every program that imports minimal by ~2 s. And called as the plain NumPy ufunc: numba's Python wrapper
    around it (DUFunc) costs ~1 µs per call, ~1 ms per interval pass of the LSNN."""
    n_inputs = function.__code__.co_argcount
    signatures = [f"{t}({', '.join([t] * n_inputs)})" for t in ("float32", "float64")]
    compiled = []                                   # numba's DUFunc, once built; it owns the machine code

    @functools.wraps(function)
    def call(*arrays):
        if not compiled:
            compiled.append(vectorize(signatures, cache=True)(function))
        return compiled[0].ufunc(*arrays)
    return call


@ufunc
def mul_lower(a_lo, a_hi, b_lo, b_hi):
    """The lower bound of a·b: the least of the four corner products."""
    return min(a_lo * b_lo, a_lo * b_hi, a_hi * b_lo, a_hi * b_hi)


@ufunc
def mul_upper(a_lo, a_hi, b_lo, b_hi):
    """The upper bound of a·b: the greatest of the four corner products."""
    return max(a_lo * b_lo, a_lo * b_hi, a_hi * b_lo, a_hi * b_hi)


@ufunc
def positive_part(a):
    """a⁺ = max(a, 0). (NumPy's np.maximum(a, 0) is several times slower: it takes a slow path for the number 0.)"""
    return max(a, 0)


@ufunc
def negative_part(a):
    """a⁻ = min(a, 0), so that a = a⁺ + a⁻."""
    return min(a, 0)


@ufunc
def exceeds(a, b):
    """1(a > b), the spike's step function, as a number."""
    return 1 if a > b else 0


@ufunc
def equal_lower(lo, hi, value):
    """1 where the interval [lo, hi] is the point `value` (surely equal), else 0."""
    return 1 if lo == value and hi == value else 0


@ufunc
def equal_upper(lo, hi, value):
    """1 where the interval [lo, hi] contains `value` (possibly equal), else 0."""
    return 1 if lo <= value <= hi else 0


@ufunc
def where_lower(c_lo, c_hi, a_lo, b_lo):
    """Lower bound of condition ? a : b for a 0/1 condition [c_lo, c_hi]: a's where it is surely 1, b's where
    surely 0, the lesser of both where it may be either."""
    if c_lo > 0:
        return a_lo
    return min(a_lo, b_lo) if c_hi > 0 else b_lo


@ufunc
def where_upper(c_lo, c_hi, a_hi, b_hi):
    """Upper bound of condition ? a : b: as where_lower, with the greater of both."""
    if c_lo > 0:
        return a_hi
    return max(a_hi, b_hi) if c_hi > 0 else b_hi
