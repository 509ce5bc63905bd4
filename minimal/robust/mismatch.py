"""Device mismatch (Eq. 1): every attacked parameter becomes Θ_mismatch ~ N(Θ, (ζ|Θ|)²), i.e.

    Θ_mismatch = Θ · (1 + ζ · N(0, 1))          one independent standard normal per entry

so the noise is proportional to each parameter's magnitude (ζ is the "mismatch level"). Supplementary Fig. S4
contrasts it with noise of constant size, Θ + σ · N(0, 1), which a network can defeat trivially by growing its
weights; that variant is here too (`noise="constant"`, then `level` is σ).

A draw is a dict name -> array holding only the attacked parameters; pass it as `model(x, params=draw)` and the
model uses its own values for the rest. `stacked_draws` puts many draws on a leading axis, (draws, *shape) per
name, for evaluating them in one batched pass. All randomness comes from the `rng` (np.random.Generator) you
pass: the same seed gives the same draws.

Table 1 measures a network by the accuracies of many draws (`mismatch_accuracies`), reported as mean, std and
min (`summarise`), and compares two networks by the Mann–Whitney U test of their draws (`u_test_p_values`).
"""
from itertools import combinations

import numpy as np
from scipy.stats import mannwhitneyu

from ..cli import progress_bar
from ..metrics import accuracy


def parameter_arrays(model, names=None):
    """Θ: name -> array (the model's own arrays, not copies) of every parameter, or of those in `names`.

    Mismatch and the attack perturb these; the paper attacks every weight and bias of the CNN and the LSNN, so
    names=None (all) is the default everywhere.
    """
    params = {name: p.data for name, p in model.named_parameters()}
    if names is None:
        return params
    unknown = sorted(set(names) - set(params))
    if unknown:
        raise KeyError(f"unknown parameter names {unknown}; the model has {sorted(params)}")
    return {name: params[name] for name in names}


def relative_noise(theta, zeta, rng):
    """One draw of Eq. 1 for one array: Θ · (1 + ζ · N(0, 1)), in Θ's dtype."""
    return (theta * (1 + zeta * rng.standard_normal(theta.shape))).astype(theta.dtype)


def constant_noise(theta, sigma, rng):
    """One draw of constant-size noise (Fig. S4) for one array: Θ + σ · N(0, 1), in Θ's dtype."""
    return (theta + sigma * rng.standard_normal(theta.shape)).astype(theta.dtype)


def layer_max_noise(theta, eta, rng):
    """One draw of the noise of Joshi et al. (2020), the PCM section's baseline, for one array:
    Θ + η·max|Θ|·N(0, 1) — the same σ for every entry of the layer's tensor, set by its largest weight."""
    return (theta + eta * np.abs(theta).max() * rng.standard_normal(theta.shape)).astype(theta.dtype)


NOISE_MODELS = {"relative": relative_noise, "constant": constant_noise, "layer_max": layer_max_noise}


def mismatch_draws(model, level, num_draws, rng, names=None, noise="relative"):
    """Yield `num_draws` perturbed parameter dicts, one at a time (memory-friendly for big models).

    level : ζ for noise="relative" (Eq. 1), σ for noise="constant" (Fig. S4), η for noise="layer_max" (Fig. 5)
    names : which parameters to perturb (default: all weights and biases)
    """
    if noise not in NOISE_MODELS:
        raise ValueError(f"unknown noise model {noise!r}; choose from {sorted(NOISE_MODELS)}")
    perturb = NOISE_MODELS[noise]
    theta = parameter_arrays(model, names)
    for _ in range(num_draws):
        yield {name: perturb(value, level, rng) for name, value in theta.items()}


def stacked_draws(model, level, num_draws, rng, names=None, noise="relative"):
    """The same draws as `mismatch_draws` (same rng state, same values), stacked: name -> (num_draws, *shape)."""
    if num_draws < 1:
        raise ValueError(f"num_draws must be at least 1, got {num_draws}")
    draws = list(mismatch_draws(model, level, num_draws, rng, names, noise))
    return {name: np.stack([draw[name] for draw in draws]) for name in draws[0]}


# ---------------------------------------------------------------------------------------------------- Table 1
def mismatch_accuracies(model, split, zeta, num_draws, rng, batch_size=500, desc=None, noise="relative"):
    """Accuracy on the split for each of `num_draws` mismatch draws Θ·(1 + ζ·N(0, 1)) (Eq. 1).

    A draw is one simulated chip: a full set of frozen parameters, passed to the model as `params` (the model
    itself is never changed). It is scored on the whole split in batches of `batch_size` samples by the models'
    evaluation path (metrics.accuracy -> nn/inference.py: float32, no graph), so the only Python loop is over
    draws and batches. ζ = 0 needs one draw: that draw is Θ itself.

    Where the time goes (F-MNIST CNN, 10 000 images): almost all of it in the convolutions, conv2's product
    (131 GFLOP per draw) on BLAS. Drawing Θ·(1 + ζN) takes ~10 ms per draw (490 000 normals); one NumPy
    expression over all parameters at once instead of one per tensor measured the same (10.0 vs 9.9 ms), so the
    draw stays written tensor by tensor.
    noise: one of mismatch.NOISE_MODELS (Eq. 1 by default; "layer_max" for the Gaussian noise of Fig. 5).
    """
    num_draws = 1 if zeta == 0 else num_draws
    draws = progress_bar(mismatch_draws(model, zeta, num_draws, rng, noise=noise), total=num_draws, desc=desc,
                         unit="draw")
    return np.array([accuracy(model, split, batch_size, draw) for draw in draws])


def summarise(accuracies):
    """Table 1's numbers of one cell, in %: mean, standard deviation (of the draws, ddof 0) and minimum."""
    percent = 100 * np.asarray(accuracies, dtype=np.float64)
    return {"mean": float(percent.mean()), "std": float(percent.std()), "min": float(percent.min())}


def u_test_p_values(accuracies, zetas):
    """The paper's significance test (§4: "p < 2 × 10⁻⁸ in all cases; U test"): for every pair of checkpoints and
    every ζ > 0, the two-sided Mann–Whitney U test of the two sets of draws. Returns (first, second, ζ, p) tuples.
    accuracies: label -> {ζ: the draws' accuracies}."""
    return [(first, second, zeta, float(mannwhitneyu(accuracies[first][zeta], accuracies[second][zeta],
                                                     alternative="two-sided").pvalue))
            for first, second in combinations(accuracies, 2) for zeta in zetas if zeta > 0]
