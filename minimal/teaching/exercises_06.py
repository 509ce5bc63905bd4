"""Graders of notebook 06 (measuring robustness, Table 1): 6.1 pooling the draws of two instances, 6.2 the
Mann–Whitney U statistic by counting pairs, 6.3 the yield of a batch of chips (the fraction meeting a spec)."""
import numpy as np
from scipy.stats import mannwhitneyu

from .grading import compare_arrays, fail, grader


# ---------------------------------------------------------------------------------------------------- 6.1
@grader("6.1")
def check_pooling(pool_instances):
    """pool_instances(per_instance) -> ζ -> the draws of all instances in one array, instance after instance.
    per_instance: a list of dicts ζ -> accuracies of that instance's draws."""
    rng = np.random.default_rng(0)
    per_instance = [{0.2: rng.random(5), 0.5: rng.random(5)}, {0.2: rng.random(5), 0.5: rng.random(5)}]
    pooled = pool_instances(per_instance)
    if not isinstance(pooled, dict) or set(pooled) != {0.2, 0.5}:
        fail("6.1", f"return a dict with the levels ζ of the instances ({[0.2, 0.5]}) as keys, got {pooled!r}")
    for zeta in (0.2, 0.5):
        draws = [instance[zeta] for instance in per_instance]
        compare_arrays("6.1", f"pooled[{zeta}]", pooled[zeta], np.concatenate(draws), [
            ("np.stack adds an axis (one row per instance); the pooled draws are one flat array: np.concatenate",
             np.stack(draws)),
            ("averaging the instances draw by draw halves the number of draws and shrinks their spread; Table 1 "
             "pools them, every draw a chip of its own", np.mean(draws, axis=0)),
            ("the instances are pooled in reverse order", np.concatenate(draws[::-1]))])
    return "two instances of 5 draws → 10 draws per ζ"


# ---------------------------------------------------------------------------------------------------- 6.2
@grader("6.2")
def check_u_statistic(u_statistic):
    """u_statistic(a, b) -> the number of pairs (a_i, b_j) with a_i > b_j, ties counting ½ (scipy's U of a)."""
    rng = np.random.default_rng(1)
    a, b = np.round(rng.normal(0.80, 0.02, 30), 2), np.round(rng.normal(0.79, 0.02, 25), 2)  # accuracies with ties
    expected = mannwhitneyu(a, b, alternative="two-sided").statistic
    greater, ties = np.sum(a[:, None] > b[None, :]), np.sum(a[:, None] == b[None, :])
    got = u_statistic(a, b)
    compare_arrays("6.2", f"U of {len(a)} against {len(b)} draws (with {ties} tied pairs)", float(got), expected, [
        ("ties are left out; a tied pair counts ½ for each side", greater),
        ("a tie counts 1: it must count ½, so that U(a, b) + U(b, a) = len(a)·len(b)", greater + ties),
        ("that is U of b: count the pairs where a's draw is the larger", len(a) * len(b) - expected)])
    return f"U = {expected:g} of {len(a) * len(b)} pairs, as scipy.stats.mannwhitneyu"


# ---------------------------------------------------------------------------------------------------- 6.3
@grader("6.3")
def check_chip_yield(chip_yield):
    """chip_yield(accuracies, spec) -> the fraction of draws (chips) whose accuracy is at least spec."""
    accuracies = np.array([0.81, 0.70, 0.78, 0.64, 0.70, 0.83, 0.59, 0.77])
    spec = 0.70
    expected = np.mean(accuracies >= spec)
    compare_arrays("6.3", f"the yield of the chips {accuracies.tolist()} at spec {spec}",
                   float(chip_yield(accuracies, spec)), expected, [
                       ("a chip of exactly the spec passes it: ≥, not >", np.mean(accuracies > spec)),
                       ("that is the fraction that fails the spec", 1 - expected),
                       ("a count, not a fraction: divide by the number of chips", np.sum(accuracies >= spec))])
    return f"{np.sum(accuracies >= spec)} of {len(accuracies)} chips meet the spec {spec}"
