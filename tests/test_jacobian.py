"""The diagonal Jacobian dΘ*/dΘ and ∇_Θ L_rob, against finite differences through the whole attack.

The attack's randomness (R) is fixed by reseeding, and its sign steps are piecewise constant in Θ: nudging one
entry of Θ by a tiny δ leaves every sign(g_t) unchanged (checked), so Θ* is locally linear in Θ and the finite
difference is exact up to rounding. All in float64.
"""
import numpy as np
import pytest

from minimal.autodiff import Tensor
from minimal.nn.cnn import CNN
from minimal.robust.attack import kl_objective, pga_attack
from minimal.robust.attack import tracked_parameters
from minimal.robust.jacobian import gradient_through_the_attack, jacobian_diagonal, jacobian_diagonal_paper, last_clips
from minimal.robust.losses import kl_boundary_loss
from minimal.robust.methods import robustness_loss
from minimal.robust.mismatch import parameter_arrays

# (ζ, N_steps, ε): the paper's setting; a large random start, clipped at once; two steps, often ending clipped.
# (ε > 0 matters: at Θ* = Θ the KL is at its minimum, its gradient is 0 and sign(g_1) would be rounding noise.)
SETTINGS = [(0.1, 10, 0.001), (0.1, 3, 0.2), (0.3, 2, 0.01)]
ENTRIES_CHECKED = {SETTINGS[0]: 30}  # N_steps = 10 is slow: a random sample of entries; the others: every entry


def tiny_cnn64(seed=0):
    """The paper's CNN shrunk to 10×10 images, 2 channels, 3 classes, in float64, biases nonzero."""
    model = CNN(np.random.default_rng(seed), channels=2, kernel_size=3, hidden=(5, 4), num_classes=3, image_size=10)
    for p in model.parameters():
        p.data = p.data.astype(np.float64) + 0.05
    x = np.random.default_rng(seed + 1).normal(0, 1, (6, 1, 10, 10))
    return model, x


def run_attack(model, x, setting, seed=3):
    """The attack with its random start fixed by the seed; returns (result, the sign(g_t) of every step)."""
    zeta, attack_steps, epsilon = setting
    signs = []
    result = pga_attack(model, x, kl_objective(model, x), np.random.default_rng(seed), zeta, attack_steps, epsilon,
                        on_step=lambda t, theta_star, step_signs: signs.append(step_signs))
    return result, signs


def assert_same_signs(signs, reference):
    for step, step_reference in zip(signs, reference):
        for name in step_reference:
            np.testing.assert_array_equal(step[name], step_reference[name])


def entries(model, limit=None):
    """(name, index) of every parameter entry, or of `limit` of them picked at random (fixed seed)."""
    every = [(name, index) for name, p in model.named_parameters() for index in np.ndindex(p.shape)]
    if limit is None:
        return every
    return [every[k] for k in np.random.default_rng(0).choice(len(every), limit, replace=False)]


def run_nudged(model, name, index, delta, run):
    """run() with Θ[name][index] moved by delta, then the entry restored exactly."""
    array = dict(model.named_parameters())[name].data
    original = array[index]
    array[index] = original + delta
    try:
        return run()
    finally:
        array[index] = original


@pytest.mark.parametrize("setting", SETTINGS)
def test_jacobian_matches_finite_differences_of_the_attack(setting):
    model, x = tiny_cnn64()
    base, base_signs = run_attack(model, x, setting)
    jacobian, paper = jacobian_diagonal(base), jacobian_diagonal_paper(base)
    delta = 1e-7
    for name, index in entries(model, ENTRIES_CHECKED.get(setting)):
        plus, plus_signs = run_nudged(model, name, index, delta, lambda: run_attack(model, x, setting))
        minus, minus_signs = run_nudged(model, name, index, -delta, lambda: run_attack(model, x, setting))
        assert_same_signs(plus_signs, base_signs)
        assert_same_signs(minus_signs, base_signs)
        moved = (plus.theta_star[name][index] - minus.theta_star[name][index]) / (2 * delta)
        assert moved == pytest.approx(jacobian[name][index], rel=1e-6, abs=1e-8), (name, index)
        for other in base.theta_star:  # J is diagonal: no other entry of Θ* moves at all
            others = np.ones(base.theta_star[other].shape, dtype=bool)
            if other == name:
                others[index] = False
            np.testing.assert_array_equal(plus.theta_star[other][others], base.theta_star[other][others])
        if last_clips(base, name)[0][index] == 0:  # never clipped: the paper's formula is exact
            assert paper[name][index] == pytest.approx(jacobian[name][index], rel=1e-12)


def test_clipping_happens_and_the_paper_formula_misses_it_there():
    """In the clip-heavy setting some entries end on the box edge, where dΘ*/dΘ = 1 ± ζ·sign(Θ) exactly."""
    model, x = tiny_cnn64()
    zeta = SETTINGS[1][0]
    result, _ = run_attack(model, x, SETTINGS[1])
    jacobian, paper = jacobian_diagonal(result), jacobian_diagonal_paper(result)
    clips = {name: last_clips(result, name) for name in jacobian}          # (edge, signs since the last clip)
    on_edge = {name: (edge != 0) & (since == 0) for name, (edge, since) in clips.items()}
    assert sum(mask.sum() for mask in on_edge.values()) > 10
    for name, mask in on_edge.items():
        expected = 1 + clips[name][0] * zeta * np.sign(result.theta[name])
        np.testing.assert_allclose(jacobian[name][mask], expected[mask], rtol=1e-12)
    differs = [np.abs(paper[name] - jacobian[name])[mask] for name, mask in on_edge.items()]
    assert np.max(np.concatenate(differs)) > 1e-3


def test_zero_weights_have_jacobian_one_and_stay_zero():
    model, x = tiny_cnn64()
    model.fc1.weight.data[:, 0] = 0
    result, _ = run_attack(model, x, SETTINGS[0])
    np.testing.assert_array_equal(result.theta_star["fc1.weight"][:, 0], 0)
    np.testing.assert_array_equal(jacobian_diagonal(result)["fc1.weight"][:, 0], 1)


def robustness_loss_and_gradient(model, x, setting, seed=3):
    """L_rob and ∇_Θ L_rob as training computes them (methods.robustness_loss: one graph holding f(Θ, X) and
    f(Θ*, X), one backward, then direct + J ⊙ ∂/∂Θ*), with the attack's random start fixed by the seed."""
    zeta, attack_steps, epsilon = setting
    theta = tracked_parameters(model, parameter_arrays(model))
    settings = {"zeta_attack": zeta, "attack_steps": attack_steps, "attack_epsilon": epsilon, "attack_box": "relative"}
    loss, theta_star, result = robustness_loss(model, x, model(Tensor(x), theta), np.random.default_rng(seed),
                                               settings)
    loss.backward()
    return loss.item(), gradient_through_the_attack(theta, theta_star, result)


def robustness_loss_through_the_attack(model, x, setting):
    """L_rob(Θ, A(Θ)) = KL(f(Θ, X) ‖ f(A(Θ), X)) with the attack's R fixed; also returns the signs."""
    result, signs = run_attack(model, x, setting)
    theta_star = {name: Tensor(value) for name, value in result.theta_star.items()}
    return kl_boundary_loss(model(Tensor(x)), model(Tensor(x), theta_star)).item(), signs


@pytest.mark.parametrize("setting", SETTINGS[1:])
def test_robustness_gradient_matches_finite_differences(setting):
    """∇_Θ L_rob = direct + J ⊙ ∇_{Θ*} L_rob against central differences of L_rob(Θ, A(Θ)), every entry."""
    model, x = tiny_cnn64(seed=1)
    result, base_signs = run_attack(model, x, setting)
    loss, gradient = robustness_loss_and_gradient(model, x, setting)
    assert loss == pytest.approx(robustness_loss_through_the_attack(model, x, setting)[0], rel=1e-12)
    assert loss > 1e-4
    delta = 1e-6
    for name, index in entries(model):
        loss_after = lambda: robustness_loss_through_the_attack(model, x, setting)  # noqa: E731
        plus, plus_signs = run_nudged(model, name, index, delta, loss_after)
        minus, minus_signs = run_nudged(model, name, index, -delta, loss_after)
        assert_same_signs(plus_signs, base_signs)
        assert_same_signs(minus_signs, base_signs)
        numeric = (plus - minus) / (2 * delta)
        assert gradient[name][index] == pytest.approx(numeric, rel=1e-5, abs=1e-9), (name, index)


def test_parameters_left_out_of_the_attack_get_jacobian_one():
    """With names=[...], the others have Θ* = Θ; their gradient is still the full chain rule (J = 1)."""
    model, x = tiny_cnn64()
    result = pga_attack(model, x, kl_objective(model, x), np.random.default_rng(0), names=["fc2.weight"])
    assert set(jacobian_diagonal(result)) == {"fc2.weight"}
    theta = tracked_parameters(model, parameter_arrays(model))
    theta_star = tracked_parameters(model, result.theta_star)
    kl_boundary_loss(model(Tensor(x), theta), model(Tensor(x), theta_star)).backward()
    gradient = gradient_through_the_attack(theta, theta_star, result)
    assert set(gradient) == {name for name, _ in model.named_parameters()}
