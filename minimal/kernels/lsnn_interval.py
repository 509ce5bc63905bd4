"""numba kernel of the LSNN's interval pass (IBP): Eq. 3 on intervals, fused over time, parallel over the batch.

The readable version is LSNN.reference_spikes run on Intervals (minimal/nn/lsnn.py): the lines of Eq. 3, each an
interval operation of minimal/interval.py. That is ~30 interval operations per time step, each a NumPy or numba
pass over (batch × neurons) numbers plus Python dispatch: ~5 times the time of the point pass (ECG LSNN, batch
100). This kernel does the same float operations in the same order, but one sample at a time, all steps in one
loop, the samples in parallel: ~2 times the point pass, and the same bounds (tests/test_interval.py compares the
logits bit for bit).

Per sample and step t, every state an interval [lo, hi], z ∈ {[0, 0], [0, 1], [1, 1]} (states start at 0, B at b0):

    I_t     = x_t W_in + z_{t−1} W_rec          the rows of kernels/interval.py's product (_general_row,
                                                _binary_row), as interval.matmul calls them
    V_t     = ρ_V V_{t−1} + (1 − ρ_V) I_t − z_{t−1} B_{t−1}          z·B: min and max of the four corner products
    b_t     = ρ_b b_{t−1} + (1 − ρ_b) z_{t−1}
    B_t     = b0 + β b_t
    m_t     = 1(r_t = 0) · k                    [1(r̲ = r̄ = 0), 1(r̲ ≤ 0 ≤ r̄)] · k   (k: the dropout mask)
    z_t     = 1(V_t > B_t) · m_t                [1(V̲ > B̄) m̲, 1(V̄ > B̲) m̄]
    r_{t+1} = where(z_t, refractory, max(r_t − 1, 0))    both branches' hull where z_t = [0, 1]

and the rates r = mean_t z_t, bounded by the means of the bounds. The input x is a point (IBP bounds the networks
in a weight box on given data). No fast-math: each operation rounds as NumPy's does.
"""
import numpy as np
from numba import njit, prange

from .interval import GENERAL, MANY_ONES, _add_clipped_rows, _binary_row, _general_row, _row_kind


def interval_rates(x, w_in_lo, w_in_hi, w_rec_lo, w_rec_hi, rho_v, rho_b, b0, adaptation_strength, refractory,
                   dropout_mask=None):
    """(lower, upper) bounds (N, H) of the firing rates of every network with W_in ∈ [w_in_lo, w_in_hi] and
    W_rec ∈ [w_rec_lo, w_rec_hi], on the point inputs x (N, T, C_in). All arrays of one float dtype; the
    constants are Python numbers (as the reference path's), dropout_mask (N, H) bool or None."""
    dtype = x.dtype.type
    n_batch, n_hidden = x.shape[0], w_rec_lo.shape[0]
    mask = np.ones((n_batch, n_hidden), np.bool_) if dropout_mask is None else dropout_mask
    lower, upper = np.empty((n_batch, n_hidden), x.dtype), np.empty((n_batch, n_hidden), x.dtype)
    # Python numbers meet float32 arrays as float32 numbers in NumPy: 1 − ρ_V is computed first, then rounded
    interval_kernel(x, w_in_lo, w_in_hi, w_rec_lo, w_rec_hi, *column_sums(w_in_lo, w_in_hi),
                    *column_sums(w_rec_lo, w_rec_hi), dtype(rho_v), dtype(1 - rho_v), dtype(rho_b), dtype(1 - rho_b),
                    dtype(b0), dtype(adaptation_strength), dtype(refractory), np.ascontiguousarray(mask, np.bool_),
                    lower, upper)
    return lower, upper


def column_sums(w_lo, w_hi):
    """Σ_k W̲⁻[k] and Σ_k W̄⁺[k] over all rows of W, summed as kernels/interval.py's product sums them (its rows of
    spikes where most neurons may fire start from these)."""
    rows = np.arange(w_lo.shape[0])
    lo_neg_sums, hi_pos_sums = np.zeros(w_lo.shape[1], w_lo.dtype), np.zeros(w_lo.shape[1], w_lo.dtype)
    _add_clipped_rows(w_lo, rows, len(rows), -np.inf, 0, 1, lo_neg_sums)
    _add_clipped_rows(w_hi, rows, len(rows), 0, np.inf, 1, hi_pos_sums)
    return lo_neg_sums, hi_pos_sums


@njit(cache=True)
def product_row(x_lo, x_hi, w_lo, w_hi, lo_neg_sums, hi_pos_sums, rows, lower, upper):
    """One row of the interval product x @ W, the way kernels/interval.py's _matmul_bounds computes it."""
    kind = _row_kind(x_lo, x_hi)
    if kind == GENERAL:
        _general_row(x_lo, x_hi, w_lo, w_hi, lower, upper)
    else:
        _binary_row(x_lo, x_hi, w_lo, w_hi, kind == MANY_ONES, lo_neg_sums, hi_pos_sums, rows, lower, upper)


@njit(parallel=True, cache=True)
def interval_kernel(x, w_in_lo, w_in_hi, w_rec_lo, w_rec_hi, in_lo_neg_sums, in_hi_pos_sums, rec_lo_neg_sums,
                    rec_hi_pos_sums, rho_v, input_scale, rho_b, spike_scale, b0, adaptation_strength, refractory,
                    dropout_mask, lower, upper):
    """interval_rates' loops: fills lower and upper (N, H) with the bounds of the rates. input_scale = 1 − ρ_V,
    spike_scale = 1 − ρ_b."""
    n_batch, n_steps, n_inputs = x.shape
    n_hidden = w_rec_lo.shape[0]
    zero, one = x.dtype.type(0), x.dtype.type(1)
    for n in prange(n_batch):
        v_lo, v_hi = np.zeros(n_hidden, x.dtype), np.zeros(n_hidden, x.dtype)          # V_{t−1}
        b_lo, b_hi = np.zeros(n_hidden, x.dtype), np.zeros(n_hidden, x.dtype)          # b_{t−1}
        z_lo, z_hi = np.zeros(n_hidden, x.dtype), np.zeros(n_hidden, x.dtype)          # z_{t−1}
        threshold_lo, threshold_hi = np.full(n_hidden, b0), np.full(n_hidden, b0)     # B_{t−1}
        left_lo, left_hi = np.zeros(n_hidden, x.dtype), np.zeros(n_hidden, x.dtype)    # r_t, refractory steps left
        in_lo, in_hi = np.empty(n_hidden, x.dtype), np.empty(n_hidden, x.dtype)        # x_t W_in
        rec_lo, rec_hi = np.empty(n_hidden, x.dtype), np.empty(n_hidden, x.dtype)      # z_{t−1} W_rec
        rows = np.empty(max(n_inputs, n_hidden), np.int64)                             # the product's row lists
        count_lo, count_hi = lower[n], upper[n]                                         # Σ_t z_t, then the rates
        count_lo[:], count_hi[:] = zero, zero
        for t in range(n_steps):
            product_row(x[n, t], x[n, t], w_in_lo, w_in_hi, in_lo_neg_sums, in_hi_pos_sums, rows, in_lo, in_hi)
            product_row(z_lo, z_hi, w_rec_lo, w_rec_hi, rec_lo_neg_sums, rec_hi_pos_sums, rows, rec_lo, rec_hi)
            for j in range(n_hidden):
                synaptic_lo, synaptic_hi = in_lo[j] + rec_lo[j], in_hi[j] + rec_hi[j]          # I_t
                corners = (z_lo[j] * threshold_lo[j], z_lo[j] * threshold_hi[j],                 # z_{t−1}·B_{t−1}
                           z_hi[j] * threshold_lo[j], z_hi[j] * threshold_hi[j])
                reset_lo, reset_hi = min(corners), max(corners)
                v_lo[j] = (rho_v * v_lo[j] + input_scale * synaptic_lo) - reset_hi                 # V_t
                v_hi[j] = (rho_v * v_hi[j] + input_scale * synaptic_hi) - reset_lo
                b_lo[j] = rho_b * b_lo[j] + spike_scale * z_lo[j]                                  # b_t
                b_hi[j] = rho_b * b_hi[j] + spike_scale * z_hi[j]
                threshold_lo[j] = b0 + adaptation_strength * b_lo[j]                              # B_t
                threshold_hi[j] = b0 + adaptation_strength * b_hi[j]
                keep = one if dropout_mask[n, j] else zero                                         # k
                allowed_lo = (one if left_lo[j] == zero and left_hi[j] == zero else zero) * keep   # m_t
                allowed_hi = (one if left_lo[j] <= zero <= left_hi[j] else zero) * keep
                z_lo[j] = (one if v_lo[j] > threshold_hi[j] else zero) * allowed_lo                # z_t (0/1:
                z_hi[j] = (one if v_hi[j] > threshold_lo[j] else zero) * allowed_hi                # corners exact)
                after_lo, after_hi = max(left_lo[j] - one, zero), max(left_hi[j] - one, zero)      # max(r_t − 1, 0)
                if z_lo[j] > zero:                                                                 # surely spiked
                    left_lo[j], left_hi[j] = refractory, refractory
                elif z_hi[j] > zero:                                                               # maybe: the hull
                    left_lo[j], left_hi[j] = min(refractory, after_lo), max(refractory, after_hi)
                else:
                    left_lo[j], left_hi[j] = after_lo, after_hi
                count_lo[j] += z_lo[j]
                count_hi[j] += z_hi[j]
        for j in range(n_hidden):          # r = Σ_t z_t / T, divided as np.mean divides (in float64, then rounded)
            count_lo[j] = np.float64(count_lo[j]) / n_steps
            count_hi[j] = np.float64(count_hi[j]) / n_steps
