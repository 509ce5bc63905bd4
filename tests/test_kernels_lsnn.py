"""The LSNN kernels (minimal/kernels/lsnn.py) against their readable reference (minimal/kernels/lsnn_reference.py:
Eq. 3 and its BPTT equations in plain NumPy), in float64, on small odd shapes where neurons spike, adapt and are
refractory."""
import numpy as np
import pytest

from minimal.kernels import lsnn as kernels
from minimal.kernels import lsnn_reference as reference

RHO_V, RHO_B, B0, ADAPTATION_STRENGTH, DAMPENING = np.exp(-1 / 20), np.exp(-1 / 98), 0.01, 2.0, 0.3


def numpy_forward(x, w_in, w_rec, refractory, dropout_mask=True):
    return reference.forward(x, w_in, w_rec, RHO_V, RHO_B, B0, ADAPTATION_STRENGTH, refractory, dropout_mask)


def numpy_surrogate(v, threshold, allowed):
    return reference.surrogate(v, threshold, allowed, DAMPENING)


def numpy_backward(grad_spikes, x, w_in, w_rec, v, threshold, spikes, allowed):
    return reference.backward(grad_spikes, x, w_in, w_rec, v, threshold, spikes, allowed, RHO_V, RHO_B,
                              ADAPTATION_STRENGTH, DAMPENING)


def spiking_problem(n_batch, n_steps, n_inputs, n_hidden, seed):
    """Inputs and weights (float64) that make a good share of the neurons spike; W_rec has a zero diagonal."""
    rng = np.random.default_rng(seed)
    x = 2 * rng.standard_normal((n_batch, n_steps, n_inputs))
    w_in = rng.standard_normal((n_inputs, n_hidden)) / np.sqrt(n_inputs)
    w_rec = rng.standard_normal((n_hidden, n_hidden)) / np.sqrt(n_hidden)
    np.fill_diagonal(w_rec, 0)
    return x, w_in, w_rec


def run_forward(x, w_in, w_rec, refractory, event_driven=True, keep_v=True, dropout_mask=None):
    """The kernel's (V, B, z, ψ)."""
    return kernels.lsnn_forward(x, w_in, w_rec, RHO_V, RHO_B, B0, ADAPTATION_STRENGTH, DAMPENING, refractory,
                                event_driven, keep_v, dropout_mask)


def run_backward(grad_spikes, x, w_in, w_rec, states, n_chunks, event_driven=True):
    return kernels.lsnn_backward(grad_spikes, x, w_in, w_rec, states.threshold, states.spikes, states.surrogate,
                                 RHO_V, RHO_B, ADAPTATION_STRENGTH, n_chunks, event_driven)


SHAPES = [(1, 9, 1, 5), (3, 23, 3, 17), (5, 40, 2, 32)]  # (batch, time, inputs, hidden)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("refractory", [0, 2, 3])
def test_forward_kernel_matches_numpy_loop(shape, refractory):
    x, w_in, w_rec = spiking_problem(*shape, seed=sum(shape) + refractory)
    v, threshold, spikes, allowed = numpy_forward(x, w_in, w_rec, refractory)
    expected = v, threshold, spikes, numpy_surrogate(v, threshold, allowed)
    for event_driven in (True, False):
        got = run_forward(x, w_in, w_rec, refractory, event_driven)
        assert got.spikes.dtype == bool
        for name, g, want in zip(("v", "threshold", "spikes", "surrogate"), got, expected):
            np.testing.assert_allclose(g, want, rtol=1e-12, atol=1e-14, err_msg=name)
        np.testing.assert_array_equal(got.rates, spikes.mean(axis=1))
        without_v = run_forward(x, w_in, w_rec, refractory, event_driven, keep_v=False)
        assert without_v[0] is None
        for g, want in zip(without_v[1:], got[1:]):
            np.testing.assert_array_equal(g, want)
    assert spikes.mean() > 0.1, "the test inputs should make neurons spike"


@pytest.mark.parametrize("shape", SHAPES[1:])
def test_problem_exercises_refractoriness_and_adaptation(shape):
    """The test inputs reach every branch: spikes, refractory steps that block a threshold crossing, and
    thresholds well above b0 (adaptation)."""
    v, threshold, spikes, allowed = numpy_forward(*spiking_problem(*shape, seed=sum(shape) + 2), refractory=2)
    assert spikes.mean() > 0.1
    assert (allowed == 0).mean() > 0.1
    assert ((allowed == 0) & (v > threshold)).sum() > 100
    assert threshold.max() > 10 * B0


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("n_chunks", [1, 2, 3])
def test_backward_kernel_matches_numpy_bptt(shape, n_chunks):
    x, w_in, w_rec = spiking_problem(*shape, seed=7 * sum(shape))
    states = run_forward(x, w_in, w_rec, refractory=2)
    grad_spikes = np.random.default_rng(1).standard_normal(states[2].shape)
    expected = numpy_backward(grad_spikes, x, w_in, w_rec, *numpy_forward(x, w_in, w_rec, refractory=2))
    for event_driven in (True, False):
        got = run_backward(grad_spikes, x, w_in, w_rec, states, min(n_chunks, shape[0]), event_driven)
        for name, g, want in zip(("x", "w_in", "w_rec"), got, expected):
            np.testing.assert_allclose(g, want, rtol=1e-9, atol=1e-12 * np.abs(want).max(), err_msg=name)


@pytest.mark.parametrize("shape", SHAPES[1:])
def test_dropout_mask_silences_neurons_in_forward_and_backward(shape):
    """A dropped neuron is handled as always refractory: the kernels equal the NumPy loops given the same mask."""
    x, w_in, w_rec = spiking_problem(*shape, seed=3 * sum(shape))
    mask = np.random.default_rng(0).random((shape[0], shape[3])) >= 0.3
    v, threshold, spikes, allowed = numpy_forward(x, w_in, w_rec, 2, mask)
    states = run_forward(x, w_in, w_rec, 2, dropout_mask=mask)
    for name, got, want in zip(("v", "threshold", "spikes", "surrogate"), states,
                               (v, threshold, spikes, numpy_surrogate(v, threshold, allowed))):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14, err_msg=name)
    assert np.all(states.rates[~mask] == 0) and states.rates[mask].mean() > 0.05
    grad_spikes = np.random.default_rng(1).standard_normal(spikes.shape)
    expected = numpy_backward(grad_spikes, x, w_in, w_rec, v, threshold, spikes, allowed)
    for name, got, want in zip(("x", "w_in", "w_rec"), run_backward(grad_spikes, x, w_in, w_rec, states, 2), expected):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12 * np.abs(want).max(), err_msg=name)
    with pytest.raises(ValueError, match="dropout mask must have shape"):
        run_forward(x, w_in, w_rec, 2, dropout_mask=mask[:1])


def test_backward_accepts_a_gradient_broadcast_over_time():
    """The model passes ∂E/∂z_t = ∂E/∂r / T as a read-only view, stride 0 along time: same result as a copy."""
    x, w_in, w_rec = spiking_problem(3, 23, 2, 17, seed=5)
    states = run_forward(x, w_in, w_rec, refractory=2)
    grad_rates = np.random.default_rng(2).standard_normal((3, 17))
    view = np.broadcast_to(grad_rates[:, None, :], states[2].shape)
    for got, want in zip(run_backward(view, x, w_in, w_rec, states, 2),
                         run_backward(np.ascontiguousarray(view), x, w_in, w_rec, states, 2)):
        np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("n_rows", range(10))
def test_row_helpers_match_numpy(n_rows):
    """add_rows and add_row_products work four rows at a time, then one by one: every remainder 0 … 3."""
    rng = np.random.default_rng(n_rows)
    w, vector, out = rng.standard_normal((12, 7)), rng.standard_normal(7), rng.standard_normal(7)
    rows = rng.permutation(12)
    got = out.copy()
    kernels.add_rows(w, rows, n_rows, got)
    np.testing.assert_allclose(got, out + w[rows[:n_rows]].sum(axis=0), rtol=1e-12)
    out = rng.standard_normal(12)
    got = out.copy()
    kernels.add_row_products(w, rows, n_rows, vector, got)
    want = out.copy()
    want[rows[:n_rows]] += w[rows[:n_rows]] @ vector
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_surrogate_is_eq4():
    """∂z/∂V = d·max(1 − |(V − B)/B|, 0): 0 far from B, d at B, linear in between, 0 while refractory."""
    v = [-0.2, 0.0, 0.025, 0.05, 0.06, 0.1, 0.3]
    got = [kernels.surrogate_derivative(value, 0.05, True, DAMPENING) for value in v]
    np.testing.assert_allclose(got, [0, 0, 0.15, 0.3, 0.24, 0, 0], atol=1e-15)
    assert all(kernels.surrogate_derivative(value, 0.05, False, DAMPENING) == 0 for value in v)


def test_one_neuron_one_step_gradient_is_the_surrogate():
    """T = 1, H = 1: V_0 = (1 − ρ_V) x w_in and z_0 = 1(V_0 > b0),
    so ∂z_0/∂x = d·max(1 − |(V_0 − b0)/b0|, 0) · (1 − ρ_V) w_in."""
    w_in, w_rec = np.array([[0.7]]), np.zeros((1, 1))
    for x_value in (0.2, 0.3, 0.45):
        x = np.array([[[x_value]]])
        states = run_forward(x, w_in, w_rec, refractory=2)
        grad_x, grad_w_in, _ = run_backward(np.ones((1, 1, 1)), x, w_in, w_rec, states, n_chunks=1)
        v = (1 - RHO_V) * x_value * 0.7
        surrogate = DAMPENING * max(1 - abs((v - B0) / B0), 0)
        assert surrogate > 0
        np.testing.assert_allclose(grad_x[0, 0, 0], surrogate * (1 - RHO_V) * 0.7, rtol=1e-12)
        np.testing.assert_allclose(grad_w_in[0, 0], surrogate * (1 - RHO_V) * x_value, rtol=1e-12)


def test_float32_stays_float32():
    x, w_in, w_rec = (a.astype(np.float32) for a in spiking_problem(2, 6, 2, 8, seed=0))
    forward_constants = (np.float32(c) for c in (RHO_V, RHO_B, B0, ADAPTATION_STRENGTH, DAMPENING))
    states = kernels.lsnn_forward(x, w_in, w_rec, *forward_constants, 2, keep_v=True)
    assert [s.dtype for s in states] == [np.float32, np.float32, bool, np.float32, np.float32]
    backward_constants = (np.float32(c) for c in (RHO_V, RHO_B, ADAPTATION_STRENGTH))
    grads = kernels.lsnn_backward(np.ones(states.spikes.shape, np.float32), x, w_in, w_rec, states.threshold,
                                  states.spikes, states.surrogate, *backward_constants, 1)
    assert all(g.dtype == np.float32 for g in grads)
