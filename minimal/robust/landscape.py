"""The loss landscape around the trained parameters (Fig. 1, S2, S6, S7 and Table S1).

A random direction is scaled like mismatch, v = |Θ|·ζ·N(0, 1) (ζ = 0.2 in Fig. 1), so that every parameter moves
in proportion to its own magnitude; the loss is measured at Θ + α·v on a grid of α. A flat curve is a minimum that
mismatch cannot easily leave. Table S1 summarises a curve by its mean slope, the average of |ΔL| / Δα between
neighbouring grid points.
"""
import numpy as np

from ..cli import progress_bar
from ..metrics import mean_cross_entropy
from .mismatch import parameter_arrays


def random_direction(model, zeta, rng):
    """v = |Θ| · ζ · N(0, 1) for every parameter: a random direction scaled like mismatch (Fig. 1, ζ = 0.2)."""
    return {name: (np.abs(theta) * zeta * rng.standard_normal(theta.shape)).astype(theta.dtype)
            for name, theta in parameter_arrays(model).items()}


def loss_along(model, split, direction, alphas, batch_size=500, desc=None):
    """The cross-entropy on the split at Θ + α·v, for every α (α = 0 gives exactly the clean loss)."""
    theta = parameter_arrays(model)
    return np.array([
        mean_cross_entropy(model, split, batch_size,
                           {name: (theta[name] + alpha * v).astype(v.dtype) for name, v in direction.items()})
        for alpha in progress_bar(alphas, desc=desc, unit="α")])


def landscape_slope(alphas, losses):
    """Table S1's flatness of one curve: the mean over the α grid of |ΔL| / Δα between neighbouring points."""
    return float(np.mean(np.abs(np.diff(losses)) / np.diff(alphas)))
