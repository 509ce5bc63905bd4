"""Every training method: fills a finite p.grad for every parameter, is reproducible from its seed, lowers the
loss of a tiny CNN on separable data, and reduces to `standard` when its perturbation size is 0."""
import numpy as np
import pytest

from minimal.autodiff import Tensor, ops
from minimal.nn.cnn import CNN
from minimal.nn.layers import Linear
from minimal.nn.module import Module
from minimal.optim import Adam
from minimal.robust.methods import METHOD_DEFAULTS, METHODS, TASK_DEFAULTS, hyperparameters
from synthetic import blobs


def tiny_cnn(seed=0):
    """The paper's CNN shrunk to 10×10 images, 3 channels, 3 classes (it has the dropout option)."""
    return CNN(np.random.default_rng(seed), channels=3, kernel_size=3, hidden=(8, 6), num_classes=3, image_size=10)


def clean_loss(model, x, y):
    return ops.cross_entropy(model(Tensor(x)), y).item()


def gradients_after(method, model, x, y, seed=0, config=None):
    loss = method(model, x, y, np.random.default_rng(seed), config or {})
    return loss, {name: p.grad.copy() for name, p in model.named_parameters()}


def test_every_method_has_defaults_and_a_docstring():
    assert set(METHOD_DEFAULTS) == set(METHODS)
    for name, method in METHODS.items():
        assert method.__doc__, name
    for task_defaults in TASK_DEFAULTS.values():
        for method, values in task_defaults.items():
            assert set(values) <= set(METHOD_DEFAULTS[method])


def test_hyperparameters_come_from_config_then_task_then_defaults():
    assert hyperparameters("beta", {})["beta_rob"] == 0.25
    assert hyperparameters("beta", {"task": "speech"})["beta_rob"] == 0.5
    assert hyperparameters("beta", {"task": "speech", "beta_rob": 0.7})["beta_rob"] == 0.7
    assert hyperparameters("beta", {"beta_rob": None})["beta_rob"] == 0.25  # unset CLI options are None
    assert hyperparameters("forward_noise_beta", {"task": "fmnist"})["beta_rob"] == 0.1
    assert hyperparameters("amp", {"task": "ecg"})["amp_epsilon"] == 0.02


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_fills_every_gradient_reproducibly(name):
    x, y = blobs(n=12)
    model = tiny_cnn()
    loss, gradients = gradients_after(METHODS[name], model, x, y)
    assert np.isfinite(loss) and loss > 0
    for parameter_name, p in model.named_parameters():
        assert gradients[parameter_name].shape == p.shape and gradients[parameter_name].dtype == p.dtype
        assert np.all(np.isfinite(gradients[parameter_name]))
    assert any(np.any(g != 0) for g in gradients.values())
    again_loss, again = gradients_after(METHODS[name], tiny_cnn(), x, y)
    assert again_loss == loss
    for parameter_name in gradients:
        np.testing.assert_array_equal(again[parameter_name], gradients[parameter_name])


def train(model, method, x, y, rng, steps):
    optimizer = Adam(model.parameters(), lr=0.01)
    for _ in range(steps):
        method(model, x, y, rng, {})
        optimizer.step()


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_lowers_the_loss_of_a_tiny_cnn(name):
    """From a briefly pre-trained model: at initialisation a full-strength weight adversary (AWP, γ = 0.1) can
    silence every unit of a net this small, after which nothing trains (the authors' code has an AWP warm-up)."""
    x, y = blobs()
    model = tiny_cnn()
    rng = np.random.default_rng(1)
    train(model, METHODS["standard"], x, y, rng, steps=10)
    before = clean_loss(model, x, y)
    train(model, METHODS[name], x, y, rng, steps=15)
    assert clean_loss(model, x, y) < 0.97 * before


@pytest.mark.parametrize("name, no_perturbation", [
    ("forward_noise", {"eta_train": 0.0}),
    ("beta", {"beta_rob": 0.0}),
    ("awp", {"awp_gamma": 0.0}),
    ("amp", {"amp_epsilon": 0.0}),
    ("sam", {"sam_rho": 0.0}),
    ("dropout", {"dropout": 0.0}),
])
def test_zero_perturbation_gives_the_standard_gradient(name, no_perturbation):
    x, y = blobs(n=12)
    _, expected = gradients_after(METHODS["standard"], tiny_cnn(), x, y)
    _, gradients = gradients_after(METHODS[name], tiny_cnn(), x, y, config=no_perturbation)
    for parameter_name in expected:
        np.testing.assert_allclose(gradients[parameter_name], expected[parameter_name], rtol=1e-5, atol=1e-7)


def test_gradient_methods_leave_the_weights_alone():
    x, y = blobs(n=12)
    for name in ["standard", "forward_noise", "beta", "forward_noise_beta", "awp", "amp", "entropy_sgd", "sam"]:
        model = tiny_cnn()
        before = model.state_dict()
        METHODS[name](model, x, y, np.random.default_rng(0), {})
        for parameter_name, value in model.state_dict().items():
            np.testing.assert_array_equal(value, before[parameter_name], err_msg=name)


def test_abcd_ascends_in_place_within_the_box():
    x, y = blobs(n=12)
    model = tiny_cnn()
    before = model.state_dict()
    METHODS["abcd"](model, x, y, np.random.default_rng(0), {"abcd_rounds": 1, "zeta_attack": 0.1})
    moved = False
    for name, value in model.state_dict().items():
        assert np.all(np.abs(value - before[name]) <= 0.1 * np.abs(before[name]) + 1e-7)
        moved = moved or np.any(value != before[name])
    assert moved


def test_entropy_sgd_scoping_counts_steps():
    x, y = blobs(n=12)
    model = tiny_cnn()
    for _ in range(2):
        METHODS["entropy_sgd"](model, x, y, np.random.default_rng(0), {"langevin_steps": 1})
    assert model.entropy_sgd_step == 2


class NoDropoutNet(Module):
    def __init__(self, rng):
        self.fc = Linear(100, 3, rng)

    def forward(self, x, params=None):
        p = self.parameter_dict(params)
        return ops.flatten(x) @ p["fc.weight"] + p["fc.bias"]


def test_dropout_needs_a_model_with_dropout():
    x, y = blobs(n=4)
    with pytest.raises(ValueError, match="NoDropoutNet has none"):
        METHODS["dropout"](NoDropoutNet(np.random.default_rng(0)), x, y, np.random.default_rng(0), {})


def test_cnn_dropout_only_in_training_with_an_rng():
    x, _ = blobs(n=4)
    model = CNN(np.random.default_rng(0), channels=3, kernel_size=3, hidden=(8, 6), num_classes=3, image_size=10,
                dropout=0.5)
    plain = model(Tensor(x)).data
    assert not np.allclose(model(Tensor(x), rng=np.random.default_rng(0)).data, plain)
    np.testing.assert_array_equal(model.eval()(Tensor(x), rng=np.random.default_rng(0)).data, plain)


@pytest.mark.parametrize("model_kind", ["cnn", "lsnn"])
def test_beta_in_one_graph_equals_natural_plus_beta_times_the_robust_gradient(model_kind):
    """beta shares one forward at Θ between L_nat, the attack's target and L_rob; the result must be the
    gradient of L_nat plus β_rob times ∇L_rob, each computed in a graph of its own."""
    from minimal.nn.lsnn import LSNN
    from minimal.autodiff import Tensor
    from minimal.robust.attack import tracked_parameters
    from minimal.robust.jacobian import gradient_through_the_attack
    from minimal.robust.methods import hyperparameters, natural_loss_and_gradients, robustness_loss
    from minimal.robust.mismatch import parameter_arrays
    rng = np.random.default_rng(3)
    if model_kind == "cnn":
        model, x = tiny_cnn(), rng.standard_normal((6, 1, 10, 10))
    else:
        model, x = LSNN(rng, num_inputs=2, num_classes=3, num_hidden=12), 2 * rng.standard_normal((6, 15, 2))
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    y = rng.integers(0, 3, 6)
    config = {"beta_rob": 0.7, "attack_steps": 4}
    loss, together = gradients_after(METHODS["beta"], model, x, y, seed=5, config=config)
    natural_loss, natural = natural_loss_and_gradients(model, x, y, parameter_arrays(model))
    theta = tracked_parameters(model, parameter_arrays(model))
    robust, theta_star, result = robustness_loss(model, x, model(Tensor(x), theta), np.random.default_rng(5),
                                                 hyperparameters("beta", config))
    robust.backward()
    robust_gradients = gradient_through_the_attack(theta, theta_star, result)
    assert loss == pytest.approx(natural_loss + 0.7 * robust.item(), rel=1e-10)
    for name in natural:
        np.testing.assert_allclose(together[name], natural[name] + 0.7 * robust_gradients[name], rtol=1e-8,
                                   atol=1e-12)


def test_lsnn_dropout_trains_with_the_rate_regulariser_and_a_dropout_mask():
    """On the LSNN, dropout at p = 0 is `standard` (its loss includes the firing-rate regulariser); at p = 0.3
    the mask changes the loss and gradients, and the same seed repeats them."""
    from minimal.nn.lsnn import LSNN
    x = 2 * np.random.default_rng(0).standard_normal((6, 20, 2)).astype(np.float32)
    y = np.arange(6) % 3

    def lsnn():
        return LSNN(np.random.default_rng(1), 2, 3, num_hidden=16)

    standard_loss, expected = gradients_after(METHODS["standard"], lsnn(), x, y)
    zero_loss, gradients = gradients_after(METHODS["dropout"], lsnn(), x, y, config={"dropout": 0.0})
    assert zero_loss == pytest.approx(standard_loss, rel=1e-6)
    for name in expected:
        np.testing.assert_allclose(gradients[name], expected[name], rtol=1e-5, atol=1e-7)
    loss, gradients = gradients_after(METHODS["dropout"], lsnn(), x, y, seed=4)
    assert loss != pytest.approx(standard_loss, rel=1e-6)
    again_loss, again = gradients_after(METHODS["dropout"], lsnn(), x, y, seed=4)
    assert again_loss == loss
    for name in gradients:
        np.testing.assert_array_equal(again[name], gradients[name])


def test_awp_with_its_input_attack_uses_the_attacked_inputs(monkeypatch):
    """awp_input_epsilon > 0 (Fig. S11): the weight attack and the gradient see X* from PGA on the inputs; at 0
    the inputs are untouched (the paper's CNN and ECG rows)."""
    from minimal.robust import methods
    model, x, y = tiny_cnn(), np.random.default_rng(1).standard_normal((6, 1, 10, 10)), np.arange(6) % 3
    seen = []
    original = methods.pga_on_inputs
    monkeypatch.setattr(methods, "pga_on_inputs", lambda *args: seen.append(args[3]) or original(*args))
    _, plain = gradients_after(METHODS["awp"], model, x, y, config={"attack_steps": 2})
    assert seen == []
    _, attacked = gradients_after(METHODS["awp"], model, x, y, config={"attack_steps": 2, "awp_input_epsilon": 0.1})
    assert seen == [0.1]
    assert any(not np.allclose(plain[name], attacked[name]) for name in plain)


def test_the_constant_box_trains_through_beta_with_jacobian_one():
    """--attack-box constant (Fig. S4): the β step runs, and its robust gradient uses dΘ*/dΘ = 1."""
    model, x, y = tiny_cnn(), np.random.default_rng(1).standard_normal((6, 1, 10, 10)), np.arange(6) % 3
    relative = gradients_after(METHODS["beta"], model, x, y, config={"attack_steps": 2})
    constant = gradients_after(METHODS["beta"], model, x, y, config={"attack_steps": 2, "attack_box": "constant"})
    assert np.isfinite(constant[0]) and constant[0] != relative[0]


def test_awp_descends_from_gamma_times_the_attack_displacement(monkeypatch):
    """AWP's point is Θ + γ(Θ* − Θ), Θ* from PGA in the box ζ_attack|Θ| (the authors' code): every entry moves by at
    most γ·ζ_attack·|Θ|, and some move by more than half of it (the attack is not a no-op)."""
    from minimal.robust import methods
    model, (x, y) = tiny_cnn(), blobs(n=12)
    theta = {name: value.copy() for name, value in methods.parameter_arrays(model).items()}
    seen = []
    original = methods.natural_loss_and_gradients
    monkeypatch.setattr(methods, "natural_loss_and_gradients",
                        lambda model, x, y, params: seen.append(params) or original(model, x, y, params))
    METHODS["awp"](model, x, y, np.random.default_rng(0), {"awp_gamma": 0.5, "zeta_attack": 0.2})
    point = seen[-1]
    largest_share = 0.0
    for name, value in theta.items():
        moved = np.abs(point[name] - value)
        assert np.all(moved <= 0.5 * 0.2 * np.abs(value) + 1e-6), name
        largest_share = max(largest_share, float(np.max(moved / (0.1 * np.abs(value) + 1e-12))))
    assert largest_share > 0.5
