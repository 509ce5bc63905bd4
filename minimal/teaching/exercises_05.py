"""Graders of notebook 05 (the spiking network, Supplementary Eq. 3, 4): 5.1 the membrane update V_t, 5.2 the
adaptive threshold B_t, 5.3 the pseudo-derivative ψ_t, 5.4 the BPTT line ∂E/∂V_t — each against the LSNN's plain
NumPy reference, minimal/kernels/lsnn_reference.py (the equations the numba kernels are tested equal to)."""
import numpy as np

from ..kernels import lsnn_reference
from .grading import compare_arrays, fail, grader
from .models import tiny_lsnn


def reference_run(seed=0, n_batch=6, n_steps=40, num_inputs=3, num_hidden=16):
    """A small LSNN (the library's initialisation and constants, float64) run by the reference forward on random
    inputs: name -> array (x, w_in, w_rec, v, threshold, spikes, allowed) and its constants (rho_v, rho_b, b0,
    adaptation_strength, dampening, refractory). Inputs of std 2 make the neurons fire often, so the resets,
    the adaptation and the refractory mask all matter."""
    model = tiny_lsnn(seed, num_inputs=num_inputs, num_hidden=num_hidden)
    w_in, w_rec = (p.data.astype(np.float64) for p in (model.w_in, model.w_rec))
    x = 2.0 * np.random.default_rng(seed + 100).standard_normal((n_batch, n_steps, num_inputs))
    constants = {"rho_v": model.rho_v, "rho_b": model.rho_b, "b0": model.b0,
                 "adaptation_strength": model.adaptation_strength, "dampening": model.dampening,
                 "refractory": model.refractory}
    v, threshold, spikes, allowed = lsnn_reference.forward(
        x, w_in, w_rec, model.rho_v, model.rho_b, model.b0, model.adaptation_strength, model.refractory)
    return {"x": x, "w_in": w_in, "w_rec": w_rec, "v": v, "threshold": threshold, "spikes": spikes,
            "allowed": allowed, **constants}


def consecutive_steps(run, name):
    """(the values at t − 1, the values at t) of a (N, T, H) trace for t = 1 … T−1, each as rows (N·(T−1), H)."""
    trace = run[name]
    rows = trace.shape[0] * (trace.shape[1] - 1)
    return trace[:, :-1].reshape(rows, -1), trace[:, 1:].reshape(rows, -1)


# ---------------------------------------------------------------------------------------------------- 5.1
@grader("5.1")
def check_membrane_update(membrane_update):
    """membrane_update(v_prev, x_t, z_prev, threshold_prev, w_in, w_rec, rho_v) -> V_t (Eq. 3), rows of a batch,
    against the membrane potentials of the reference forward at every step of a small network."""
    run = reference_run()
    v_prev, v = consecutive_steps(run, "v")
    z_prev, _ = consecutive_steps(run, "spikes")
    threshold_prev, _ = consecutive_steps(run, "threshold")
    x_t = run["x"][:, 1:].reshape(len(v), -1)
    w_in, w_rec, rho_v = run["w_in"], run["w_rec"], run["rho_v"]
    synaptic = x_t @ w_in + z_prev @ w_rec
    slips = [("the reset is missing: a spike at t − 1 lowers V_t by the threshold it crossed, − z_{t−1} B_{t−1}",
              rho_v * v_prev + (1 - rho_v) * synaptic),
             ("W_rec is transposed: W_rec[i, j] is the synapse from neuron i to neuron j, so the recurrent input "
              "is the row vector z_{t−1} W_rec", rho_v * v_prev + (1 - rho_v) * (x_t @ w_in + z_prev @ w_rec.T)
              - z_prev * threshold_prev),
             ("the input is not scaled by (1 − ρ_V): V_t = ρ_V V_{t−1} + (1 − ρ_V) I_t − z_{t−1} B_{t−1}",
              rho_v * v_prev + synaptic - z_prev * threshold_prev),
             ("ρ_V and (1 − ρ_V) are swapped: the old potential keeps the factor ρ_V = e^(−dt/τ_mem) ≈ 0.95",
              (1 - rho_v) * v_prev + rho_v * synaptic - z_prev * threshold_prev),
             ("the recurrent input z_{t−1} W_rec is missing", rho_v * v_prev + (1 - rho_v) * (x_t @ w_in)
              - z_prev * threshold_prev),
             ("the reset sets V to 0 (multiplies by 1 − z); this LSNN subtracts the threshold, − z_{t−1} B_{t−1}",
              (1 - z_prev) * rho_v * v_prev + (1 - rho_v) * synaptic)]
    got = membrane_update(v_prev.copy(), x_t.copy(), z_prev.copy(), threshold_prev.copy(), w_in.copy(),
                          w_rec.copy(), rho_v)
    compare_arrays("5.1", f"V_t ({len(v)} rows of 16 neurons, {int(z_prev.sum())} of them after a spike)", got, v,
                   slips)
    return f"V_t of every step equals the reference forward's, {int(z_prev.sum())} resets included"


# ---------------------------------------------------------------------------------------------------- 5.2
@grader("5.2")
def check_adaptive_threshold(adaptive_threshold):
    """adaptive_threshold(b_prev, z_prev, rho_b, b0, adaptation_strength) -> (b_t, B_t), against the reference
    forward's thresholds (b_t = (B_t − b0)/β) at every step."""
    run = reference_run()
    threshold_prev, threshold = consecutive_steps(run, "threshold")
    z_prev, _ = consecutive_steps(run, "spikes")
    rho_b, b0, beta = run["rho_b"], run["b0"], run["adaptation_strength"]
    b_prev, b = (threshold_prev - b0) / beta, (threshold - b0) / beta
    result = adaptive_threshold(b_prev.copy(), z_prev.copy(), rho_b, b0, beta)
    if not isinstance(result, tuple) or len(result) != 2:
        fail("5.2", f"return the tuple (b_t, B_t), got {type(result).__name__}")
    got_b, got_threshold = result
    compare_arrays("5.2", "the adaptation variable b_t", got_b, b, [
        ("the spike is not scaled by (1 − ρ_b): b_t = ρ_b b_{t−1} + (1 − ρ_b) z_{t−1}", rho_b * b_prev + z_prev),
        ("ρ_b and (1 − ρ_b) are swapped: b keeps the factor ρ_b = e^(−dt/τ_adapt) ≈ 0.99 and forgets slowly",
         (1 - rho_b) * b_prev + rho_b * z_prev),
        ("the threshold itself was low-passed; b_t is the low-passed spike train and B_t = b0 + β b_t is computed "
         "from it", rho_b * threshold_prev + (1 - rho_b) * z_prev)])
    compare_arrays("5.2", "the threshold B_t", got_threshold, threshold, [
        ("b0 is missing: B_t = b0 + β b_t (a neuron that never spiked has the threshold b0)", beta * b),
        ("the adaptation strength β is missing: B_t = b0 + β b_t", b0 + b),
        ("b0 and β are swapped: B_t = b0 + β b_t, with b0 = 0.01 and β = 2", beta + b0 * b)])
    return f"b_t and B_t = b0 + β b_t of every step equal the reference forward's (B up to {threshold.max():.3f})"


# ---------------------------------------------------------------------------------------------------- 5.3
@grader("5.3")
def check_pseudo_derivative(pseudo_derivative):
    """pseudo_derivative(v, threshold, allowed, dampening) -> ψ = m·d·max(1 − |(V − B)/B|, 0) (Eq. 4), against
    lsnn_reference.surrogate on every state of the reference forward."""
    run = reference_run()
    v, threshold, allowed, d = run["v"], run["threshold"], run["allowed"], run["dampening"]
    expected = lsnn_reference.surrogate(v, threshold, allowed, d)
    triangle = np.maximum(1 - np.abs((v - threshold) / threshold), 0)
    slips = [("the refractory mask is missing: a neuron that may not fire (m_t = 0) passes no gradient",
              d * triangle),
             ("the distance is not measured in units of B: Eq. 4 has |(V − B)/B|",
              allowed * d * np.maximum(1 - np.abs(v - threshold), 0)),
             ("the max(…, 0) is missing: far from the threshold ψ is 0, not negative",
              allowed * d * (1 - np.abs((v - threshold) / threshold))),
             ("the dampening d is missing: the triangle's height is d = 0.3", allowed * triangle),
             ("the triangle is centred on V = 0; it is centred on the threshold, |(V − B)/B|",
              allowed * d * np.maximum(1 - np.abs(v / threshold), 0))]
    got = pseudo_derivative(v.copy(), threshold.copy(), allowed.copy(), d)
    blocked = int(np.sum((allowed == 0) & (triangle > 0)))
    compare_arrays("5.3", f"ψ on {v.size} neuron-steps", got, expected, slips)
    return (f"ψ equals lsnn_reference.surrogate on {v.size} neuron-steps, {blocked} of them near the threshold "
            f"but blocked by the refractory mask")


# ---------------------------------------------------------------------------------------------------- 5.4
@grader("5.4")
def check_membrane_gradient(membrane_gradient):
    """membrane_gradient(e_t, dv_next, db_next, psi_t, threshold_t, w_rec, rho_v, rho_b) -> ∂E/∂V_t: first on one
    step with random incoming gradients (naming the usual slips), then inside the reference's whole BPTT loop,
    whose gradients of x, W_in and W_rec must equal lsnn_reference.backward's."""
    run = reference_run()
    rng = np.random.default_rng(5)
    t = 20
    e_t, dv_next, db_next = (rng.standard_normal(run["v"][:, t].shape) for _ in range(3))
    psi_t = lsnn_reference.surrogate(run["v"][:, t], run["threshold"][:, t], run["allowed"][:, t],
                                     run["dampening"])
    threshold_t, w_rec, rho_v, rho_b = run["threshold"][:, t], run["w_rec"], run["rho_v"], run["rho_b"]

    def dv(dz):
        return rho_v * dv_next + psi_t * dz
    dz = e_t + (1 - rho_v) * dv_next @ w_rec.T - threshold_t * dv_next + (1 - rho_b) * db_next
    slips = [("the leak is missing: V_{t+1} = ρ_V V_t + …, so ∂E/∂V_t collects ρ_V ∂E/∂V_{t+1} directly",
              psi_t * dz),
             ("the reset is missing from ∂E/∂z_t: z_t lowers V_{t+1} by B_t, which sends − B_t ∂E/∂V_{t+1} back",
              dv(dz + threshold_t * dv_next)),
             ("the adaptation is missing from ∂E/∂z_t: z_t raises b_{t+1} by (1 − ρ_b) z_t, which sends "
              "(1 − ρ_b) ∂E/∂b_{t+1} back", dv(dz - (1 - rho_b) * db_next)),
             ("W_rec is not transposed: the forward's z_t W_rec goes back as ∂E/∂V_{t+1} W_recᵀ",
              dv(dz - (1 - rho_v) * dv_next @ w_rec.T + (1 - rho_v) * dv_next @ w_rec)),
             ("the recurrent term lacks (1 − ρ_V): V_{t+1} receives (1 − ρ_V) z_t W_rec",
              dv(dz + rho_v * dv_next @ w_rec.T)),
             ("ψ_t is missing: ∂E/∂z_t reaches V_t through the spike's pseudo-derivative, ψ_t ∂E/∂z_t",
              rho_v * dv_next + dz)]
    got = membrane_gradient(e_t.copy(), dv_next.copy(), db_next.copy(), psi_t.copy(), threshold_t.copy(),
                            w_rec.copy(), rho_v, rho_b)
    compare_arrays("5.4", f"∂E/∂V_t at step {t} for random ∂E/∂z_t, ∂E/∂V_{{t+1}}, ∂E/∂b_{{t+1}}", got, dv(dz),
                   slips)
    grad_spikes = np.random.default_rng(6).standard_normal(run["spikes"].shape)
    expected = lsnn_reference.backward(grad_spikes, *(run[k] for k in ("x", "w_in", "w_rec", "v", "threshold",
                                                                       "spikes", "allowed", "rho_v", "rho_b",
                                                                       "adaptation_strength", "dampening")))
    got = backward_with(membrane_gradient, grad_spikes, run)
    for name, got_grad, expected_grad in zip(("x", "W_in", "W_rec"), got, expected):
        compare_arrays("5.4", f"∂E/∂{name} of the whole BPTT loop with your line in it", got_grad, expected_grad,
                       rtol=1e-6, atol=1e-9)
    return (f"one step right, and the whole BPTT over {run['v'].shape[1]} steps with your line gives "
            f"lsnn_reference.backward's ∂E/∂x, ∂E/∂W_in, ∂E/∂W_rec")


def backward_with(membrane_gradient, grad_spikes, run):
    """lsnn_reference.backward's loop with ∂E/∂V_t computed by the student's membrane_gradient."""
    x, w_in, w_rec, rho_v, rho_b, beta = (run[k] for k in ("x", "w_in", "w_rec", "rho_v", "rho_b",
                                                           "adaptation_strength"))
    n_batch, n_steps, n_hidden = run["spikes"].shape
    dv_next, db_next = np.zeros((n_batch, n_hidden)), np.zeros((n_batch, n_hidden))
    grad_x, grad_w_in, grad_w_rec = np.zeros_like(x), np.zeros_like(w_in), np.zeros_like(w_rec)
    for t in reversed(range(n_steps)):
        threshold_t, spikes_t = run["threshold"][:, t], run["spikes"][:, t]
        psi = lsnn_reference.surrogate(run["v"][:, t], threshold_t, run["allowed"][:, t], run["dampening"])
        dz = grad_spikes[:, t] + (1 - rho_v) * dv_next @ w_rec.T - threshold_t * dv_next + (1 - rho_b) * db_next
        dv = np.asarray(membrane_gradient(grad_spikes[:, t].copy(), dv_next.copy(), db_next.copy(), psi.copy(),
                                          threshold_t.copy(), w_rec.copy(), rho_v, rho_b))
        db = rho_b * db_next + beta * (-spikes_t * dv_next - psi * dz)
        grad_x[:, t] = (1 - rho_v) * dv @ w_in.T
        grad_w_in += (1 - rho_v) * x[:, t].T @ dv
        if t > 0:
            grad_w_rec += (1 - rho_v) * run["spikes"][:, t - 1].T @ dv
        dv_next, db_next = dv, db
    return grad_x, grad_w_in, grad_w_rec
