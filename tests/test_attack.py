"""Algorithm 1's PGA attack: it stays in its ζ-box at every step, leaves Θ = 0 alone, raises its objective (more
than a random perturbation of the same size), and records the signs and clips the Jacobian needs."""
import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

from minimal.autodiff import Tensor, ops
from minimal.nn.cnn import CNN
from minimal.optim import Adam
from minimal.robust.attack import (cross_entropy_objective, kl_objective, pga_attack, random_box_attack)
from minimal.robust.losses import kl_boundary_loss
from minimal.robust.methods import standard
from minimal.robust.mismatch import parameter_arrays
from synthetic import blobs


def tiny_cnn(seed=0, channels=3, hidden=(8, 6)):
    """The paper's CNN, shrunk to 10×10 images and 3 classes."""
    return CNN(np.random.default_rng(seed), channels=channels, kernel_size=3, hidden=hidden, num_classes=3,
               image_size=10)


def trained_tiny_cnn(steps=30):
    model, (x, y) = tiny_cnn(), blobs(0)
    optimizer = Adam(model.parameters(), lr=0.01)
    for _ in range(steps):
        standard(model, x, y, None, {})
        optimizer.step()
    return model, x, y


def as_tensors(params):
    return None if params is None else {name: Tensor(value) for name, value in params.items()}


def cross_entropy_at(model, x, y, params=None):
    return ops.cross_entropy(model(Tensor(x), as_tensors(params)), y).item()


def kl_at(model, x, params):
    return kl_boundary_loss(model(Tensor(x)), model(Tensor(x), as_tensors(params))).item()


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), channels=st.integers(1, 3), zeta=st.floats(0.0, 0.5),
       attack_steps=st.integers(1, 6), epsilon=st.sampled_from([0.0, 0.001, 0.05, 0.3]),
       objective=st.sampled_from(["kl", "ce"]))
def test_iterates_stay_in_the_box_and_zero_weights_stay_zero(seed, channels, zeta, attack_steps, epsilon, objective):
    model, (x, y) = tiny_cnn(seed, channels), blobs(seed, n=8)
    model.fc2.weight.data[0, :] = 0  # a row of exact zeros: their box is empty
    theta = parameter_arrays(model)
    iterates = []
    target = kl_objective(model, x) if objective == "kl" else cross_entropy_objective(y)
    result = pga_attack(model, x, target, np.random.default_rng(seed), zeta, attack_steps, epsilon,
                        on_step=lambda t, theta_star, signs: iterates.append(theta_star))
    assert len(iterates) == attack_steps
    for theta_star in iterates:
        for name, value in theta.items():
            radius = zeta * np.abs(value)
            assert np.all(theta_star[name] >= value - radius) and np.all(theta_star[name] <= value + radius)
        np.testing.assert_array_equal(theta_star["fc2.weight"][0], 0)
    for name in theta:
        np.testing.assert_array_equal(result.theta_star[name], iterates[-1][name])


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), zeta=st.floats(0.01, 0.5), attack_steps=st.integers(1, 6),
       epsilon=st.sampled_from([0.001, 0.05, 0.3]))
def test_replayed_clips_rebuild_theta_star(seed, zeta, attack_steps, epsilon):
    """Θ* = Θ + |Θ|·(ε·R or ±ζ at the last clip) + α·(signs since then): what the exact Jacobian differentiates,
    with the clips found by replaying the recorded steps (jacobian.last_clips)."""
    from minimal.robust.jacobian import last_clips
    model, (x, _) = tiny_cnn(seed), blobs(seed, n=8)
    result = pga_attack(model, x, kl_objective(model, x), np.random.default_rng(seed), zeta, attack_steps, epsilon)
    sign_sum = result.sign_sum
    for name, theta in result.theta.items():
        edge, signs_since_clip = last_clips(result, name)
        start = np.where(edge == 0, epsilon * result.noise[name], edge * zeta)
        rebuilt = theta + np.abs(theta) * (start + zeta / attack_steps * signs_since_clip)
        np.testing.assert_allclose(result.theta_star[name], rebuilt, rtol=1e-5, atol=1e-7)
        never_clipped = edge == 0
        np.testing.assert_array_equal(signs_since_clip[never_clipped], sign_sum[name][never_clipped])
        assert np.all(np.abs(sign_sum[name]) <= attack_steps)


def test_attack_raises_its_objective_more_than_a_random_perturbation():
    model, x, y = trained_tiny_cnn()
    random_point = random_box_attack(model, 0.2, np.random.default_rng(1))
    ce_attack = pga_attack(model, x, cross_entropy_objective(y), np.random.default_rng(1), zeta=0.2)
    kl_attack = pga_attack(model, x, kl_objective(model, x), np.random.default_rng(1), zeta=0.2)
    clean = cross_entropy_at(model, x, y)
    attacked = cross_entropy_at(model, x, y, ce_attack.theta_star)
    assert attacked > cross_entropy_at(model, x, y, random_point) > clean
    assert attacked > 1.5 * clean
    assert kl_at(model, x, kl_attack.theta_star) > kl_at(model, x, random_point) > 0
    assert kl_at(model, x, kl_attack.theta_star) > kl_attack.losses[0]  # above its random start Θ*_0


def test_random_box_attack_moves_every_entry_to_a_corner():
    model = tiny_cnn()
    model.fc1.bias.data[:] = 0
    point = random_box_attack(model, 0.3, np.random.default_rng(4))
    again = random_box_attack(model, 0.3, np.random.default_rng(4))
    for name, theta in parameter_arrays(model).items():
        np.testing.assert_allclose(np.abs(point[name] - theta), 0.3 * np.abs(theta), rtol=1e-6)
        np.testing.assert_array_equal(point[name], again[name])
    np.testing.assert_array_equal(point["fc1.bias"], 0)
    moves = np.sign(point["fc1.weight"] - model.fc1.weight.data)
    assert 0.3 < np.mean(moves > 0) < 0.7  # a fair coin per entry


def test_attack_leaves_the_model_alone_and_checks_its_arguments():
    model, (x, y) = tiny_cnn(), blobs(0, n=8)
    before = model.state_dict()
    result = pga_attack(model, x, cross_entropy_objective(y), np.random.default_rng(0), names=["fc3.weight"])
    assert list(result.theta_star) == ["fc3.weight"]
    for name, p in model.named_parameters():
        np.testing.assert_array_equal(p.data, before[name])
        assert p.grad is None
    with pytest.raises(ValueError, match="at least one step"):
        pga_attack(model, x, cross_entropy_objective(y), np.random.default_rng(0), attack_steps=0)


# ---------------------------------------------------------------------------------------------------- Fig. S4, S11
@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), zeta=st.floats(0.01, 0.5), attack_steps=st.integers(1, 5),
       epsilon=st.sampled_from([0.0, 0.001, 0.3]))
@example(seed=0, zeta=0.1, attack_steps=3, epsilon=0.0)
@example(seed=1512, zeta=0.5, attack_steps=1, epsilon=0.0)
def test_the_constant_box_keeps_every_iterate_within_zeta_of_theta(seed, zeta, attack_steps, epsilon):
    """Fig. S4's adversary: |Θ* − Θ| ≤ ζ for every entry (zero weights move too), and dΘ*/dΘ = 1."""
    from minimal.robust.jacobian import jacobian_diagonal
    model, (x, y) = tiny_cnn(seed), blobs(seed, n=8)
    model.fc3.weight.data[:, 0] = 0                  # the weights into class 0: their relative box is empty
    theta, iterates = parameter_arrays(model), []
    result = pga_attack(model, x, cross_entropy_objective(y), np.random.default_rng(seed), zeta, attack_steps,
                        epsilon, box="constant", on_step=lambda t, theta_star, signs: iterates.append(theta_star))
    for theta_star in iterates:
        for name, value in theta.items():
            rounding = 4 * np.finfo(value.dtype).eps * (np.abs(value) + zeta)    # the float32 box edges
            assert np.all(np.abs(theta_star[name] - value) <= zeta + rounding)
    # zero weights are attacked too (the relative box would keep them at 0): after step 1, every one whose
    # gradient is nonzero has moved. A network whose ReLUs are dead on all of X has a zero gradient (seed 1512).
    moved = np.abs(iterates[0]["fc3.weight"][:, 0] - theta["fc3.weight"][:, 0])
    attacked = result.step_signs[0]["fc3.weight"][:, 0] != 0
    assert np.all(moved[attacked] > 0)
    assert all(np.all(j == 1) for j in jacobian_diagonal(result).values())


def test_the_input_attack_stays_in_its_ball_and_raises_the_loss():
    """AWP's input attack (Fig. S11): ‖X* − X‖∞ ≤ ε_pga, and the cross-entropy at X* is higher than at X."""
    from minimal.robust.attack import pga_on_inputs
    model, x, y = trained_tiny_cnn()
    x = x.astype(np.float32)
    for epsilon in (0.01, 0.1, 0.5):
        x_star = pga_on_inputs(model, x, y, epsilon, steps=5)
        assert x_star.dtype == x.dtype and x_star.shape == x.shape
        rounding = 4 * np.finfo(np.float32).eps * (np.abs(x) + epsilon)           # the float32 ball edges
        assert np.all(np.abs(x_star - x) <= epsilon + rounding)
        raised = ops.cross_entropy(model(Tensor(x_star)), y).item()
        assert raised > ops.cross_entropy(model(Tensor(x)), y).item()
    random_corner = x + 0.5 * np.sign(np.random.default_rng(0).standard_normal(x.shape)).astype(x.dtype)
    assert ops.cross_entropy(model(Tensor(pga_on_inputs(model, x, y, 0.5, steps=5))), y).item() > \
        ops.cross_entropy(model(Tensor(random_corner)), y).item()
