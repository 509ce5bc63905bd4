"""Graders of notebook 04 (the baselines): 4.1 forward noise's noisy parameters, 4.2 AMP's projection onto the l2
ball, 4.3 SAM's ascent step — each against minimal/robust/methods.py."""
import numpy as np

from ..robust.methods import onto_l2_ball, weighted_sum, with_forward_noise
from .grading import compare_arrays, compare_dicts, fail, grader


def example_parameters(seed):
    rng = np.random.default_rng(seed)
    return {"w": rng.standard_normal((6, 4)).astype(np.float32), "b": rng.standard_normal(4).astype(np.float32)}


# ---------------------------------------------------------------------------------------------------- 4.1
@grader("4.1")
def check_forward_noise(noisy_parameters):
    """noisy_parameters(theta, eta, rng) -> name -> Θ·(1 + η·N(0, 1)) (or Θ + η|Θ|·N(0, 1), the same distribution),
    the normals drawn from rng name after name, in Θ's dtype."""
    theta, eta = example_parameters(0), 0.3
    original = {name: value.copy() for name, value in theta.items()}
    got = noisy_parameters(theta, eta, np.random.default_rng(1))
    if any(not np.array_equal(theta[name], original[name]) for name in theta):
        fail("4.1", "Θ itself was changed: forward noise perturbs a copy for one forward pass; the noise must not "
                    "accumulate in the weights")
    expected = with_forward_noise(original, eta, np.random.default_rng(1))
    rng = np.random.default_rng(1)
    absolute_form = {name: (value + eta * np.abs(value) * rng.standard_normal(value.shape)).astype(value.dtype)
                     for name, value in original.items()}
    if isinstance(got, dict) and set(got) == set(theta) and all(
            np.allclose(got[name], absolute_form[name], rtol=1e-6) for name in theta):
        return "Θ + η|Θ|·N(0, 1): the library writes the same noise as Θ·(1 + η·N(0, 1))"
    rng = np.random.default_rng(1)
    constant = {name: value + eta * rng.standard_normal(value.shape) for name, value in original.items()}
    compare_dicts("4.1", "the noisy parameters", got, expected, [
        ("the noise must scale with |Θ| (relative, as mismatch): Θ + η·N(0, 1) is constant noise", constant)])
    for name, value in got.items():
        if np.asarray(value).dtype != theta[name].dtype:
            fail("4.1", f"result[{name!r}] is {np.asarray(value).dtype}; keep Θ's dtype {theta[name].dtype}")
    return f"Θ·(1 + {eta}·N(0, 1)) for every parameter, as methods.with_forward_noise"


# ---------------------------------------------------------------------------------------------------- 4.2
@grader("4.2")
def check_l2_ball(project):
    """project(vector, radius) -> the nearest point of {‖v‖₂ ≤ radius}: v shrunk to length radius if longer."""
    rng = np.random.default_rng(2)
    radius = 0.5
    for scale, case in [(1.0, "a vector longer than the radius"), (0.01, "a vector inside the ball")]:
        vector = scale * rng.standard_normal((5, 3))
        compare_arrays("4.2", f"the projection of {case}", project(vector.copy(), radius),
                       onto_l2_ball(vector, radius), [
                           ("clipping every entry to ±radius is the l∞ box, not the l2 ball",
                            np.clip(vector, -radius, radius)),
                           ("a vector inside the ball stays as it is: shrink only when ‖v‖₂ > radius",
                            vector * radius / np.sqrt(np.sum(vector ** 2))),
                           ("the length is the square root of the sum of squares (‖v‖₂, not ‖v‖₂²)",
                            vector * min(1.0, radius / np.sum(vector ** 2)))])
    return f"‖v‖₂ ≤ {radius}: long vectors shrunk onto the sphere, short ones unchanged"


# ---------------------------------------------------------------------------------------------------- 4.3
@grader("4.3")
def check_sam_ascent(sam_point):
    """sam_point(theta, gradients, rho) -> Θ + ρ·g/‖g‖₂, one norm over all the parameters together."""
    theta, gradients, rho = example_parameters(3), example_parameters(4), 0.05
    expected = weighted_sum(theta, gradients, rho / np.sqrt(sum(np.sum(g * g) for g in gradients.values())))
    got = sam_point(theta, gradients, rho)
    per_tensor = {name: theta[name] + rho * g / np.sqrt(np.sum(g * g)) for name, g in gradients.items()}
    compare_dicts("4.3", "Θ + ε̂", got, expected, [
        ("one norm per tensor: SAM normalises the whole gradient, ‖g‖₂ over all parameters together", per_tensor),
        ("ε̂ goes up the gradient (an ascent step: SAM looks for the worst nearby point), not down",
         {name: theta[name] - (expected[name] - theta[name]) for name in theta}),
        ("the gradient is not normalised: ε̂ = ρ·g/‖g‖₂ has length ρ",
         {name: theta[name] + rho * gradients[name] for name in theta})])
    return f"Θ + ρ·g/‖g‖₂ with ρ = {rho}: a step of length ρ up the gradient"
