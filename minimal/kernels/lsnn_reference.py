"""The LSNN (Supplementary Eq. 3, 4) and its backpropagation through time in plain vectorised NumPy, one line per
dependency: what the numba kernels in lsnn.py must equal (the tests hold them equal, in float64).

Forward, per time step t (all states start at 0; the paper's V_{t+1}, b_{t+1} are our V_t, b_t):

    V_t = ρ_V V_{t−1} + (1 − ρ_V)(x_t W_in + z_{t−1} W_rec) − z_{t−1} B_{t−1}
    b_t = ρ_b b_{t−1} + (1 − ρ_b) z_{t−1}
    B_t = b0 + β b_t                                   (β: the adaptation strength, not the paper's β_rob)
    m_t = 1(r_t = 0) · k                               refractory counter r_t, dropout mask k (fixed over time)
    z_t = m_t · 1(V_t > B_t)
    r_{t+1} = refractory if z_t else max(r_t − 1, 0)

Backward, from the last step to the first, for a loss E with ∂E/∂z_t given (e_t). Each state's gradient collects
every later quantity that used it; ψ_t = ∂z_t/∂V_t is the surrogate of Eq. 4, and m_t carries no gradient:

    dz_t = e_t + (1 − ρ_V) dV_{t+1} W_recᵀ − B_t dV_{t+1} + (1 − ρ_b) db_{t+1}     z_t feeds V_{t+1} and b_{t+1}
    dB_t = −z_t dV_{t+1} − ψ_t dz_t                    B_t is subtracted by the reset, and sets the spike
    dV_t = ρ_V dV_{t+1} + ψ_t dz_t
    db_t = ρ_b db_{t+1} + β dB_t
    dx_t = (1 − ρ_V) dV_t W_inᵀ,   dW_in += (1 − ρ_V) x_tᵀ dV_t,   dW_rec += (1 − ρ_V) z_{t−1}ᵀ dV_t
"""
import numpy as np


def forward(x, w_in, w_rec, rho_v, rho_b, b0, adaptation_strength, refractory, dropout_mask=True):
    """Eq. 3 one time step at a time, vectorised over batch and neurons. Returns V, B, z, m, each (N, T, H).
    dropout_mask (N, H) bool: False keeps that neuron silent (m = 0) at every step; True: no dropout."""
    n_batch, n_steps, _ = x.shape
    n_hidden = w_rec.shape[0]
    v, b, z = (np.zeros((n_batch, n_hidden)) for _ in range(3))
    threshold = np.full((n_batch, n_hidden), b0)
    refractory_left = np.zeros((n_batch, n_hidden), dtype=int)
    trace = {name: np.zeros((n_batch, n_steps, n_hidden)) for name in ("v", "threshold", "spikes", "allowed")}
    for t in range(n_steps):
        v = rho_v * v + (1 - rho_v) * (x[:, t] @ w_in + z @ w_rec) - z * threshold
        b = rho_b * b + (1 - rho_b) * z
        threshold = b0 + adaptation_strength * b
        allowed = (refractory_left == 0) & dropout_mask
        z = (allowed & (v > threshold)).astype(float)
        refractory_left = np.where(z > 0, refractory, np.maximum(refractory_left - 1, 0))
        for name, value in zip(trace, (v, threshold, z, allowed)):
            trace[name][:, t] = value
    return trace["v"], trace["threshold"], trace["spikes"], trace["allowed"]


def surrogate(v, threshold, allowed, dampening):
    """Eq. 4: ψ = ∂z/∂V = m · d · max(1 − |(V − B)/B|, 0)."""
    return allowed * dampening * np.maximum(1 - np.abs((v - threshold) / threshold), 0)


def backward(grad_spikes, x, w_in, w_rec, v, threshold, spikes, allowed, rho_v, rho_b, adaptation_strength,
             dampening):
    """The BPTT equations of the module docstring, dense and vectorised over the batch; returns the gradients
    of x, W_in and W_rec, given grad_spikes = ∂E/∂z (N, T, H) and the forward's V, B, z, m."""
    n_batch, n_steps, n_hidden = spikes.shape
    dv_next, db_next = np.zeros((n_batch, n_hidden)), np.zeros((n_batch, n_hidden))
    grad_x, grad_w_in, grad_w_rec = np.zeros_like(x), np.zeros_like(w_in), np.zeros_like(w_rec)
    for t in reversed(range(n_steps)):
        psi = surrogate(v[:, t], threshold[:, t], allowed[:, t], dampening)
        dz = grad_spikes[:, t] + (1 - rho_v) * dv_next @ w_rec.T - threshold[:, t] * dv_next + (1 - rho_b) * db_next
        d_threshold = -spikes[:, t] * dv_next - psi * dz
        dv = rho_v * dv_next + psi * dz
        db = rho_b * db_next + adaptation_strength * d_threshold
        grad_x[:, t] = (1 - rho_v) * dv @ w_in.T
        grad_w_in += (1 - rho_v) * x[:, t].T @ dv
        if t > 0:
            grad_w_rec += (1 - rho_v) * spikes[:, t - 1].T @ dv
        dv_next, db_next = dv, db
    return grad_x, grad_w_in, grad_w_rec
