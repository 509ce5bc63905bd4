"""Eq. 1 mismatch draws Θ·(1 + ζN) and the constant-σ variant Θ + σN: statistics, seeding, stacking."""
import numpy as np
import pytest

from minimal.nn.cnn import CNN
from minimal.robust.mismatch import mismatch_draws, parameter_arrays, stacked_draws


def tiny_cnn(seed=0):
    """The paper's CNN, shrunk to 10×10 images, 3 channels and 3 classes (170 parameters)."""
    model = CNN(np.random.default_rng(seed), channels=3, kernel_size=3, hidden=(8, 6), num_classes=3, image_size=10)
    for p in model.parameters():  # nonzero biases, so every entry has a nonzero |Θ|
        p.data = p.data + np.float32(0.05)
    return model


def test_relative_draws_have_mean_theta_and_std_zeta_times_theta():
    model, zeta, num_draws = tiny_cnn(), 0.3, 4000
    draws = stacked_draws(model, zeta, num_draws, np.random.default_rng(0))
    for name, theta in parameter_arrays(model).items():
        ratio = draws[name].astype(np.float64) / theta  # = 1 + ζ·N(0, 1), per entry and draw
        assert draws[name].shape == (num_draws, *theta.shape) and draws[name].dtype == theta.dtype
        # per entry: sampling error of the mean ζ/√n ≈ 0.005, of the std ζ/√(2n) ≈ 0.0034; 6σ margins
        np.testing.assert_allclose(ratio.mean(axis=0), 1.0, atol=6 * zeta / np.sqrt(num_draws))
        np.testing.assert_allclose(ratio.std(axis=0), zeta, atol=6 * zeta / np.sqrt(2 * num_draws))


def test_constant_draws_have_std_sigma_whatever_the_magnitude():
    model, sigma, num_draws = tiny_cnn(), 0.2, 4000
    draws = stacked_draws(model, sigma, num_draws, np.random.default_rng(1), noise="constant")
    for name, theta in parameter_arrays(model).items():
        offset = draws[name].astype(np.float64) - theta
        np.testing.assert_allclose(offset.mean(axis=0), 0.0, atol=6 * sigma / np.sqrt(num_draws))
        np.testing.assert_allclose(offset.std(axis=0), sigma, atol=6 * sigma / np.sqrt(2 * num_draws))


def test_same_seed_same_draws_and_generator_matches_stack():
    model = tiny_cnn()
    first = stacked_draws(model, 0.5, 3, np.random.default_rng(7))
    again = stacked_draws(model, 0.5, 3, np.random.default_rng(7))
    one_by_one = list(mismatch_draws(model, 0.5, 3, np.random.default_rng(7)))
    other_seed = stacked_draws(model, 0.5, 3, np.random.default_rng(8))
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
        np.testing.assert_array_equal(first[name], np.stack([draw[name] for draw in one_by_one]))
        assert not np.array_equal(first[name], other_seed[name])


def test_names_select_parameters_and_the_model_is_untouched():
    model = tiny_cnn()
    before = model.state_dict()
    draw = next(mismatch_draws(model, 0.5, 1, np.random.default_rng(0), names=["fc3.weight"]))
    assert list(draw) == ["fc3.weight"]
    logits = model(np.zeros((2, 1, 10, 10), np.float32), draw)  # the draw works as a params override
    assert logits.shape == (2, 3)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])
    with pytest.raises(KeyError, match="unknown parameter names"):
        parameter_arrays(model, ["nope"])
    with pytest.raises(ValueError, match="unknown noise model"):
        next(mismatch_draws(model, 0.5, 1, np.random.default_rng(0), noise="uniform"))


def test_zero_level_and_zero_weights_give_theta_back():
    model = tiny_cnn()
    model.fc3.bias.data[:] = 0
    draw = next(mismatch_draws(model, 0.0, 1, np.random.default_rng(0)))
    for name, theta in parameter_arrays(model).items():
        np.testing.assert_array_equal(draw[name], theta)
    draw = next(mismatch_draws(model, 0.7, 1, np.random.default_rng(0)))
    np.testing.assert_array_equal(draw["fc3.bias"], 0)  # relative noise cannot move a zero weight


def test_layer_max_draws_have_std_eta_times_the_largest_weight_of_each_tensor():
    model, eta, num_draws = tiny_cnn(), 0.05, 4000
    draws = stacked_draws(model, eta, num_draws, np.random.default_rng(2), noise="layer_max")
    for name, theta in parameter_arrays(model).items():
        sigma = eta * np.abs(theta).max()        # one σ for the whole tensor, whatever each entry's size
        offset = draws[name].astype(np.float64) - theta
        np.testing.assert_allclose(offset.mean(axis=0), 0.0, atol=6 * sigma / np.sqrt(num_draws))
        np.testing.assert_allclose(offset.std(axis=0), sigma, rtol=6 / np.sqrt(2 * num_draws), atol=1e-7)
