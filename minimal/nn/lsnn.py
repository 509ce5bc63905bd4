"""The paper's spiking RNN: an LSNN (Bellec et al. 2018) with spike-frequency adaptation (Supplementary Eq. 3, 4).

    x (N, T, C_in)                 inputs, e.g. the two ECG leads through a 4-tap delay line (8 channels, ~unit std)
    recurrence over t (Eq. 3)      spikes z (N, T, H) ∈ {0, 1}, H = 256 adaptive LIF neurons
    r = mean_t z_t                 (N, H)  firing rate of every neuron, in spikes per step
    logits = r W_out + b_out       (N, classes); the loss applies the softmax

Per step, with states starting at 0 (V_t, b_t below are the paper's V_{t+1}, b_{t+1}: the input x_t can already
cause the spike z_t):

    V_t = ρ_V V_{t−1} + (1 − ρ_V)(x_t W_in + z_{t−1} W_rec) − z_{t−1} B_{t−1}    ρ_V = exp(−dt/τ_mem)
    b_t = ρ_b b_{t−1} + (1 − ρ_b) z_{t−1}                                       ρ_b = exp(−dt/τ_adapt)
    B_t = b0 + β b_t                                                            adaptive threshold
    z_t = 1(V_t > B_t), but 0 while refractory: a neuron that spikes at t is silent at t+1 … t+refractory

The spike's derivative is the surrogate of Eq. 4, ∂z_t/∂V_t = d·max(1 − |(V_t − B_t)/B_t|, 0) (ops.spike).
W_rec's diagonal (a neuron's synapse onto itself) is fixed at 0: the forward pass multiplies W_rec by an
off-diagonal mask, so the diagonal also gets zero gradient and never moves during training.
Dropout (the paper's dropout baseline, only while training with an rng): m_t is also 0 for the neurons a mask k
(N, H) drops, for the whole sample (`LSNN.dropout_mask` says why there).

Two implementations of the same recurrence, tested equal (values and every gradient):
  path="reference"  step by step, the version to read next to Eq. 3. Written with `functional` (F): with Tensors
                    it is composed of autodiff ops (backward = the engine); with Intervals (minimal/interval.py)
                    the same lines bound the spikes of every network in a weight box (IBP).
  path="fused"      one op from the inputs to the rates r: a numba kernel over time and a hand-written BPTT
                    kernel (minimal/kernels/lsnn.py); the default, for training. When no gradient is wanted
                    (no_grad) the kernel keeps none of the states BPTT needs, only the rates. With Interval weights
                    it runs the interval kernel (minimal/kernels/lsnn_interval.py): the reference path's interval
                    operations, fused over time (the same bounds, ~2.5 times faster). Point inputs only.

`forward(x, params)` reads every weight from `params` (name -> tensor), so the attack can run the model at Θ*
and the mismatch sampler at Θ·(1 + ζN) without touching the model's own parameters.
"""
import numpy as np

from ..autodiff import Tensor, ops
from ..autodiff import tensor as autodiff_tensor
from ..autodiff.tensor import accumulate_grad
from .. import interval
from ..interval import Interval
from ..kernels import lsnn as kernels
from ..kernels import lsnn_interval as interval_kernels
from . import functional as F
from .layers import glorot_normal
from .module import Module, Parameter

# The BPTT kernel splits the batch into this many chunks, each summing its samples' weight gradients, and adds
# the chunks at the end. A fixed number rather than the thread count, so the sums are added in the same order on
# any number of threads: same seed, same numbers on one core or eight (up to 8 threads work at once).
BACKWARD_CHUNKS = 8
TARGET_RATE = 10 / 1000  # 10 Hz at dt = 1 ms, in spikes per step
RATE_REGULARISATION = 0.001


class LSNN(Module):
    """One recurrent layer of adaptive spiking neurons and a dense readout of their firing rates.

    Parameters (the attack perturbs them by these names): w_in (C_in, H), w_rec (H, H), w_out (H, classes),
    b_out (classes,).

    Initialisation, chosen so that neurons fire at a few percent of steps on inputs of unit std per channel:
    W_in and W_rec ~ N(0, 1/fan_in) (as Bellec et al.), so the input current x_t W_in has std ≈ 1 whatever C_in is.
    A neuron whose current stays near a positive value I fires at a rate r with r·B ≈ (1 − ρ_V) I (the charge
    flowing in equals the charge removed by the resets). The threshold starts tiny (b0 = 0.01) but grows with
    the rate, B ≈ b0 + β r, so 2r² ≈ 0.05 I: I ≈ 1 gives r ≈ 0.15, I ≈ 0.1 gives r ≈ 0.05, and neurons with a
    negative current stay silent. Measured at initialisation: 6% of neurons fire per step on unit-std white noise
    (2 or 40 channels) and 7% on the normalised ECG beats. b_out is 0, W_out Glorot normal times `readout_gain`.
    Glorot's scale is meant for inputs of size ~1, but the readout reads rates of ~0.1 spikes per step, so the
    first logits are ~0.1 and Adam, moving each weight by about lr per step, needs ~1000 steps to make them large
    enough to classify. The ECG task uses readout_gain = 10 (Glorot divided by the typical rate 0.1), which trains
    faster in its short budget (measured in docs/ecg-accuracy.md).
    """

    def __init__(self, rng, num_inputs, num_classes, num_hidden=256, dt=1.0, tau_mem=20.0, tau_adapt=98.0,
                 adaptation_strength=2.0, b0=0.01, refractory=2, dampening=0.3, dropout=0.0, readout_gain=1.0,
                 dtype=np.float32):
        self.w_in = Parameter((rng.standard_normal((num_inputs, num_hidden)) / np.sqrt(num_inputs)).astype(dtype))
        w_rec = rng.standard_normal((num_hidden, num_hidden)) / np.sqrt(num_hidden)
        np.fill_diagonal(w_rec, 0)
        self.w_rec = Parameter(w_rec.astype(dtype))
        w_out = readout_gain * glorot_normal((num_hidden, num_classes), num_hidden, num_classes, rng, np.float64)
        self.w_out = Parameter(w_out.astype(dtype))
        self.b_out = Parameter(np.zeros(num_classes, dtype=dtype))
        self.off_diagonal = ~np.eye(num_hidden, dtype=bool)
        self.num_inputs, self.num_hidden = num_inputs, num_hidden
        # ρ_V, ρ_b as Python floats: they take the dtype of the arrays they multiply (float32 stays float32)
        self.rho_v, self.rho_b = float(np.exp(-dt / tau_mem)), float(np.exp(-dt / tau_adapt))
        self.adaptation_strength, self.b0 = adaptation_strength, b0   # β and b0 of B_t = b0 + β b_t
        self.refractory, self.dampening = refractory, dampening
        self.event_driven = True  # fused kernels skip the work on silent neurons; False: dense (for the benchmark)
        self.dropout = dropout    # probability of silencing a hidden neuron for a whole sample while training

    def forward(self, x, params=None, path="fused", return_rate_loss=False, rng=None):
        """Logits (N, classes) for inputs x (N, T, C_in).

        params           : optional name -> tensor overrides (Θ* or a mismatch draw), or Intervals (IBP, with
                           either path; the logits are then Intervals); the model is not changed
        path             : "fused" (numba kernels) or "reference" (composed ops); same result
        return_rate_loss : also return the firing-rate regulariser, for `loss = cross_entropy + rate_loss`
        rng              : np.random.Generator for the dropout mask; without it (or in eval mode) no dropout
        """
        p = self.checked_parameters(params)
        x = self.checked_input(x)
        w_rec = F.mul(p["w_rec"], self.off_diagonal)
        dropout_mask = self.dropout_mask(x.shape[0], rng)
        if dropout_mask is not None:
            w_rec = F.mul(w_rec, self.kept_spike_scale)   # a kept neuron's spike counts 1/(1 − p) for the others
        if path == "fused":
            if F.has_interval(x):
                raise ValueError("the fused LSNN kernels take point inputs only; use path='reference' for an "
                                 "Interval input")
            if F.has_interval(p["w_in"], w_rec):
                rates = self.fused_interval_rates(x, p["w_in"], w_rec, dropout_mask)
            else:
                rates = self.fused_rates(x, p["w_in"], w_rec, dropout_mask)
        elif path == "reference":
            rates = F.mean(self.reference_spikes(x, p["w_in"], w_rec, dropout_mask), axis=1)
        else:
            raise ValueError(f"unknown LSNN path {path!r}; choose 'fused' or 'reference'")
        rate_loss = firing_rate_loss(rates) if return_rate_loss else None   # on the spikes the neurons fired
        if dropout_mask is not None:
            rates = F.mul(rates, self.kept_spike_scale)   # … and for the readout
        logits = F.linear(rates, p["w_out"], p["b_out"])
        return (logits, rate_loss) if return_rate_loss else logits

    def logits_and_penalty(self, x, params=None, rng=None):
        """Logits and the firing-rate regulariser, the two parts of the LSNN's training loss (rng: dropout)."""
        return self(x, params, return_rate_loss=True, rng=rng)

    def dropout_mask(self, n_batch, rng):
        """k (N, H) bool, False for the neurons dropped in each sample; None when there is no dropout (no rng,
        eval mode, or p = 0).

        Where: on the spikes, inside the recurrence, as the authors' code does (BPTT-Lipschitzness, RNN_Jax.py:
        z_t = mask · m_t · spike). A dropped neuron is silent for the whole sample: its spikes reach neither the
        other neurons nor the readout, and it is not reset or adapted. One mask per sample, held fixed over time
        (variational dropout, Gal & Ghahramani 2016): a fresh mask at every step would only add fast noise, which
        the membranes' low-pass (τ_mem = 20 steps) averages away; the authors draw one mask per minibatch,
        shared by its samples.

        Inverted dropout: while training, a kept neuron's spike reaches the other neurons and the readout with
        weight 1/(1 − p) (`kept_spike_scale`, applied to W_rec and to the rates), so that at evaluation, when all
        neurons fire unscaled, each neuron receives the recurrent input it was trained with. The spike itself
        stays 0 or 1 (the reset z·B and the adaptation need it binary). The authors' code does not rescale;
        here that cost 7 points: our LSNN trained with p = 0.3 and evaluated with every neuron firing reached
        87–90 % validation accuracy, and 96.7 % with W_rec × 0.7 at evaluation (docs/ecg-accuracy.md).
        """
        if rng is None or not self.training or self.dropout == 0:
            return None
        return rng.random((n_batch, self.num_hidden)) >= self.dropout

    @property
    def kept_spike_scale(self):
        """1/(1 − p): what a kept neuron's spike weighs for the others and the readout while training."""
        return 1.0 / (1.0 - self.dropout)

    def checked_parameters(self, overrides):
        """name -> tensor with the overrides applied, after checking every shape (the kernels do not check)."""
        p = self.parameter_dict(overrides)
        for name, own in self.named_parameters():
            if np.shape(p[name]) != own.shape:
                raise ValueError(f"LSNN parameter {name!r} must have shape {own.shape}, got {np.shape(p[name])}")
        return p

    def checked_input(self, x):
        """x as a Tensor (an Interval stays an Interval), after checking it is (batch, time, C_in)."""
        x = x if F.has_interval(x) else ops.as_tensor(x)
        if x.ndim != 3 or x.shape[2] != self.num_inputs:
            raise ValueError(f"LSNN input must have shape (batch, time, {self.num_inputs}), got {x.shape}")
        return x

    # ------------------------------------------------------------------------------------------- reference path
    def reference_spikes(self, x, w_in, w_rec, dropout_mask=None):
        """Spikes z (N, T, H) of Eq. 3, one time step at a time (dropout_mask: see `dropout_mask`).

        With Tensors every line is an autodiff op (BPTT = the engine's backward). With Intervals every state is an
        interval holding its value in every network of the weight box, and the same lines bound it:
          V_t  interval arithmetic; the reset z_{t−1}·B_{t−1} is a product of two intervals (four corners).
          B_t  b0 + β b_t, with b_t low-passing the spike intervals.
          z_t  [0, 0], [1, 1] or [0, 1] (interval.spike), then times the refractory mask m_t below.
          r_t  the refractory counter is an interval too: a neuron that spiked at t−1 in some networks of the box
               and not in others is refractory in some and not in others. m_t = 1(r_t = 0) is then [0, 1]:
               certainly allowed only if r_t is surely 0, certainly blocked only if r_t is surely > 0. The spike
               interval is widened only where it matters: z_t = spike·m_t is [0, 1] where the neuron may fire and
               may be blocked, but stays [0, 0] where it cannot fire anyway and [1, 1] where it surely fires and is
               surely allowed. r_{t+1} = where(z_t, refractory, max(r_t − 1, 0)) takes the hull of both branches
               where z_t is [0, 1]: [max(r̲_t − 1, 0), refractory]. This is exactly the range of the counter, given
               the ranges of z_t and r_t (it is increasing in both), so nothing is needlessly loose; what is lost
               is only the correlation between states (a network that did spike is the one that is refractory).
        The states start as plain zero arrays and become Tensors or Intervals from the first step on: +, −, * then
        work for both (F is needed only where a Tensor parameter may meet an Interval one).
        """
        n_batch, n_steps, _ = x.shape
        zeros = np.zeros((n_batch, self.num_hidden), dtype=np.result_type(x.dtype, w_rec.dtype))
        v, b, z = zeros, zeros, zeros                           # V_{−1}, b_{−1}, z_{−1}
        threshold = zeros + self.b0                             # B_{−1} (unused: z_{−1} = 0)
        refractory_left = zeros                                 # r_0: steps each neuron must still stay silent
        spikes = []
        for t in range(n_steps):
            synaptic = F.add(F.matmul(x[:, t], w_in), F.matmul(z, w_rec))     # x_t W_in + z_{t−1} W_rec
            v = self.rho_v * v + (1 - self.rho_v) * synaptic - z * threshold
            b = self.rho_b * b + (1 - self.rho_b) * z
            threshold = self.b0 + self.adaptation_strength * b
            allowed = F.equal(refractory_left, 0)                               # m_t = 1(r_t = 0): no gradient
            if dropout_mask is not None:
                allowed = allowed * dropout_mask                                # … times k: dropped neurons silent
            z = F.spike(v, threshold, self.dampening) * allowed
            refractory_left = F.where(z, self.refractory, F.relu(refractory_left - 1))   # r_{t+1}
            spikes.append(F.reshape(z, (n_batch, 1, self.num_hidden)))
        return F.concatenate(spikes, axis=1)

    # ------------------------------------------------------------------------------------------- fused path
    def fused_rates(self, x, w_in, w_rec, dropout_mask=None):
        """The firing rates r = mean_t z_t (N, H) from one op: the numba forward kernel (which also averages over
        time), with the BPTT kernel as its backward. The average is part of the op so that its gradient
        ∂E/∂z_t = ∂E/∂r / T reaches the kernel as a broadcast view of ∂E/∂r (N, H). As separate ops (spikes, then
        F.mean), the engine built that (N, T, H) gradient, 10 MB at batch 100, and in an order that took another
        2 ms to make contiguous for the kernel."""
        x, w_in, w_rec = (ops.as_tensor(a) for a in (x, w_in, w_rec))
        arrays = contiguous_common_dtype(x.data, w_in.data, w_rec.data)
        if not builds_graph(x, w_in, w_rec):       # evaluation (no_grad, or constants): keep nothing for BPTT
            c = self.kernel_constants(arrays[0].dtype)
            return Tensor(kernels.lsnn_rates(*arrays, c["rho_v"], c["rho_b"], c["b0"], c["adaptation_strength"],
                                             self.refractory, self.event_driven, dropout_mask))
        states = self.run_kernel(*arrays, dropout_mask=dropout_mask)
        n_batch, n_steps, _ = states.spikes.shape
        c = self.kernel_constants(states.threshold.dtype)

        def backward(grad_rates):                   # ∂E/∂z_t = ∂E/∂r / T for every t
            grad_spikes = np.broadcast_to(grad_rates[:, None, :] / n_steps, states.spikes.shape)
            n_chunks = min(BACKWARD_CHUNKS, n_batch)
            grad_x, grad_w_in, grad_w_rec = kernels.lsnn_backward(
                grad_spikes, *arrays, states.threshold, states.spikes, states.surrogate, c["rho_v"], c["rho_b"],
                c["adaptation_strength"], n_chunks, self.event_driven)
            accumulate_grad(x, grad_x)
            accumulate_grad(w_in, grad_w_in)
            accumulate_grad(w_rec, grad_w_rec)
        return Tensor.from_op(states.rates, (x, w_in, w_rec), backward)

    def fused_interval_rates(self, x, w_in, w_rec, dropout_mask=None):
        """Bounds of the firing rates (an Interval (N, H)) of every network with W_in and W_rec in the given boxes,
        on point inputs x: the interval kernel (kernels/lsnn_interval.py), equal bit for bit to the reference path
        on Intervals when both weights are boxes of some width. When both are points (ζ = 0) it is the point
        kernel's result, as the reference path's interval operations on points are the point operations."""
        w_in, w_rec = interval.as_interval(w_in), interval.as_interval(w_rec)
        x = np.asarray(getattr(x, "data", x))
        if interval.is_point(w_in) and interval.is_point(w_rec):
            return Interval.point(self.fused_rates(x, w_in.lo, w_rec.lo, dropout_mask).data)
        x, w_in_lo, w_in_hi, w_rec_lo, w_rec_hi = contiguous_common_dtype(x, w_in.lo, w_in.hi, w_rec.lo, w_rec.hi)
        lower, upper = interval_kernels.interval_rates(x, w_in_lo, w_in_hi, w_rec_lo, w_rec_hi, self.rho_v,
                                                       self.rho_b, self.b0, self.adaptation_strength,
                                                       self.refractory, dropout_mask)
        return Interval(lower, upper)

    def run_kernel(self, x, w_in, w_rec, keep_v=False, dropout_mask=None):
        """The forward kernel on arrays: kernels.ForwardStates (V if keep_v, B, z, ψ = ∂z/∂V, the rates r)."""
        x, w_in, w_rec = contiguous_common_dtype(x, w_in, w_rec)
        c = self.kernel_constants(x.dtype)
        return kernels.lsnn_forward(x, w_in, w_rec, c["rho_v"], c["rho_b"], c["b0"], c["adaptation_strength"],
                                    c["dampening"], self.refractory, self.event_driven, keep_v, dropout_mask)

    def kernel_constants(self, dtype):
        """ρ_V, ρ_b, b0, β, d as scalars of the data's dtype (so float32 arrays stay float32 inside the kernels)."""
        scalar = np.dtype(dtype).type
        return {"rho_v": scalar(self.rho_v), "rho_b": scalar(self.rho_b), "b0": scalar(self.b0),
                "adaptation_strength": scalar(self.adaptation_strength), "dampening": scalar(self.dampening)}

    # ------------------------------------------------------------------------------------------- inspection
    def record_state(self, x, params=None):
        """Arrays (N, T, H) of the membrane potential V, threshold B and spikes z, for plots such as the
        histogram of V relative to B (Fig. S10). No gradient is built."""
        p = {name: getattr(value, "data", value) for name, value in self.checked_parameters(params).items()}
        x = self.checked_input(getattr(x, "data", x)).data
        states = self.run_kernel(x, p["w_in"], p["w_rec"] * self.off_diagonal, keep_v=True)
        return {"v": states.v, "threshold": states.threshold, "spikes": states.spikes.astype(states.v.dtype)}


def membrane_histogram(model, split, bin_edges, batch_size=250):
    """Histogram of (V − B)/B over every sample, time step and neuron of the split (Fig. S10).

    (V − B)/B is the membrane potential V measured from the adaptive threshold B in units of B: 0 is the
    threshold, and |(V − B)/B| < 1 is where the surrogate gradient (Eq. 4) is nonzero, the band in which a small
    change of the weights can add or remove a spike. Dividing by B also makes neurons whose thresholds have
    adapted to different heights comparable.

    Returns the density (counts / (all values · bin width): the area under it is the fraction of values inside
    the edges), the fraction near threshold (|(V − B)/B| < 1) and the fraction outside the edges.
    """
    counts, near, total = np.zeros(len(bin_edges) - 1), 0, 0
    for start in range(0, len(split), batch_size):
        state = model.record_state(split.x[start:start + batch_size])
        relative = (state["v"] - state["threshold"]) / state["threshold"]
        counts += np.histogram(relative, bin_edges)[0]
        near += np.count_nonzero(np.abs(relative) < 1)
        total += relative.size
    return {"density": counts / (total * np.diff(bin_edges)), "near_threshold": near / total,
            "outside": 1 - counts.sum() / total}


def firing_rate_loss(rates, strength=RATE_REGULARISATION, target=TARGET_RATE):
    """strength · mean over neurons j of (r_j − target)², r_j = neuron j's spikes per step averaged over the batch
    and time (rates: (N, H) time-averaged spikes). Pulls every neuron toward 10 Hz."""
    per_neuron = ops.mean(rates, axis=0)
    return strength * ops.mean((per_neuron - target) ** 2)


def builds_graph(*tensors):
    """True if an op on these tensors joins the autodiff graph: grad is enabled (not inside no_grad) and one of them
    requires a gradient. (The rule of Tensor.from_op.)"""
    return autodiff_tensor._grad_enabled and any(t.requires_grad for t in tensors)


def contiguous_common_dtype(*arrays):
    """The arrays as C-contiguous arrays of one dtype (what the numba kernels expect); no copy when they are."""
    dtype = np.result_type(*arrays)
    return tuple(np.ascontiguousarray(a, dtype=dtype) for a in arrays)
