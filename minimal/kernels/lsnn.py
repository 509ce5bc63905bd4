"""numba kernels for the LSNN (Supplementary Eq. 3, 4): the recurrence over time, and its BPTT backward.

Per sample n, time step t = 0 … T−1 and neuron j (all states start at 0), with inputs x (N, T, C_in):

    V_t = ρ_V V_{t−1} + (1 − ρ_V)(x_t W_in + z_{t−1} W_rec) − z_{t−1} B_{t−1}   reset by subtracting B
    b_t = ρ_b b_{t−1} + (1 − ρ_b) z_{t−1}                                       adaptation (low-passed spikes)
    B_t = b0 + β b_t                                                            adaptive threshold
    z_t = m_t · 1(V_t > B_t)                                                    spike; m_t = 1(r_t = 0)
    r_{t+1} = refractory if z_t = 1 else max(r_t − 1, 0)                        refractory counter, r_0 = 0

These are Eq. 3 with the time index of V and b shifted by one (the paper's V_{t+1} is our V_t), so that the input
x_t can already cause the spike z_t. With refractory = 2, a neuron that spikes at t is silent at t+1 and t+2. The
mask m_t is a constant for the backward pass: a refractory neuron's spike carries no gradient.

Spikes are 0 or 1, which the kernels exploit ("event-driven"): z_{t−1} W_rec is the sum of the rows of W_rec of the
neurons that spiked at t − 1, and in the backward pass only those rows of the W_rec gradient change. With
`event_driven=False` the same kernels do the dense work instead (multiply by the zeros); the benchmark measures
both, and the model uses the event-driven version.

The input projection x_t W_in is done inside the kernels too, although it could be one BLAS matmul for all t.
For the ECG's two inputs it is tiny (N·T·C_in·H = 5·10⁶ multiply-adds at batch 100), but a BLAS call wakes
OpenBLAS's worker threads, which then busy-wait for a while and take the two cores away from the numba threads
that run next: measured, that doubled the time of a training step.

The Python wrappers (lsnn_forward, lsnn_backward) allocate the big arrays with NumPy and the numba kernels only fill
them. NumPy asks Linux for huge pages for large arrays; on the VM where this was measured, numba's own allocation
page-faulted ~2500 times per fresh 10 MB array (~6 ms), NumPy's about 500 times.
"""
import numpy as np
from numba import njit, prange

# Let LLVM use SIMD instructions: reorder sums (reassoc, contract: dot products in several lanes) and treat max()
# and comparisons as plain instructions (nnan, ninf, nsz: assume no NaN or inf, ignore the sign of zero).
# Results change in the last bits only; the kernels' loops vectorise, and run several times faster.
FAST_MATH = {"nnan", "ninf", "nsz", "reassoc", "contract"}


@njit(cache=True, fastmath=FAST_MATH)
def surrogate_derivative(v, threshold, allowed, dampening, out):
    """Eq. 4 for one row of neurons: out = m · d · max(1 − |(V − B)/B|, 0), a triangle of height d around the
    threshold B, and 0 where the neuron is refractory (m = 0). Written in the arrays' dtype so it vectorises."""
    zero, one = out.dtype.type(0), out.dtype.type(1)
    for k in range(out.shape[0]):
        out[k] = allowed[k] * dampening * max(one - abs((v[k] - threshold[k]) / threshold[k]), zero)


@njit(cache=True)
def active_indices(values, out):
    """Write the positions of the non-zero entries of `values` into `out` and return how many there are."""
    count = 0
    for k in range(values.shape[0]):
        out[count] = k                 # written always, kept only if values[k] ≠ 0: no branch to mispredict
        count += values[k] != 0
    return count


def lsnn_forward(x, w_in, w_rec, rho_v, rho_b, b0, beta, refractory, event_driven=True):
    """Run the LSNN over time for every sample (in parallel over the batch). All arrays of one float dtype.

    x     : (N, T, C_in) inputs
    w_in  : (C_in, H)    input weights
    w_rec : (H, H)       recurrent weights (zero diagonal), row k = the synapses leaving neuron k
    Returns (v, threshold, spikes, allowed), each (N, T, H): V_t, B_t, z_t and the refractory mask m_t (0 or 1).
    """
    shape = (x.shape[0], x.shape[1], w_rec.shape[0])
    states = tuple(np.empty(shape, x.dtype) for _ in range(4))
    forward_kernel(x, w_in, w_rec, rho_v, rho_b, b0, beta, refractory, event_driven, *states)
    return states


@njit(cache=True, parallel=True, fastmath=FAST_MATH)
def forward_kernel(x, w_in, w_rec, rho_v, rho_b, b0, beta, refractory, event_driven,
                   v_trace, threshold, spikes, allowed):
    """lsnn_forward's loops; fills v_trace, threshold, spikes and allowed."""
    n_batch, n_steps, n_inputs = x.shape
    n_hidden = w_rec.shape[0]
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
        for t in range(n_steps):
            synaptic[:] = 0
            for c in range(n_inputs):
                for j in range(n_hidden):
                    synaptic[j] += x[n, t, c] * w_in[c, j]
            if event_driven:                        # z_{t−1} W_rec = the rows of the neurons that spiked
                for a in range(n_spiked):
                    k = spiked[a]
                    for j in range(n_hidden):
                        synaptic[j] += w_rec[k, j]
            else:
                for k in range(n_hidden):
                    for j in range(n_hidden):
                        synaptic[j] += z[k] * w_rec[k, j]
            for j in range(n_hidden):
                v[j] = rho_v * v[j] + (one - rho_v) * synaptic[j] - z[j] * threshold_now[j]
                b[j] = rho_b * b[j] + (one - rho_b) * z[j]
                threshold_now[j] = b0 + beta * b[j]
                is_allowed = refractory_left[j] == zero
                fires = is_allowed & (v[j] > threshold_now[j])
                z[j] = fires
                refractory_left[j] = refractory if fires else max(refractory_left[j] - one, zero)
                v_trace[n, t, j] = v[j]
                threshold[n, t, j] = threshold_now[j]
                spikes[n, t, j] = z[j]
                allowed[n, t, j] = is_allowed
            n_spiked = active_indices(z, spiked)


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
#   ψ_t  = m_t · d · max(1 − |(V_t − B_t)/B_t|, 0)   the surrogate ∂z_t/∂V_t (Eq. 4), 0 while refractory;
#                                                    z_t depends on V_t − B_t only, so ∂z_t/∂B_t = −ψ_t.
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
# Event-driven savings: dz_t is only ever used multiplied by ψ_t, so the matrix-vector product W_rec dV_{t+1}
# (H² work per step) is needed only in the rows k whose surrogate is non-zero (V within B of the threshold), and
# the W_rec gradient only in the rows of neurons that spiked at t − 1.
def lsnn_backward(grad_spikes, x, w_in, w_rec, v_trace, threshold, spikes, allowed, rho_v, rho_b, beta, dampening,
                  n_chunks, event_driven=True):
    """Gradients of the loss w.r.t. x (N, T, C_in), W_in (C_in, H) and W_rec (H, H), given grad_spikes = ∂E/∂z
    and the states saved by lsnn_forward.

    The batch is split into `n_chunks` interleaved chunks processed in parallel; each accumulates its own weight
    gradients (no two threads write the same memory), and the chunks are summed at the end.
    """
    grad_x = np.empty_like(x)
    grad_w_in_chunks = np.zeros((n_chunks,) + w_in.shape, x.dtype)
    grad_w_rec_chunks = np.zeros((n_chunks,) + w_rec.shape, x.dtype)
    backward_kernel(grad_spikes, x, w_in, w_rec, v_trace, threshold, spikes, allowed, rho_v, rho_b, beta, dampening,
                    event_driven, grad_x, grad_w_in_chunks, grad_w_rec_chunks)
    return grad_x, grad_w_in_chunks.sum(axis=0), grad_w_rec_chunks.sum(axis=0)


@njit(cache=True, parallel=True, fastmath=FAST_MATH)
def backward_kernel(grad_spikes, x, w_in, w_rec, v_trace, threshold, spikes, allowed, rho_v, rho_b, beta, dampening,
                    event_driven, grad_x, grad_w_in_chunks, grad_w_rec_chunks):
    """lsnn_backward's loops; fills grad_x and each chunk's weight gradients."""
    n_batch, n_steps, n_hidden = spikes.shape
    n_inputs = x.shape[2]
    n_chunks = grad_w_rec_chunks.shape[0]
    zero, one = x.dtype.type(0), x.dtype.type(1)    # Python 0 and 1 would turn float32 maths into float64
    for chunk in prange(n_chunks):
        dv_next = np.zeros(n_hidden, x.dtype)       # dV_{t+1}
        dv = np.zeros(n_hidden, x.dtype)            # dV_t
        db = np.zeros(n_hidden, x.dtype)            # db_{t+1}, then db_t (updated in place)
        d_input = np.zeros(n_hidden, x.dtype)       # dI_{t+1}, then dI_t = (1 − ρ_V) dV_t (updated in place)
        psi = np.empty(n_hidden, x.dtype)           # ψ_t
        psi_dz = np.empty(n_hidden, x.dtype)        # ψ_t dz_t
        support = np.arange(n_hidden)               # the neurons with ψ_t ≠ 0 are support[:n_support]
        spiked = np.empty(n_hidden, np.int64)
        for n in range(chunk, n_batch, n_chunks):
            dv_next[:] = 0
            db[:] = 0
            d_input[:] = 0
            for t in range(n_steps - 1, -1, -1):
                surrogate_derivative(v_trace[n, t], threshold[n, t], allowed[n, t], dampening, psi)
                psi_dz[:] = 0
                n_support = active_indices(psi, support) if event_driven else n_hidden
                for a in range(n_support):
                    k = support[a]
                    recurrent = zero                          # (1 − ρ_V)(W_rec dV_{t+1})_k = (W_rec dI_{t+1})_k
                    for j in range(n_hidden):
                        recurrent += w_rec[k, j] * d_input[j]
                    dz = grad_spikes[n, t, k] + recurrent - threshold[n, t, k] * dv_next[k] + (one - rho_b) * db[k]
                    psi_dz[k] = psi[k] * dz
                for k in range(n_hidden):
                    d_threshold = -spikes[n, t, k] * dv_next[k] - psi_dz[k]
                    dv[k] = rho_v * dv_next[k] + psi_dz[k]
                    db[k] = rho_b * db[k] + beta * d_threshold
                    d_input[k] = (one - rho_v) * dv[k]
                for c in range(n_inputs):                     # dx_t = dI_t W_inᵀ, dW_in += x_tᵀ dI_t
                    projected = zero
                    for k in range(n_hidden):
                        projected += w_in[c, k] * d_input[k]
                        grad_w_in_chunks[chunk, c, k] += x[n, t, c] * d_input[k]
                    grad_x[n, t, c] = projected
                if t > 0:                                     # dW_rec += z_{t−1}ᵀ dI_t
                    add_spike_outer_product(grad_w_rec_chunks[chunk], spikes[n, t - 1], d_input, spiked,
                                            event_driven)
                dv, dv_next = dv_next, dv


@njit(cache=True, fastmath=FAST_MATH)
def add_spike_outer_product(grad_w, z, d_input, spiked, event_driven):
    """grad_w += zᵀ d_input: for a binary z, add d_input to the rows of the neurons that spiked."""
    n_hidden = z.shape[0]
    if event_driven:
        n_spiked = active_indices(z, spiked)
        for a in range(n_spiked):
            k = spiked[a]
            for j in range(n_hidden):
                grad_w[k, j] += d_input[j]
    else:
        for k in range(n_hidden):
            for j in range(n_hidden):
                grad_w[k, j] += z[k] * d_input[j]
