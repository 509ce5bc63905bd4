"""Graders of notebook 07 (flatness, Fig. 1, S2, S6, S7, Table S1): 7.1 the random direction |Θ|·ζ·N(0, 1),
7.2 the point Θ + α·v of the landscape, 7.3 Table S1's slope of a loss curve."""
import numpy as np

from ..robust.landscape import landscape_slope, random_direction
from ..robust.mismatch import parameter_arrays
from .grading import compare_arrays, compare_dicts, fail, grader
from .models import course_cnn


# ---------------------------------------------------------------------------------------------------- 7.1
@grader("7.1")
def check_direction(direction):
    """direction(theta, zeta, rng) -> name -> |Θ|·ζ·N(0, 1), the normals drawn from rng name after name, in Θ's
    dtype: equal, number for number, to minimal.robust.landscape.random_direction."""
    model, zeta = course_cnn(seed=7), 0.2
    theta = {name: value.copy() for name, value in parameter_arrays(model).items()}
    got = direction(theta, zeta, np.random.default_rng(0))
    expected = random_direction(model, zeta, np.random.default_rng(0))
    normals = {name: np.random.default_rng(0).standard_normal(value.shape) for name, value in theta.items()}
    compare_dicts("7.1", "the direction", got, expected, [
        ("the direction is scaled by |Θ|, not Θ: Θ·N has the same distribution, but the check compares with "
         "the library's draws number for number", random_direction_signed(theta, zeta)),
        ("|Θ| is missing: a direction of the same size for every parameter is not scaled like mismatch",
         {name: zeta * normal for name, normal in sequential_normals(theta).items()}),
        ("every parameter drew from a fresh default_rng(0): draw from the rng you are given, one name after the "
         "other", {name: np.abs(theta[name]) * zeta * normals[name] for name in theta})])
    for name, value in got.items():
        if np.asarray(value).dtype != theta[name].dtype:
            fail("7.1", f"direction[{name!r}] is {np.asarray(value).dtype}; keep Θ's dtype {theta[name].dtype}")
    return f"|Θ|·{zeta}·N(0, 1) for all {len(theta)} parameter arrays, as random_direction"


def sequential_normals(theta):
    rng = np.random.default_rng(0)
    return {name: rng.standard_normal(value.shape) for name, value in theta.items()}


def random_direction_signed(theta, zeta):
    return {name: theta[name] * zeta * normal for name, normal in sequential_normals(theta).items()}


# ---------------------------------------------------------------------------------------------------- 7.2
@grader("7.2")
def check_shifted(shifted):
    """shifted(theta, direction, alpha) -> name -> Θ + α·v in Θ's dtype, Θ itself unchanged."""
    rng = np.random.default_rng(2)
    theta = {"w": rng.standard_normal((4, 3)).astype(np.float32), "b": rng.standard_normal(3).astype(np.float32)}
    direction = {name: (0.2 * np.abs(value) * rng.standard_normal(value.shape)).astype(np.float32)
                 for name, value in theta.items()}
    original = {name: value.copy() for name, value in theta.items()}
    alpha = -1.5
    got = shifted(theta, direction, alpha)
    if any(not np.array_equal(theta[name], original[name]) for name in theta):
        fail("7.2", "Θ itself was changed (an in-place += ?). In the notebook Θ is the model's own arrays "
                    "(parameter_arrays does not copy): the model would walk away from its trained weights")
    expected = {name: original[name] + alpha * direction[name] for name in theta}
    compare_dicts("7.2", f"Θ + α·v at α = {alpha}", got, expected, [
        ("α is missing: that is the point at α = 1", {name: original[name] + direction[name] for name in theta}),
        ("the sign of α is lost", {name: original[name] - alpha * direction[name] for name in theta})])
    for name, value in got.items():
        if np.asarray(value).dtype != np.float32:
            fail("7.2", f"the result[{name!r}] is {np.asarray(value).dtype}: keep Θ's float32 (.astype)")
    return f"Θ + α·v at α = {alpha}, float32, Θ untouched"


# ---------------------------------------------------------------------------------------------------- 7.3
@grader("7.3")
def check_slope(slope):
    """slope(alphas, losses) -> the mean over neighbouring grid points of |ΔL| / Δα (Table S1)."""
    alphas = np.array([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])      # uneven spacing: Δα matters
    losses = np.array([1.9, 0.9, 0.6, 0.5, 0.55, 0.8, 1.6])
    expected = landscape_slope(alphas, losses)
    steps, differences = np.diff(alphas), np.diff(losses)
    compare_arrays("7.3", f"the slope of the losses {losses.tolist()} over α = {alphas.tolist()}",
                   float(slope(alphas, losses)), expected, [
                       ("|ΔL| is missing: the falling and the rising side of the valley cancel",
                        np.mean(differences / steps)),
                       ("ΔL is not divided by Δα", np.mean(np.abs(differences))),
                       ("the mean of |ΔL| is divided by the mean Δα: Table S1 averages |ΔL|/Δα point by point",
                        np.mean(np.abs(differences)) / np.mean(steps)),
                       ("np.gradient is a central difference at every point, not the slope between neighbours",
                        np.mean(np.abs(np.gradient(losses, alphas))))])
    return f"mean |ΔL|/Δα = {expected:.4f}, as landscape_slope"
