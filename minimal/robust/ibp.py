"""Verified accuracy under weight perturbations, by interval bound propagation (Supplementary Fig. S9).

For an attack size ζ every parameter Θ becomes the interval [Θ − ζ|Θ|, Θ + ζ|Θ|] (Interval.weight_box), and
the model (the very code that trained it, written with minimal/nn/functional.py) computes interval logits
[l̲, l̄] that contain the logits of every network in that box. A sample is *verified* when the correct class c wins
in all of them, i.e. its lowest logit beats every other class's highest:

    l̲_c > l̄_k   for every class k ≠ c.

The paper says it as "the correct logit interval has the largest lower bound and is disjoint from the others",
which is the same condition. The verified accuracy, the fraction of verified samples, is a lower bound on the
accuracy of the worst network in the box; interval bounds are loose (they forget which network produced which
value), so the true worst case is usually better. At ζ = 0 the box is the trained network alone, and the verified
accuracy is its accuracy (a tie between two logits counts as not verified).

`python -m minimal.evaluate ibp --checkpoint DIR [--checkpoint DIR …] [--zetas ζ …]` measures it for trained
checkpoints (minimal/evaluate/ibp.py).
"""
import numpy as np

from ..autodiff import no_grad
from ..cli import progress_bar
from ..interval import Interval


def weight_boxes(model, zeta):
    """name -> [Θ − ζ|Θ|, Θ + ζ|Θ|] for every parameter (the paper perturbs every weight and bias)."""
    return {name: Interval.weight_box(p.data, zeta) for name, p in model.named_parameters()}


def interval_logits(model, x, params_intervals):
    """Interval logits (N, classes) of `model` on the point inputs x, its parameters given as Intervals. The LSNN
    runs its fused interval kernel (kernels/lsnn_interval.py), which computes what its reference path computes on
    Intervals (the same bounds, tested bit for bit) ~4 times faster."""
    with no_grad():
        return model(x, params_intervals)


def verified_mask(lower, upper, labels):
    """True for every sample whose correct class's lower logit bound exceeds every other class's upper bound.
    lower, upper: (N, classes) logit bounds; labels: (N,) integer classes."""
    rows = np.arange(len(labels))
    others_upper = np.array(upper, dtype=np.float64)
    others_upper[rows, labels] = -np.inf  # the correct class does not compete with itself
    return lower[rows, labels] > others_upper.max(axis=1)


def verified_accuracy(model, split, zeta, batch_size=100, desc=None):
    """Fraction of the split's samples verified for every network in the box [Θ − ζ|Θ|, Θ + ζ|Θ|]."""
    params = weight_boxes(model, zeta)
    verified = 0
    for start in progress_bar(range(0, len(split), batch_size), desc=desc):
        logits = interval_logits(model, split.x[start:start + batch_size], params)
        verified += int(verified_mask(logits.lo, logits.hi, split.y[start:start + batch_size]).sum())
    return verified / len(split)
