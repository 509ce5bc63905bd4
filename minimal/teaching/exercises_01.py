"""Graders of notebook 01 (mismatch, Eq. 1): 1.1 one mismatch draw, 1.2 Table 1's summary of the draws, 1.3 scaling
the layers of a ReLU network without changing what it computes."""
import numpy as np

from ..autodiff import Tensor, no_grad
from ..robust.mismatch import summarise
from .grading import compare_arrays, fail, grader
from .models import course_cnn

LAYERS = ("conv1", "conv2", "fc1", "fc2", "fc3")  # the course CNN's layers, from the input to the logits


# ---------------------------------------------------------------------------------------------------- 1.1
@grader("1.1")
def check_mismatch_draw(mismatch_draw):
    """mismatch_draw(theta, zeta, rng) -> name -> Θ·(1 + ζ·N(0, 1)), judged by its statistics over 10⁵ entries
    of magnitudes from 0.01 to 10 (and exact zeros), since any correct way of drawing is right."""
    rng = np.random.default_rng(0)
    magnitudes = 10.0 ** rng.uniform(-2, 1, (200, 500))
    theta = {"weight": (magnitudes * rng.choice([-1, 1], magnitudes.shape)).astype(np.float32),
             "bias": np.where(rng.random(1000) < 0.2, 0, rng.standard_normal(1000)).astype(np.float32)}
    original = {name: value.copy() for name, value in theta.items()}
    zeta = 0.2
    draw = mismatch_draw(theta, zeta, np.random.default_rng(1))
    if not isinstance(draw, dict) or set(draw) != set(theta):
        fail("1.1", f"return a dict with the names of theta ({sorted(theta)}), got {describe(draw)}")
    if any(not np.array_equal(theta[name], original[name]) for name in theta):
        fail("1.1", "Θ itself was changed: return new arrays and leave the model's parameters alone")
    for name, value in theta.items():
        if np.shape(draw[name]) != value.shape or np.asarray(draw[name]).dtype != value.dtype:
            fail("1.1", f"draw[{name!r}] is {describe(draw[name])}, expected {value.dtype} of shape {value.shape} "
                        f"(cast back with .astype(value.dtype))")
    if np.any(draw["bias"][theta["bias"] == 0] != 0):
        fail("1.1", "an entry with Θ = 0 moved: the noise of Eq. 1 is proportional to |Θ|, so 0 stays 0")
    relative = (draw["weight"] - theta["weight"]) / np.abs(theta["weight"])
    small, large = magnitudes < 0.1, magnitudes > 1
    if relative[small].std() > 3 * relative[large].std():
        fail("1.1", f"the relative deviation (Θ_mismatch − Θ)/|Θ| is {relative[small].std():.2f} for |Θ| < 0.1 "
                    f"but {relative[large].std():.2f} for |Θ| > 1: the noise does not grow with |Θ|. That is "
                    f"constant noise Θ + ζ·N(0, 1) (Fig. S4); Eq. 1 is Θ·(1 + ζ·N(0, 1))")
    if abs(relative.std() - zeta) > 0.01 or abs(relative.mean()) > 0.01:
        fail("1.1", f"(Θ_mismatch − Θ)/|Θ| has mean {relative.mean():.4f} and std {relative.std():.4f}; "
                    f"expected mean 0 and std ζ = {zeta} (ζ is the standard deviation, not the variance)")
    again = mismatch_draw(theta, zeta, np.random.default_rng(1))
    if any(not np.array_equal(draw[name], again[name]) for name in theta):
        fail("1.1", "the same seed gave different draws: take the normal numbers from the rng argument")
    return f"relative deviation mean {relative.mean():+.4f}, std {relative.std():.4f} (ζ = {zeta}), zeros stay 0"


def describe(value):
    """"float64 of shape (3, 4)", "list", …: what a value is, for a message."""
    return f"{value.dtype} of shape {value.shape}" if isinstance(value, np.ndarray) else type(value).__name__


# ---------------------------------------------------------------------------------------------------- 1.2
@grader("1.2")
def check_summary(summarise_draws):
    """summarise_draws(accuracies) -> {"mean", "std", "min"} in %, against minimal.robust.mismatch.summarise."""
    accuracies = np.array([0.8, 0.75, 0.9, 0.6, 0.85])
    got = summarise_draws(accuracies)
    expected = summarise(accuracies)
    if not isinstance(got, dict) or set(got) != set(expected):
        fail("1.2", f"return a dict with the keys {sorted(expected)}, got {got!r}")
    percent = 100 * accuracies
    slips = {"mean": [("the accuracies are fractions; Table 1 reports %", accuracies.mean())],
             "std": [("the std of Table 1 is that of the draws themselves, ddof=0 (np.std's default)",
                      percent.std(ddof=1)), ("the accuracies are fractions; Table 1 reports %", accuracies.std())],
             "min": [("the worst draw is the minimum, not the maximum", percent.max()),
                     ("the accuracies are fractions; Table 1 reports %", accuracies.min())]}
    for key in expected:
        compare_arrays("1.2", f"summary[{key!r}] of the draws {accuracies.tolist()}", got[key], expected[key],
                       slips[key])
    return "mean, std and minimum in %, as Table 1"


# ---------------------------------------------------------------------------------------------------- 1.3
@grader("1.3")
def check_scale_layers(scale_layers):
    """scale_layers(params, c) -> every weight times c, the bias of layer k times c^k, so the logits are c⁵ times
    the original and no prediction changes (ReLU and max-pooling commute with a positive factor)."""
    model, c, rng = course_cnn(seed=3), 3.0, np.random.default_rng(3)
    params = {name: p.data + (0.1 * rng.standard_normal(p.shape)).astype(p.dtype) if name.endswith("bias")
              else p.data.copy() for name, p in model.named_parameters()}     # biases start at 0: give them values
    scaled = scale_layers({name: value.copy() for name, value in params.items()}, c)
    if not isinstance(scaled, dict) or set(scaled) != set(params):
        fail("1.3", f"return a dict with every parameter name ({', '.join(params)}), got {describe(scaled)}")
    for depth, layer in enumerate(LAYERS, start=1):
        for kind, expected_factor, reason in [
                ("weight", c, "every weight is multiplied by c once"),
                ("bias", c ** depth, f"layer {depth}'s bias is added after {depth} layers of weights scaled by c, "
                                     f"so it needs c^{depth}")]:
            name = f"{layer}.{kind}"
            factor = scale_factor(scaled[name], params[name])
            if not np.isclose(factor, expected_factor, rtol=1e-4):
                fail("1.3", f"{name} was multiplied by {factor:.6g}, expected {expected_factor:g}: {reason}")
    x = np.random.default_rng(4).random((20, 1, 28, 28)).astype(np.float32)
    with no_grad():
        logits, scaled_logits = model(Tensor(x), params).data, model(Tensor(x), scaled).data
    compare_arrays("1.3", f"the logits of the scaled network divided by c⁵ = {c ** 5:g}",
                   scaled_logits / c ** len(LAYERS), logits, rtol=1e-4, atol=1e-5)
    return f"the logits grew by c⁵ = {c ** 5:g}, every prediction is the same"


def scale_factor(scaled, original):
    """The factor by which `original` was scaled (median of the ratios of its non-zero entries)."""
    nonzero = np.asarray(original) != 0
    return float(np.median(np.asarray(scaled)[nonzero] / np.asarray(original)[nonzero]))
