"""Graders of notebook 08 (verification, interval bound propagation, Fig. S9): 8.1 the interval product (four
corners), 8.2 the interval ReLU, 8.3 the rule that verifies a sample."""
import numpy as np

from .. import interval
from ..robust.ibp import verified_mask
from .grading import compare_arrays, fail, grader


def intervals_of_every_sign(rng, size=400):
    """(lo, hi) with lo ≤ hi: intervals below 0, above 0, across 0 and points, in every combination."""
    centre, radius = rng.normal(0, 2, size), np.abs(rng.normal(0, 1.5, size))
    radius[::7] = 0                                      # some points
    return centre - radius, centre + radius


def as_pair(result, exercise_id, what):
    """The (lo, hi) a student's function returned, as two arrays."""
    if not isinstance(result, tuple) or len(result) != 2:
        fail(exercise_id, f"{what} should return a tuple (lo, hi), got {type(result).__name__}")
    return np.asarray(result[0]), np.asarray(result[1])


# ---------------------------------------------------------------------------------------------------- 8.1
@grader("8.1")
def check_interval_mul(interval_mul):
    """interval_mul(a_lo, a_hi, b_lo, b_hi) -> (lo, hi) of the elementwise product: min and max of the four
    corner products, as minimal.interval.mul."""
    rng = np.random.default_rng(0)
    (a_lo, a_hi), (b_lo, b_hi) = intervals_of_every_sign(rng), intervals_of_every_sign(rng)
    expected = interval.mul(interval.Interval(a_lo, a_hi), interval.Interval(b_lo, b_hi))
    lo, hi = as_pair(interval_mul(a_lo, a_hi, b_lo, b_hi), "8.1", "interval_mul")
    corners = [a_lo * b_lo, a_lo * b_hi, a_hi * b_lo, a_hi * b_hi]
    compare_arrays("8.1", "the lower bound", lo, expected.lo, [
        ("[a̲·b̲, ā·b̄] holds only when both intervals are ≥ 0: take the min of all four corners", a_lo * b_lo),
        ("two corners are not enough: a̲·b̄ and ā·b̲ are the extremes when the signs differ",
         np.minimum(a_lo * b_lo, a_hi * b_hi))])
    compare_arrays("8.1", "the upper bound", hi, expected.hi, [
        ("[a̲·b̲, ā·b̄] holds only when both intervals are ≥ 0: take the max of all four corners", a_hi * b_hi),
        ("two corners are not enough: a̲·b̲ is the largest when both are negative",
         np.maximum(a_lo * b_hi, a_hi * b_lo))])
    samples = [rng.uniform(a_lo, a_hi) * rng.uniform(b_lo, b_hi) for _ in range(20)]
    if any(np.any(s < lo - 1e-12) or np.any(s > hi + 1e-12) for s in samples):
        fail("8.1", "a product of values inside the intervals fell outside your bounds")
    return f"min and max of the four corners on {len(a_lo)} pairs of intervals of every sign ({len(corners)} corners)"


# ---------------------------------------------------------------------------------------------------- 8.2
@grader("8.2")
def check_interval_relu(interval_relu):
    """interval_relu(lo, hi) -> (max(lo, 0), max(hi, 0)): ReLU is increasing, so bounds go to bounds."""
    lo_in, hi_in = intervals_of_every_sign(np.random.default_rng(1))
    expected = interval.relu(interval.Interval(lo_in, hi_in))
    lo, hi = as_pair(interval_relu(lo_in, hi_in), "8.2", "interval_relu")
    compare_arrays("8.2", "the lower bound", lo, expected.lo, [
        ("[0, relu(hi)] is sound but loose: where lo > 0 every value is at least lo", np.zeros_like(lo_in)),
        ("ReLU is not |x|: a negative bound becomes 0", np.abs(lo_in))])
    compare_arrays("8.2", "the upper bound", hi, expected.hi, [
        ("ReLU is not |x|: a negative bound becomes 0", np.abs(hi_in))])
    return "[relu(lo), relu(hi)]: bounds go to bounds for an increasing function"


# ---------------------------------------------------------------------------------------------------- 8.3
@grader("8.3")
def check_verified(verified):
    """verified(lower, upper, labels) -> bool (N,): the correct class's lower bound beats every other class's
    upper bound (strictly), as minimal.robust.ibp.verified_mask."""
    rng = np.random.default_rng(2)
    centre = rng.normal(0, 2, (300, 5))
    radius = np.abs(rng.normal(0, 1, (300, 5)))
    lower, upper = centre - radius, centre + radius
    labels = rng.integers(0, 5, 300)
    lower[:60], upper[:60] = centre[:60], centre[:60]                  # points: verified iff correctly classified
    upper[60:70, (labels[60:70] + 1) % 5] = lower[60:70, labels[60:70]]  # ties between bounds: not verified
    expected = verified_mask(lower, upper, labels)
    got = np.asarray(verified(lower, upper, labels))
    rows = np.arange(len(labels))
    others_upper, others_lower = upper.copy(), lower.copy()
    others_upper[rows, labels] = others_lower[rows, labels] = -np.inf
    if got.shape != expected.shape:
        fail("8.3", f"return one True/False per sample, shape {expected.shape}; got shape {got.shape}")
    compare_arrays("8.3", f"the verified samples ({int(expected.sum())} of {len(labels)})", got.astype(float),
                   expected.astype(float), [
                       ("the correct class was compared with its own upper bound: leave it out of the maximum",
                        (lower[rows, labels] > upper.max(axis=1)).astype(float)),
                       ("the largest lower bound is not enough: the correct interval must lie above every other "
                        "interval, its lower bound above their upper bounds",
                        (lower[rows, labels] > others_lower.max(axis=1)).astype(float)),
                       ("a tie is not verified (some network of the box may pick the other class): use >, not ≥",
                        (lower[rows, labels] >= others_upper.max(axis=1)).astype(float)),
                       ("that is the point prediction (the upper bounds' argmax), not verification",
                        (upper.argmax(axis=1) == labels).astype(float))])
    return f"{int(expected.sum())} of {len(labels)} samples verified, as verified_mask"
