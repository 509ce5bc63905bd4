"""numba kernels for the LSNN (Supplementary Eq. 3, 4): the recurrence over time, and its BPTT backward.

Per sample n, time step t = 0 … T−1 and neuron j (all states start at 0), with inputs x (N, T, C_in):

    V_t = ρ_V V_{t−1} + (1 − ρ_V)(x_t W_in + z_{t−1} W_rec) − z_{t−1} B_{t−1}   reset by subtracting B
    b_t = ρ_b b_{t−1} + (1 − ρ_b) z_{t−1}                                       adaptation (low-passed spikes)
    B_t = b0 + β b_t                                                            threshold; β: adaptation strength
    z_t = m_t · 1(V_t > B_t)                                                    spike; m_t = 1(r_t = 0) · k
    r_{t+1} = refractory if z_t = 1 else max(r_t − 1, 0)                        refractory counter, r_0 = 0

These are Eq. 3 with the time index of V and b shifted by one (the paper's V_{t+1} is our V_t), so that the input
x_t can already cause the spike z_t. With refractory = 2, a neuron that spikes at t is silent at t+1 and t+2. The
mask m_t is a constant for the backward pass: a refractory neuron's spike carries no gradient. k (N, H) is the
dropout mask, fixed over time: k = 0 silences a neuron for the whole sample, as if it were always refractory
(k = 1 everywhere without dropout).

Spikes are 0 or 1, which the kernels exploit ("event-driven"): z_{t−1} W_rec is the sum of the rows of W_rec of the
neurons that spiked at t − 1, and in the backward pass only those rows of the W_rec gradient change. With
`event_driven=False` the same kernels do the dense work instead (multiply by the zeros); the benchmark measures
both, and the model uses the event-driven version.

What the kernels change for speed, against the readable reference (lsnn_reference.py, which the tests hold
equal): the recurrence fused over time per sample; the forward saves ψ_t = ∂z_t/∂V_t, B_t and z_t (as bool), in
rows ordered backwards in time so that the backward pass reads increasing addresses; the backward's W_rec dI
products only in the rows where ψ_t ≠ 0; the batch in a fixed number of chunks on parallel threads.
Measurements and the variants tried and rejected: docs/performance.md, "LSNN kernels".
"""
from typing import NamedTuple

import numpy as np
from numba import njit, prange

# Let LLVM use SIMD instructions: reorder sums (reassoc, contract: dot products in several lanes) and treat max()
# and comparisons as plain instructions (nnan, ninf, nsz: assume no NaN or inf, ignore the sign of zero).
# Results change in the last bits only; the kernels' loops vectorise, and run several times faster.
FAST_MATH = {"nnan", "ninf", "nsz", "reassoc", "contract"}
KERNEL = dict(cache=True, fastmath=FAST_MATH, error_model="numpy")


@njit(**KERNEL)
def surrogate_derivative(v, threshold, allowed, dampening):
    """Eq. 4 for one neuron: ψ = d · max(1 − |(V − B)/B|, 0), a triangle of height d around the threshold B,
    and 0 where the neuron is refractory (allowed = m_t is False). Computed in v's dtype (float32 stays float32)."""
    zero, one = type(v)(0), type(v)(1)
    return dampening * max(one - abs((v - threshold) / threshold), zero) if allowed else zero


@njit(**KERNEL)
def active_indices(values, out):
    """Write the positions of the non-zero entries of `values` into `out` and return how many there are."""
    count = 0
    for k in range(values.shape[0]):
        out[count] = k                 # written always, kept only if values[k] ≠ 0: no branch to mispredict
        count += values[k] != 0
    return count


@njit(**KERNEL)
def add_rows(w, rows, n_rows, out):
    """out += Σ_a w[rows[a]] over a < n_rows. Four rows at a time: each pass over `out` reads and writes it once
    for four rows instead of four times."""
    a = 0
    while a + 4 <= n_rows:
        k0, k1, k2, k3 = rows[a], rows[a + 1], rows[a + 2], rows[a + 3]
        for j in range(out.shape[0]):
            out[j] += (w[k0, j] + w[k1, j]) + (w[k2, j] + w[k3, j])
        a += 4
    for b in range(a, n_rows):
        k = rows[b]
        for j in range(out.shape[0]):
            out[j] += w[k, j]


@njit(**KERNEL)
def add_row_products(w, rows, n_rows, vector, out):
    """out[k] += w[k] · vector for k in rows[:n_rows]. Four rows at a time: the four dot products share each load
    of `vector`, and their four sums are independent, so the CPU can overlap them."""
    zero = vector.dtype.type(0)
    a = 0
    while a + 4 <= n_rows:
        k0, k1, k2, k3 = rows[a], rows[a + 1], rows[a + 2], rows[a + 3]
        s0 = s1 = s2 = s3 = zero
        for j in range(vector.shape[0]):
            s0 += w[k0, j] * vector[j]
            s1 += w[k1, j] * vector[j]
            s2 += w[k2, j] * vector[j]
            s3 += w[k3, j] * vector[j]
        out[k0] += s0
        out[k1] += s1
        out[k2] += s2
        out[k3] += s3
        a += 4
    for b in range(a, n_rows):
        k = rows[b]
        s = zero
        for j in range(vector.shape[0]):
            s += w[k, j] * vector[j]
        out[k] += s


class ForwardStates(NamedTuple):
    """What lsnn_forward returns. The (N, T, H) arrays are in time order (views of arrays stored last step first,
    see STORED BACKWARDS IN TIME)."""
    v: np.ndarray           # V_t, or None unless asked for (keep_v): the backward pass does not need it
    threshold: np.ndarray   # B_t
    spikes: np.ndarray      # z_t, bool (1 byte per spike instead of 4)
    surrogate: np.ndarray   # ψ_t = ∂z_t/∂V_t (Eq. 4)
    rates: np.ndarray       # (N, H) firing rates r = mean_t z_t


def lsnn_forward(x, w_in, w_rec, rho_v, rho_b, b0, adaptation_strength, dampening, refractory, event_driven=True,
                 keep_v=False, dropout_mask=None):
    """Run the LSNN over time for every sample (in parallel over the batch). All arrays of one float dtype.

    x     : (N, T, C_in) inputs
    w_in  : (C_in, H)    input weights
    w_rec : (H, H)       recurrent weights (zero diagonal), row k = the synapses leaving neuron k
    dropout_mask : (N, H) bool, k: False silences that neuron in that sample at every step (None: all True)
    Returns ForwardStates (v, threshold, spikes, surrogate, rates); V_t only if keep_v (not writing it saves time).
    """
    n_batch, n_steps, n_hidden = x.shape[0], x.shape[1], w_rec.shape[0]
    if dropout_mask is None:
        dropout_mask = np.ones((n_batch, n_hidden), np.bool_)
    dropout_mask = np.ascontiguousarray(dropout_mask, np.bool_)
    if dropout_mask.shape != (n_batch, n_hidden):
        raise ValueError(f"the dropout mask must have shape {(n_batch, n_hidden)}, got {dropout_mask.shape}")
    v_trace = np.empty((n_batch, n_steps if keep_v else 1, n_hidden), x.dtype)
    threshold, surrogate = (np.empty((n_batch, n_steps, n_hidden), x.dtype) for _ in range(2))
    spikes = np.empty((n_batch, n_steps, n_hidden), np.bool_)
    rates = np.empty((n_batch, n_hidden), x.dtype)
    forward_kernel(x, w_in, w_rec, rho_v, rho_b, b0, adaptation_strength, dampening, refractory, event_driven,
                   dropout_mask, v_trace, threshold, spikes, surrogate, rates)
    return ForwardStates(time_reversed(v_trace) if keep_v else None, time_reversed(threshold), time_reversed(spikes),
                         time_reversed(surrogate), rates)


def lsnn_rates(x, w_in, w_rec, rho_v, rho_b, b0, adaptation_strength, refractory, event_driven=True,
               dropout_mask=None):
    """Only the firing rates r (N, H) of lsnn_forward: for evaluation, where nothing goes backwards.

    The kernel is the same; it gets state arrays of one time row, which every step overwrites (as V when not
    kept), instead of (N, T, H) arrays of states: at batch 1000 these would be 230 MB, written once and never read.
    (Measured, 1000 ECG beats, kernel alone: 210 ms with the states, 146 ms without on one thread; 310 and 213 ms
    on two, busy, threads. Skipping ψ as well, with an `if` in the neuron loop, was slower (160 against 151 ms):
    the branch stops SIMD. A kernel for the rates alone, without the one-row writes, took 123 ms against 161: not
    worth a third copy of the recurrence.)"""
    n_batch, n_hidden = x.shape[0], w_rec.shape[0]
    mask = np.ones((n_batch, n_hidden), np.bool_) if dropout_mask is None else np.ascontiguousarray(dropout_mask,
                                                                                                    np.bool_)
    one_row = (n_batch, 1, n_hidden)
    rates = np.empty((n_batch, n_hidden), x.dtype)
    forward_kernel(x, w_in, w_rec, rho_v, rho_b, b0, adaptation_strength, x.dtype.type(0), refractory, event_driven,
                   mask, np.empty(one_row, x.dtype), np.empty(one_row, x.dtype), np.empty(one_row, np.bool_),
                   np.empty(one_row, x.dtype), rates)
    return rates


def time_reversed(a):
    """a[:, ::-1] for arrays (N, T, …): a view, no copy; for the view lsnn_forward returns, the stored array."""
    return a[:, ::-1]


@njit(parallel=True, **KERNEL)
def forward_kernel(x, w_in, w_rec, rho_v, rho_b, b0, adaptation_strength, dampening, refractory, event_driven,
                   dropout_mask, v_trace, threshold, spikes, surrogate, rates):
    """lsnn_forward's loops; fills threshold, spikes, surrogate and v_trace, step t in row T − 1 − t, and rates.
    A v_trace with one time row instead of T keeps only the last V (cheaper than an `if` in the loop), and so do
    state arrays (threshold, spikes, surrogate) of one row (lsnn_rates)."""
    n_batch, n_steps, n_inputs = x.shape
    n_hidden = w_rec.shape[0]
    keep_v = v_trace.shape[1] == n_steps
    keep_states = threshold.shape[1] == n_steps
    zero, one = x.dtype.type(0), x.dtype.type(1)    # Python 0 and 1 would turn float32 maths into float64 (no SIMD)
    refractory = x.dtype.type(refractory)           # steps are counted in the data's dtype too (exact, and SIMD)
    for n in prange(n_batch):
        v = np.zeros(n_hidden, x.dtype)             # V_{t−1}, then V_t
        b = np.zeros(n_hidden, x.dtype)             # b_{t−1}, then b_t
        z = np.zeros(n_hidden, x.dtype)             # z_{t−1}, then z_t
        threshold_now = np.zeros(n_hidden, x.dtype) # B_{t−1}, then B_t (unused while z_{t−1} = 0)
        synaptic = np.empty(n_hidden, x.dtype)      # x_t W_in + z_{t−1} W_rec
        refractory_left = np.zeros(n_hidden, x.dtype)
        spiked = np.empty(n_hidden, np.int64)
        n_spiked = 0                                # the neurons with z_{t−1} = 1 are spiked[:n_spiked]
        spike_count = rates[n]                      # Σ_t z_t, divided by T at the end
        spike_count[:] = 0
        for t in range(n_steps):
            synaptic[:] = 0
            for c in range(n_inputs):
                for j in range(n_hidden):
                    synaptic[j] += x[n, t, c] * w_in[c, j]
            if event_driven:                        # z_{t−1} W_rec = the rows of the neurons that spiked
                add_rows(w_rec, spiked, n_spiked, synaptic)
            else:
                for k in range(n_hidden):
                    for j in range(n_hidden):
                        synaptic[j] += z[k] * w_rec[k, j]
            row = n_steps - 1 - t                   # stored backwards in time (see STORED BACKWARDS IN TIME)
            v_t = v_trace[n, row if keep_v else 0]  # not kept: one row that every step overwrites
            state_row = row if keep_states else 0
            threshold_t, z_t, psi_t = threshold[n, state_row], spikes[n, state_row], surrogate[n, state_row]
            for j in range(n_hidden):
                v[j] = rho_v * v[j] + (one - rho_v) * synaptic[j] - z[j] * threshold_now[j]
                b[j] = rho_b * b[j] + (one - rho_b) * z[j]
                threshold_now[j] = b0 + adaptation_strength * b[j]
                allowed = (refractory_left[j] == zero) & dropout_mask[n, j]         # m_t
                fires = allowed & (v[j] > threshold_now[j])
                z[j] = fires
                refractory_left[j] = refractory if fires else max(refractory_left[j] - one, zero)
                v_t[j] = v[j]
                threshold_t[j] = threshold_now[j]
                z_t[j] = fires
                psi_t[j] = surrogate_derivative(v[j], threshold_now[j], allowed, dampening)
            for j in range(n_hidden):
                spike_count[j] += z[j]
            n_spiked = active_indices(z, spiked)
        spike_count /= x.dtype.type(n_steps)        # now r = mean_t z_t


# BPTT (backpropagation through time) by hand.
#
# The loss E depends on the spikes directly (readout, rate regulariser: e_t = ∂E/∂z_t, the incoming gradient
# `grad_spikes`) and through the future states. Write dX for the total derivative dE/dX. Every z_t, V_t, b_t, B_t
# influences the future only through the next step, so going backwards from t = T−1 (with dV_T = db_T = 0):
#
# (per neuron k; (W_rec dV)_k = Σ_j W_rec[k, j] dV_j sums over the neurons j that k projects to)
#
#   dz_t = e_t + (1 − ρ_V) (W_rec dV_{t+1})_k        z_t enters V_{t+1} through the recurrent input …
#              − B_t dV_{t+1}                        … and through the reset − z_t B_t,
#              + (1 − ρ_b) db_{t+1}                  and the adaptation b_{t+1}.
#   ψ_t  = ∂z_t/∂V_t                                 the surrogate (Eq. 4, saved by the forward pass), 0 while
#                                                    refractory; z_t depends on V_t − B_t only: ∂z_t/∂B_t = −ψ_t.
#   dB_t = −z_t dV_{t+1}                             B_t enters V_{t+1} through the reset − z_t B_t …
#          − ψ_t dz_t                                … and z_t through the surrogate.
#   dV_t = ρ_V dV_{t+1} + ψ_t dz_t
#   db_t = ρ_b db_{t+1} + β dB_t                     the adaptation path b → B = b0 + β b
#
# and the gradients of the kernel's inputs, from V_t = … + (1 − ρ_V) I_t with the synaptic input
# I_t = x_t W_in + z_{t−1} W_rec, whose gradient is dI_t = (1 − ρ_V) dV_t:
#
#   dx_t    = dI_t W_inᵀ
#   dW_in  += x_tᵀ dI_t                              summed over n and t
#   dW_rec += z_{t−1}ᵀ dI_t                          summed over n and t: row k grows only if neuron k spiked
#
# (the recurrent term of dz_t above is (1 − ρ_V) W_rec dV_{t+1} = W_rec dI_{t+1}).
#
# Event-driven savings: dz_t is only ever used multiplied by ψ_t, so the matrix-vector product W_rec dI_{t+1}
# (H² work per step) is needed only in the rows k whose surrogate is non-zero (V within B of the threshold), and
# the W_rec gradient only in the rows of neurons that spiked at t − 1.
def lsnn_backward(grad_spikes, x, w_in, w_rec, threshold, spikes, surrogate, rho_v, rho_b, adaptation_strength,
                  n_chunks, event_driven=True):
    """Gradients of the loss w.r.t. x (N, T, C_in), W_in (C_in, H) and W_rec (H, H), given grad_spikes = ∂E/∂z
    (N, T, H; any strides, e.g. a gradient broadcast over time) and the states saved by lsnn_forward (spikes: bool).

    The batch is split into `n_chunks` interleaved chunks processed in parallel; each accumulates its own weight
    gradients (no two threads write the same memory), and the chunks are summed at the end.
    """
    grad_x = np.empty_like(x)
    grad_w_in_chunks = np.zeros((n_chunks,) + w_in.shape, x.dtype)
    grad_w_rec_chunks = np.zeros((n_chunks,) + w_rec.shape, x.dtype)
    # the arrays as lsnn_forward stored them, last step first (for its own outputs this is no copy)
    stored = tuple(np.ascontiguousarray(time_reversed(a)) for a in (threshold, spikes, surrogate))
    backward_kernel(grad_spikes, x, w_in, w_rec, *stored, rho_v, rho_b, adaptation_strength, event_driven,
                    grad_x, grad_w_in_chunks, grad_w_rec_chunks)
    return grad_x, grad_w_in_chunks.sum(axis=0), grad_w_rec_chunks.sum(axis=0)


@njit(parallel=True, **KERNEL)
def backward_kernel(grad_spikes, x, w_in, w_rec, threshold, spikes, surrogate, rho_v, rho_b, adaptation_strength,
                    event_driven, grad_x, grad_w_in_chunks, grad_w_rec_chunks):
    """lsnn_backward's loops; fills grad_x and each chunk's weight gradients. threshold, spikes and surrogate hold
    step t in row T − 1 − t, as lsnn_forward stores them."""
    n_batch, n_steps, n_hidden = spikes.shape
    n_inputs = x.shape[2]
    n_chunks = grad_w_rec_chunks.shape[0]
    zero, one = x.dtype.type(0), x.dtype.type(1)    # Python 0 and 1 would turn float32 maths into float64
    for chunk in prange(n_chunks):
        dv = np.zeros(n_hidden, x.dtype)            # dV_{t+1}, then dV_t (updated in place)
        db = np.zeros(n_hidden, x.dtype)            # db_{t+1}, then db_t
        d_input = np.zeros(n_hidden, x.dtype)       # dI_{t+1} = (1 − ρ_V) dV_{t+1}, then dI_t
        dz = np.empty(n_hidden, x.dtype)            # dz_t
        support = np.arange(n_hidden)               # the neurons with ψ_t ≠ 0 are support[:n_support]
        spiked = np.arange(n_hidden)                # the neurons with z_{t−1} = 1 are spiked[:n_spiked]
        grad_w_in = grad_w_in_chunks[chunk]
        grad_w_rec = grad_w_rec_chunks[chunk]
        for n in range(chunk, n_batch, n_chunks):
            dv[:] = 0
            db[:] = 0
            d_input[:] = 0
            for t in range(n_steps - 1, -1, -1):
                row = n_steps - 1 - t                           # t goes down, the rows read go up
                e_t = grad_spikes[n, t]
                threshold_t, z_t, psi_t = threshold[n, row], spikes[n, row], surrogate[n, row]
                for k in range(n_hidden):                       # dz_t without its recurrent term …
                    dz[k] = e_t[k] - threshold_t[k] * dv[k] + (one - rho_b) * db[k]
                n_support = active_indices(psi_t, support) if event_driven else n_hidden
                add_row_products(w_rec, support, n_support, d_input, dz)   # … + (W_rec dI_{t+1})_k where ψ_t ≠ 0
                # dV_t, db_t, dI_t from dV_{t+1}, db_{t+1}, in place. dB_t = −z_t dV_{t+1} − ψ_t dz_t is not kept:
                # it is folded straight into db_t = ρ_b db_{t+1} + β dB_t. That line reads dv[k], which still
                # holds dV_{t+1}, so it must come before the line that overwrites dv[k] with dV_t.
                for k in range(n_hidden):
                    psi_dz = psi_t[k] * dz[k]                   # ψ_t dz_t
                    # db_t = ρ_b db_{t+1} + β dB_t, with dB_t = −(z_t dV_{t+1} + ψ_t dz_t)
                    db[k] = rho_b * db[k] - adaptation_strength * ((dv[k] if z_t[k] else zero) + psi_dz)
                    dv[k] = rho_v * dv[k] + psi_dz              # dV_t = ρ_V dV_{t+1} + ψ_t dz_t
                    d_input[k] = (one - rho_v) * dv[k]
                for c in range(n_inputs):                       # dx_t = dI_t W_inᵀ, dW_in += x_tᵀ dI_t
                    projected = zero
                    for k in range(n_hidden):
                        projected += w_in[c, k] * d_input[k]
                        grad_w_in[c, k] += x[n, t, c] * d_input[k]
                    grad_x[n, t, c] = projected
                if t > 0:                                       # dW_rec += z_{t−1}ᵀ dI_t
                    z_before = spikes[n, row + 1]               # z_{t−1}
                    if event_driven:                            # dI_t added to the rows of the neurons that spiked
                        n_spiked = active_indices(z_before, spiked)
                        for a in range(n_spiked):
                            k = spiked[a]
                            for j in range(n_hidden):
                                grad_w_rec[k, j] += d_input[j]
                    else:
                        for k in range(n_hidden):
                            spike = one if z_before[k] else zero
                            for j in range(n_hidden):
                                grad_w_rec[k, j] += spike * d_input[j]
