"""The LSNN model: the fused path (numba kernels) equals the reference path (autodiff ops) in values and every
gradient; the W_rec diagonal stays 0; training lowers the loss; parameter overrides; errors; recorded states."""
import numpy as np
import pytest

from minimal.autodiff import Tensor, ops
from minimal.nn.lsnn import LSNN, TARGET_RATE, firing_rate_loss
from minimal.optim import Adam


def make_model(n_inputs, n_hidden, n_classes=3, seed=0, dtype=np.float64, refractory=2):
    return LSNN(np.random.default_rng(seed), n_inputs, n_classes, num_hidden=n_hidden, refractory=refractory,
                dtype=dtype)


def spiking_inputs(n_batch, n_steps, n_inputs, seed=1, dtype=np.float64):
    return (2 * np.random.default_rng(seed).standard_normal((n_batch, n_steps, n_inputs))).astype(dtype)


def loss_and_gradients(model, x, labels, path):
    """Cross-entropy + firing-rate loss, and the gradient of every parameter and of x."""
    model.zero_grad()
    x = Tensor(x, requires_grad=True)
    logits, rate_loss = model(x, path=path, return_rate_loss=True)
    loss = ops.cross_entropy(logits, labels) + rate_loss
    loss.backward()
    grads = {name: p.grad.copy() for name, p in model.named_parameters()}
    grads["x"] = x.grad
    return logits.data, loss.item(), grads


def assert_close(got, want, name):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9 * np.abs(want).max(), err_msg=name)


@pytest.mark.parametrize("n_batch, n_steps, n_inputs, n_hidden, refractory, event_driven",
                         [(1, 11, 1, 7, 2, True), (3, 25, 3, 17, 2, True), (4, 40, 2, 33, 3, True),
                          (2, 30, 5, 9, 0, True), (5, 17, 2, 13, 2, True), (5, 17, 2, 13, 2, False)])
def test_fused_path_equals_reference_path(n_batch, n_steps, n_inputs, n_hidden, refractory, event_driven):
    """Odd batches too: the backward kernel splits the batch between the threads (5 samples, 2 threads: 3 + 2)."""
    model = make_model(n_inputs, n_hidden, refractory=refractory)
    model.event_driven = event_driven
    x = spiking_inputs(n_batch, n_steps, n_inputs)
    labels = np.arange(n_batch) % 3
    fused = loss_and_gradients(model, x, labels, "fused")
    reference = loss_and_gradients(model, x, labels, "reference")
    assert_close(fused[0], reference[0], "logits")
    assert_close(fused[1], reference[1], "loss")
    for name in reference[2]:
        assert np.abs(reference[2][name]).max() > 0, f"gradient of {name} should not vanish in this test"
        assert_close(fused[2][name], reference[2][name], name)
    state = model.record_state(x)
    assert state["spikes"].mean() > 0.05, "the test inputs should make neurons spike"
    if refractory:
        just_spiked = np.zeros_like(state["spikes"], dtype=bool)
        just_spiked[:, 1:] = state["spikes"][:, :-1] > 0
        assert (just_spiked & (state["v"] > state["threshold"])).any(), "some spikes should be blocked"


@pytest.mark.parametrize("path", ["fused", "reference"])
def test_w_rec_diagonal_stays_zero_through_training(path):
    model = make_model(2, 12, dtype=np.float32)
    before = model.w_rec.data.copy()
    optimizer = Adam(model.parameters(), lr=1e-2)
    x, labels = spiking_inputs(6, 15, 2, dtype=np.float32), np.arange(6) % 3
    for _ in range(4):
        model.zero_grad()
        ops.cross_entropy(model(x, path=path), labels).backward()
        assert np.all(np.diag(model.w_rec.grad) == 0)
        optimizer.step()
    assert np.all(np.diag(model.w_rec.data) == 0)
    assert np.abs(model.w_rec.data - before).max() > 1e-3, "the off-diagonal weights should have been trained"


def test_float32_training_lowers_the_loss_on_a_separable_problem():
    """Class 0 drives input channel 0, class 1 channel 1 (plus noise): a few Adam steps must learn it."""
    rng = np.random.default_rng(0)
    labels = np.arange(32) % 2
    x = 0.3 * rng.standard_normal((32, 20, 2)).astype(np.float32)
    x[np.arange(32), :, labels] += 1.0
    model = LSNN(np.random.default_rng(1), 2, 2, num_hidden=16)
    optimizer = Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        model.zero_grad()
        logits, rate_loss = model(x, return_rate_loss=True)
        loss = ops.cross_entropy(logits, labels) + rate_loss
        assert logits.dtype == np.float32 and model.w_rec.grad is None
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert np.mean(model(x).data.argmax(axis=1) == labels) == 1.0


def test_params_override_leaves_the_model_untouched():
    model = make_model(2, 8)
    before = model.state_dict()
    x = spiking_inputs(3, 10, 2)
    w_out = Tensor(np.zeros((8, 3)), requires_grad=True)
    for path in ("fused", "reference"):
        logits = model(x, params={"w_out": w_out}, path=path)
        np.testing.assert_array_equal(logits.data, np.broadcast_to(model.b_out.data, (3, 3)))
        logits.sum().backward()
    assert w_out.grad is not None and model.w_out.grad is None
    w_rec = Tensor(2 * model.w_rec.data)
    assert not np.allclose(model(x, params={"w_rec": w_rec}).data, model(x).data)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


def test_wrong_shapes_and_paths_are_named():
    model = make_model(2, 8)
    with pytest.raises(ValueError, match=r"\(batch, time, 2\), got \(4, 10\)"):
        model(np.zeros((4, 10)))
    with pytest.raises(ValueError, match=r"got \(4, 10, 3\)"):
        model(np.zeros((4, 10, 3)))
    with pytest.raises(ValueError, match="'fused' or 'reference'"):
        model(np.zeros((4, 10, 2)), path="fast")
    with pytest.raises(ValueError, match=r"'w_rec' must have shape \(8, 8\), got \(7, 8\)"):
        model(np.zeros((4, 10, 2)), params={"w_rec": np.zeros((7, 8))})


def test_record_state_matches_the_forward_pass():
    model = make_model(2, 10)
    x = spiking_inputs(3, 12, 2)
    state = model.record_state(x)
    assert all(state[name].shape == (3, 12, 10) for name in ("v", "threshold", "spikes"))
    np.testing.assert_array_equal(state["spikes"], (state["v"] > state["threshold"]) * state["spikes"])
    assert np.all(state["threshold"] >= model.b0)
    rates = state["spikes"].mean(axis=1)
    np.testing.assert_allclose(model(x).data, rates @ model.w_out.data + model.b_out.data, rtol=1e-12)


def test_firing_rate_loss_is_the_squared_distance_to_10_hz():
    rates = np.random.default_rng(0).random((5, 4)) * 0.05
    expected = 0.001 * np.mean((rates.mean(axis=0) - TARGET_RATE) ** 2)
    np.testing.assert_allclose(firing_rate_loss(Tensor(rates)).item(), expected, rtol=1e-12)
    assert TARGET_RATE == 0.01


# ------------------------------------------------------------------------------------------------- dropout
def dropout_model(n_inputs=2, n_hidden=12, p=0.5):
    model = make_model(n_inputs, n_hidden)
    model.dropout = p
    return model


def reference_spikes_with_dropout(model, x, rng):
    """The reference path's spikes (N, T, H) under the dropout mask `model.dropout_mask` draws from rng."""
    mask = model.dropout_mask(x.shape[0], rng)
    w_rec = model.w_rec.data * model.off_diagonal
    return model.reference_spikes(Tensor(x), model.w_in.data, w_rec, mask).data, mask


def test_dropout_mask_is_one_per_sample_and_fixed_over_time():
    model = dropout_model()
    x = spiking_inputs(4, 30, 2)
    spikes, mask = reference_spikes_with_dropout(model, x, np.random.default_rng(0))
    assert mask.shape == (4, 12) and 0 < mask.mean() < 1
    assert not (mask == mask[0]).all(), "each sample draws its own mask"
    assert np.all(spikes[~mask[:, None, :].repeat(30, axis=1)] == 0), "a dropped neuron stays silent at every step"
    spike_counts = spikes.sum(axis=1)
    assert (spike_counts[mask] > 0).mean() > 0.5, "kept neurons still fire"
    no_dropout, _ = reference_spikes_with_dropout(make_model(2, 12), x, np.random.default_rng(0))
    assert (no_dropout.sum(axis=1)[~mask] > 0).any(), "the dropped neurons would have fired"


@pytest.mark.parametrize("path", ["fused", "reference"])
def test_dropout_only_in_training_with_an_rng(path):
    model = dropout_model()
    x = spiking_inputs(3, 20, 2)
    plain = model(x, path=path).data
    assert not np.allclose(model(x, path=path, rng=np.random.default_rng(0)).data, plain)
    np.testing.assert_array_equal(model(x, path=path, rng=None).data, plain)
    model.eval()
    np.testing.assert_array_equal(model(x, path=path, rng=np.random.default_rng(0)).data, plain)


def test_fused_path_equals_reference_path_with_the_same_dropout_mask():
    """The same rng seed gives both paths the same mask: values and every gradient must agree."""
    model = dropout_model(n_inputs=3, n_hidden=17, p=0.3)
    x = spiking_inputs(5, 25, 3)
    labels = np.arange(5) % 3
    results = {}
    for path in ("fused", "reference"):
        model.zero_grad()
        x_tensor = Tensor(x, requires_grad=True)
        logits, rate_loss = model.logits_and_penalty(x_tensor, rng=np.random.default_rng(7)) if path == "fused" \
            else model(x_tensor, path=path, return_rate_loss=True, rng=np.random.default_rng(7))
        (ops.cross_entropy(logits, labels) + rate_loss).backward()
        results[path] = {"logits": logits.data, "x": x_tensor.grad,
                         **{name: p.grad.copy() for name, p in model.named_parameters()}}
    for name, want in results["reference"].items():
        assert np.abs(want).max() > 0, f"{name} should not vanish in this test"
        assert_close(results["fused"][name], want, name)


@pytest.mark.parametrize("path", ["fused", "reference"])
def test_kept_spikes_weigh_one_over_one_minus_p_while_training(path, monkeypatch):
    """Inverted dropout: with every neuron kept, training with p equals evaluating with W_rec and W_out scaled
    by 1/(1 − p); the firing-rate regulariser sees the spikes the neurons fired, unscaled."""
    p = 0.3
    model = dropout_model(n_hidden=14, p=p)
    keep_all = lambda n_batch, rng: None if rng is None else np.ones((n_batch, 14), bool)  # noqa: E731
    monkeypatch.setattr(model, "dropout_mask", keep_all)
    x = spiking_inputs(4, 30, 2)
    logits, rate_loss = model(x, path=path, return_rate_loss=True, rng=np.random.default_rng(0))
    scaled = {"w_rec": Tensor(model.w_rec.data / (1 - p)), "w_out": Tensor(model.w_out.data / (1 - p))}
    want_logits, _ = model(x, scaled, path=path, return_rate_loss=True)
    np.testing.assert_allclose(logits.data, want_logits.data, rtol=1e-12, atol=1e-12)
    recurrent_only = {"w_rec": scaled["w_rec"]}
    _, want_rate_loss = model(x, recurrent_only, path=path, return_rate_loss=True)
    np.testing.assert_allclose(rate_loss.data, want_rate_loss.data, rtol=1e-12)


@pytest.mark.parametrize("path", ["fused", "reference"])
def test_a_dropped_neuron_gets_no_input_gradient(path):
    """One sample: the neurons its mask drops have zero spikes whatever their membrane does, so no gradient."""
    model = dropout_model(n_hidden=16)
    logits, rate_loss = model(spiking_inputs(1, 30, 2), path=path, return_rate_loss=True,
                              rng=np.random.default_rng(2))
    model.zero_grad()
    (ops.cross_entropy(logits, np.array([1])) + rate_loss).backward()
    mask = model.dropout_mask(1, np.random.default_rng(2))[0]
    assert np.all(model.w_in.grad[:, ~mask] == 0) and np.abs(model.w_in.grad[:, mask]).max() > 0


def test_dropout_gradient_of_the_readout_passes_gradcheck():
    """With the mask fixed (same seed every call) the logits are smooth in W_out and b_out: finite differences
    in float64 must match the backward pass through the masked rates."""
    from minimal.autodiff.gradcheck import gradcheck
    model = dropout_model(n_hidden=10)
    x = spiking_inputs(4, 20, 2)

    def logits(w_out, b_out):
        return model(x, params={"w_out": w_out, "b_out": b_out}, path="reference", rng=np.random.default_rng(3))

    gradcheck(logits, model.w_out.data, model.b_out.data)
    mask = model.dropout_mask(4, np.random.default_rng(3))
    rates = reference_spikes_with_dropout(model, x, np.random.default_rng(3))[0].mean(axis=1)
    assert np.all(rates[~mask] == 0) and rates[mask].max() > 0


def test_readout_gain_scales_the_initial_readout_only():
    plain = LSNN(np.random.default_rng(0), 2, 4, num_hidden=16)
    scaled = LSNN(np.random.default_rng(0), 2, 4, num_hidden=16, readout_gain=10.0)
    np.testing.assert_allclose(scaled.w_out.data, 10 * plain.w_out.data, rtol=1e-6)
    assert scaled.w_out.dtype == np.float32
    for name in ("w_in", "w_rec", "b_out"):
        np.testing.assert_array_equal(getattr(scaled, name).data, getattr(plain, name).data)


def test_the_fused_gradients_are_the_same_on_any_number_of_threads():
    """Same seed, same numbers on one thread or two: the BPTT kernel sums its chunks' weight gradients in an
    order that does not depend on the thread count (BACKWARD_CHUNKS)."""
    import numba
    model = LSNN(np.random.default_rng(0), num_inputs=3, num_classes=4, num_hidden=40)
    x = (2 * np.random.default_rng(1).standard_normal((37, 25, 3))).astype(np.float32)
    threads_before, gradients = numba.get_num_threads(), []
    try:
        for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(threads)
            model.zero_grad()
            ops.cross_entropy(model(x), np.arange(37) % 4).backward()
            gradients.append({name: p.grad.copy() for name, p in model.named_parameters()})
    finally:
        numba.set_num_threads(threads_before)
    for name in gradients[0]:
        np.testing.assert_array_equal(gradients[0][name], gradients[-1][name])
