"""The paper's figures, one function each, saved as PNG.

    plot_mismatch_boxes       Fig. 2              test accuracy under mismatch: one box per checkpoint and ζ
    plot_attack_curves        Fig. 3, S3, S5c     test accuracy after a weight attack of size ζ (and a random one)
    plot_landscape            Fig. 1, S2          test loss along random directions: mean and single trials
    plot_membrane_histogram   Fig. S10            LSNN membrane potentials relative to the firing threshold
    plot_verified_accuracy    Fig. S9             verified accuracy by interval bound propagation over ζ
    plot_pcm_drift            Fig. 4              accuracy on simulated PCM hardware against the time since programming
    plot_training_history     Fig. S4, S5a/b      per-epoch records of training, one panel per quantity

Each function takes what minimal/evaluate/ computes (dicts of NumPy arrays keyed by checkpoint label) and a
path, writes the PNG atomically and returns the matplotlib Figure, which a notebook displays.

The figures are `matplotlib.figure.Figure` objects rendered by the Agg backend, without pyplot: there is no global
list of open figures to leak, and importing this module never changes the backend a notebook uses.
"""
import io

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .io import atomic_write_bytes

DPI = 120
LINESTYLES = ("-", "--", ":", "-.")  # one per attack kind in plot_attack_curves


def save_png(figure, path):
    """Render `figure` to PNG (Agg) and write it to `path` atomically; return the figure."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())
    return figure


def new_axes(title, xlabel, ylabel, width=7.0, height=4.5, subtitle=""):
    """A figure with one set of axes, its labels, its title (and a second title line, e.g. how many draws and
    samples the figure shows) and a light grid."""
    figure = Figure(figsize=(width, height))
    axes = figure.add_subplot()
    axes.set_title(title + (f"\n{subtitle}" if subtitle else ""), fontsize=11)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    return figure, axes


# ---------------------------------------------------------------------------------------------------- Fig. 2
def plot_mismatch_boxes(table, path, title="Fig. 2: test accuracy under mismatch Θ·(1 + ζ·N(0, 1))"):
    """Fig. 2: test accuracy (%) of every mismatch draw Θ·(1 + ζ·N(0, 1)), one box per checkpoint per ζ (and
    Fig. 5 / S4 for the other noise models, named in the title).

    table: label -> {ζ: accuracies of the draws (fractions)}. Boxes of one ζ stand side by side, one colour per
    checkpoint; the whiskers reach 1.5 box heights, points beyond are single draws (the bad chips). A cell of a
    single draw (ζ = 0 is Θ itself) is a short line in its checkpoint's colour: a box would be a bare black line.
    """
    labels = list(table)
    zetas = sorted({zeta for cells in table.values() for zeta in cells})
    figure, axes = new_axes(title, "noise level ζ",
                            "test accuracy (%)", width=max(7.0, 1.1 * len(zetas) * max(1, len(labels) / 2)))
    box_width = 0.8 / len(labels)
    for index, label in enumerate(labels):
        shift = (index - (len(labels) - 1) / 2) * box_width
        present = [k for k, zeta in enumerate(zetas) if zeta in table[label]]
        boxes = [k for k in present if np.size(table[label][zetas[k]]) > 1]
        single = [k for k in present if np.size(table[label][zetas[k]]) == 1]
        axes.boxplot([100 * np.asarray(table[label][zetas[k]]) for k in boxes],
                     positions=[k + shift for k in boxes], widths=0.85 * box_width, patch_artist=True,
                     boxprops={"facecolor": f"C{index}", "alpha": 0.6}, medianprops={"color": "black"},
                     flierprops={"marker": ".", "markersize": 3})
        for k in single:
            axes.hlines(100 * np.ravel(table[label][zetas[k]])[0], k + shift - 0.4 * box_width,
                        k + shift + 0.4 * box_width, color=f"C{index}", linewidth=3)
    axes.set_xticks(range(len(zetas)), [f"{zeta:g}" for zeta in zetas])
    axes.set_xlim(-0.5, len(zetas) - 0.5)
    axes.legend(handles=[Patch(facecolor=f"C{i}", alpha=0.6, label=label) for i, label in enumerate(labels)],
                loc="best")
    return save_png(figure, path)


# ---------------------------------------------------------------------------------------------------- Fig. 3
def plot_attack_curves(zetas, curves, path, subtitle=""):
    """Fig. 3 / S3 / S5c: test accuracy (%) after an attack of size ζ, one line per checkpoint and attack kind.

    zetas  : the attack sizes, drawn equally spaced (as in the paper) since they span two orders of magnitude;
             the axis label says the spacing is not to scale
    curves : label -> {attack name: accuracies (fractions), one per ζ}; colour = checkpoint, line style = attack
    """
    figure, axes = new_axes("Fig. 3, S3, S5c: test accuracy after a weight attack of size ζ",
                            "attack size ζ (box |Θ* − Θ| ≤ ζ|Θ|; the ζ values equally spaced, not to scale)",
                            "test accuracy (%)", subtitle=subtitle)
    positions = np.arange(len(zetas))
    for index, (label, attacks) in enumerate(curves.items()):
        for style, (attack, accuracies) in zip(LINESTYLES, attacks.items()):
            axes.plot(positions, 100 * np.asarray(accuracies), color=f"C{index}", linestyle=style, marker="o",
                      markersize=4, label=f"{label}: {attack}")
    axes.set_xticks(positions, [f"{zeta:g}" for zeta in zetas])
    axes.set_ylim(0, 100)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the axes: many lines
    return save_png(figure, path)


# ---------------------------------------------------------------------------------------------------- Fig. 1
def plot_landscape(alphas, losses, path, subtitle=""):
    """Fig. 1 and S2: test cross-entropy L(Θ + α·v) along random directions v = |Θ|·ζ·N(0, 1).

    losses: label -> array (repeats, len(alphas)), one row per direction. The thick line is the mean over the
    directions (Fig. 1), the thin ones are the single directions (Fig. S2). Flat curves = a robust minimum.
    """
    figure, axes = new_axes("Fig. 1 (mean, thick) and S2 (single directions, thin): test loss around Θ",
                            "α  (parameters Θ + α·v, v = |Θ|·ζ·N(0, 1))", "test cross-entropy", subtitle=subtitle)
    for index, (label, trials) in enumerate(losses.items()):
        trials = np.atleast_2d(trials)
        for trial in trials:
            axes.plot(alphas, trial, color=f"C{index}", linewidth=0.8, alpha=0.35)
        axes.plot(alphas, trials.mean(axis=0), color=f"C{index}", linewidth=2.2, label=label)
    axes.axvline(0, color="grey", linewidth=0.8, linestyle=":")
    axes.legend(loc="upper center")
    return save_png(figure, path)


# ---------------------------------------------------------------------------------------------------- Fig. S10
def plot_membrane_histogram(bin_edges, densities, path, subtitle=""):
    """Fig. S10: distribution of the LSNN membrane potentials V relative to the adaptive threshold B.

    The x axis is (V − B)/B: 0 is the threshold, and on |(V − B)/B| < 1 (shaded) the surrogate gradient of Eq. 4
    is nonzero, i.e. V is close enough to B that a small weight change can add or remove a spike.
    densities: label -> normalised counts per bin (the area under a curve is the fraction of values in range).
    """
    figure, axes = new_axes("Fig. S10: membrane potentials relative to the firing threshold",
                            "(V − B) / B   (0 = threshold)", "normalised count", subtitle=subtitle)
    axes.axvspan(-1, 1, color="grey", alpha=0.12, label="|(V − B)/B| < 1: near threshold")
    axes.axvline(0, color="black", linewidth=0.8)
    for index, (label, density) in enumerate(densities.items()):
        axes.stairs(density, bin_edges, baseline=None, color=f"C{index}", linewidth=1.6, label=label)
    axes.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15))  # below the axes: long labels
    return save_png(figure, path)


# ---------------------------------------------------------------------------------------------------- Fig. S9
def plot_verified_accuracy(table, path, subtitle=""):
    """Fig. S9: verified test accuracy (%) by interval bound propagation, one line per checkpoint.

    table: label -> {ζ: verified accuracy (fraction)}, as minimal/robust/ibp.py's ibp_sweep returns it. A sample
    counts when its class is correct for every network in the box [Θ − ζ|Θ|, Θ + ζ|Θ|]. The ζ are drawn equally
    spaced, since they span two orders of magnitude (and include 0); the axis label says it is not to scale.
    """
    zetas = sorted({zeta for row in table.values() for zeta in row})
    figure, axes = new_axes("Fig. S9: verified accuracy (interval bound propagation)",
                            "attack size ζ (weights in [Θ − ζ|Θ|, Θ + ζ|Θ|]; equally spaced, not to scale)",
                            "verified accuracy (%)", subtitle=subtitle)
    for index, (label, row) in enumerate(table.items()):
        present = [k for k, zeta in enumerate(zetas) if zeta in row]
        axes.plot(present, [100 * row[zetas[k]] for k in present], color=f"C{index}", marker="o", markersize=4,
                  label=label)
    axes.set_xticks(range(len(zetas)), [f"{zeta:g}" for zeta in zetas])
    axes.set_ylim(0, 100)
    axes.legend(fontsize=8, loc="best")
    return save_png(figure, path)


# ---------------------------------------------------------------------------------------------------- Fig. 4
def plot_pcm_drift(times, curves, float_accuracies, path):
    """Fig. 4: accuracy (%) of networks on simulated PCM against the time since programming (log axis).

    curves           : label -> (mean, std) arrays over repeats, one entry per time, as fractions
    float_accuracies : label -> the same network's accuracy in floating point on a PC (dashed line)
    """
    figure, axes = new_axes("Fig. 4: accuracy on simulated PCM as the devices drift",
                            "time since programming t (s)", "test accuracy (%)")
    for index, (label, (mean, std)) in enumerate(curves.items()):
        mean, std = 100 * np.asarray(mean), 100 * np.asarray(std)
        axes.errorbar(times, mean, yerr=std, color=f"C{index}", marker="o", markersize=4, capsize=3, label=label)
        axes.axhline(100 * float_accuracies[label], color=f"C{index}", linestyle="--", linewidth=1,
                     label=f"{label}: floating point")
    axes.set_xscale("log")
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return save_png(figure, path)


# ---------------------------------------------------------------------------------------------------- Fig. S4, S5
def plot_training_history(panels, path):
    """Fig. S4 (left, middle) and S5a/b: one panel per recorded quantity against the epoch, one line per checkpoint.

    panels: quantity description -> {label: (epochs, values)}. A label keeps its colour in every panel.
    """
    labels = list(dict.fromkeys(label for lines in panels.values() for label in lines))
    figure = Figure(figsize=(5.5 * len(panels), 4.2))
    for index, (quantity, lines) in enumerate(panels.items()):
        axes = figure.add_subplot(1, len(panels), index + 1)
        for label, (epochs, values) in lines.items():
            axes.plot(epochs, values, color=f"C{labels.index(label) % 10}", marker="o", markersize=3, label=label)
        axes.set_xlabel("epoch")
        axes.set_ylabel(quantity)
        axes.grid(alpha=0.3)
    figure.axes[0].legend(fontsize=8, loc="best")
    figure.suptitle("Fig. S4, S5a/b: what training recorded per epoch", fontsize=11)
    return save_png(figure, path)
