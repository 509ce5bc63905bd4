"""The paper's figures, one function each, saved as PNG.

    plot_mismatch_boxes       Fig. 2              test accuracy under mismatch: one box per checkpoint and ζ
    plot_attack_curves        Fig. 3, S3, S5c     test accuracy after a weight attack of size ζ (and a random one)
    plot_landscape            Fig. 1, S2          test loss along random directions: mean and single trials
    plot_membrane_histogram   Fig. S10            LSNN membrane potentials relative to the firing threshold
    plot_verified_accuracy    Fig. S9             verified accuracy by interval bound propagation over ζ
    plot_pcm_drift            Fig. 4              accuracy on simulated PCM hardware against the time since programming
    plot_training_history     Fig. S4, S5a/b      per-epoch records of training, one panel per quantity
    plot_panel_per_checkpoint Fig. S5, S8         the paper's layout of S5 and S8: one panel per network, a line per
                                                  record (clean and attacked; random and adversarial)

Each function takes what minimal/evaluate/ computes (dicts of NumPy arrays keyed by checkpoint label) and a
path, writes the PNG atomically and returns the matplotlib Figure, which a notebook displays.

The figures are `matplotlib.figure.Figure` objects rendered by the Agg backend, without pyplot: there is no global
list of open figures to leak, and importing this module never changes the backend a notebook uses.
"""
import io
import re

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from .io import atomic_write_bytes

DPI = 120
LINESTYLES = ("-", "--", ":", "-.")  # one per seed of a method: "standard seed 0", "standard seed 1", ...
SEED_SUFFIX = re.compile(r" seed \d+$")
LEGEND_INSIDE_MAX = 6                # a legend with more entries goes beside the axes, off the data
BOXES_WIDTH_MAX = 14.0               # inches: wider, a page shrinks the figure until its labels are unreadable
ATTACK_FIGURES = {"PGA on cross-entropy": "Fig. 3", "PGA on KL": "Fig. S3", "random box corner": "Fig. S5c"}
RECORD_COLOURS = {                   # as in the paper's Fig. S5 and S8: the attacked record black, the other red
    "PGA on KL": "black", "PGA on cross-entropy": "tab:grey", "random box corner": "tab:red",
    "under the weight attack": "black", "clean": "tab:red"}


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


def label_styles(labels):
    """label -> (colour, line style). Labels that differ only by a trailing " seed N" form a group (a method):
    one colour per group, in order of first appearance (tab10, or tab20 beyond 10 groups, so that up to 20
    groups all differ), and the seeds of a group get the LINESTYLES in turn. A label without a seed is its own
    group, drawn "-"."""
    groups = [SEED_SUFFIX.sub("", label) for label in labels]
    order = list(dict.fromkeys(groups))
    if len(order) <= 10:
        colours = colormaps["tab10"].colors  # the default colours C0 … C9
    else:
        pairs = colormaps["tab20"].colors   # a dark and a light shade per hue: the 10 dark ones first
        colours = pairs[0::2] + pairs[1::2]
    styles = {}
    for index, (label, group) in enumerate(zip(labels, groups)):
        seed_rank = groups[:index].count(group)
        styles[label] = (colours[order.index(group) % len(colours)], LINESTYLES[seed_rank % len(LINESTYLES)])
    return styles


def add_legend(axes, handles=None):
    """The legend of `handles` (by default the labelled artists of `axes`): inside the axes where it covers the
    least data, or, with more than LEGEND_INSIDE_MAX entries, beside the axes on the right."""
    if handles is None:
        handles = axes.get_legend_handles_labels()[0]
    if len(handles) > LEGEND_INSIDE_MAX:
        return axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    return axes.legend(handles=handles, loc="best")


def labelled_lines(figure):
    """The first line of each label over all panels of `figure`, in order: the handles of one legend for all."""
    lines = {}
    for axes in figure.axes:
        for line in axes.get_lines():
            lines.setdefault(line.get_label(), line)
    return list(lines.values())


# ---------------------------------------------------------------------------------------------------- Fig. 2
def plot_mismatch_boxes(table, path, title="Fig. 2: test accuracy under mismatch Θ·(1 + ζ·N(0, 1))"):
    """Fig. 2: test accuracy (%) of every mismatch draw Θ·(1 + ζ·N(0, 1)), one box per checkpoint per ζ (and
    Fig. 5 / S4 for the other noise models, named in the title).

    table: label -> {ζ: accuracies of the draws (fractions)}. Boxes of one ζ stand side by side, one colour per
    method (label_styles), the box edge drawn in the seed's line style; the whiskers reach 1.5 box heights, points
    beyond are single draws (the bad chips). A cell of a single draw (ζ = 0 is Θ itself) is a short line in its
    checkpoint's colour: a box would be a bare black line.
    """
    labels = list(table)
    styles = label_styles(labels)
    zetas = sorted({zeta for cells in table.values() for zeta in cells})
    width = min(BOXES_WIDTH_MAX, max(7.0, 1.1 * len(zetas) * max(1, len(labels) / 2)))
    figure, axes = new_axes(title, "noise level ζ", "test accuracy (%)", width=width, height=4.5 + (width - 7) / 5)
    box_width = 0.8 / len(labels)
    for index, label in enumerate(labels):
        colour, style = styles[label]
        shift = (index - (len(labels) - 1) / 2) * box_width
        present = [k for k, zeta in enumerate(zetas) if zeta in table[label]]
        boxes = [k for k in present if np.size(table[label][zetas[k]]) > 1]
        single = [k for k in present if np.size(table[label][zetas[k]]) == 1]
        axes.boxplot([100 * np.asarray(table[label][zetas[k]]) for k in boxes],
                     positions=[k + shift for k in boxes], widths=0.85 * box_width, patch_artist=True,
                     boxprops={"facecolor": colour, "linestyle": style, "alpha": 0.6},
                     medianprops={"color": "black"},
                     flierprops={"marker": ".", "markersize": 3})
        for k in single:    # a line (not hlines) so that the legend's loc="best" sees it and keeps off it
            accuracy = 100 * np.ravel(table[label][zetas[k]])[0]
            axes.plot([k + shift - 0.4 * box_width, k + shift + 0.4 * box_width], [accuracy, accuracy],
                      color=colour, linewidth=3, solid_capstyle="butt")
    axes.set_xticks(range(len(zetas)), [f"{zeta:g}" for zeta in zetas])
    axes.set_xlim(-0.5, len(zetas) - 0.5)
    add_legend(axes, [Patch(facecolor=colour, edgecolor="black", linestyle=style, alpha=0.6, label=label)
                      for label, (colour, style) in styles.items()])
    return save_png(figure, path)


# ---------------------------------------------------------------------------------------------------- Fig. 3
def plot_attack_curves(zetas, curves, path, subtitle=""):
    """Fig. 3 / S3 / S5c: test accuracy (%) after an attack of size ζ, one panel per attack kind (named with its
    paper figure), one line per checkpoint, styled by label_styles.

    zetas  : the attack sizes, drawn equally spaced (as in the paper) since they span two orders of magnitude;
             the axis label says the spacing is not to scale
    curves : label -> {attack name: accuracies (fractions), one per ζ}
    """
    attacks = list(dict.fromkeys(attack for lines in curves.values() for attack in lines))
    styles = label_styles(list(curves))
    figure = Figure(figsize=(4.2 * len(attacks), 4.5), layout="constrained")
    panels = figure.subplots(1, len(attacks), sharey=True, squeeze=False)[0]
    positions = np.arange(len(zetas))
    for axes, attack in zip(panels, attacks):
        for label, lines in curves.items():
            if attack in lines:
                colour, style = styles[label]
                axes.plot(positions, 100 * np.asarray(lines[attack]), color=colour, linestyle=style, marker="o",
                          markersize=4, label=label)
        axes.set_title(f"{attack} ({ATTACK_FIGURES[attack]})" if attack in ATTACK_FIGURES else attack, fontsize=10)
        axes.set_xticks(positions, [f"{zeta:g}" for zeta in zetas])
        axes.grid(alpha=0.3)
    panels[0].set_ylim(0, 100)
    panels[0].set_ylabel("test accuracy (%)")
    figure.supxlabel("attack size ζ (box |Θ* − Θ| ≤ ζ|Θ|; the ζ values equally spaced, not to scale)",
                     fontsize="medium")
    figure.suptitle("Fig. 3, S3, S5c: test accuracy after a weight attack of size ζ"
                    + (f"\n{subtitle}" if subtitle else ""), fontsize=11)
    add_legend(panels[-1], labelled_lines(figure))
    return save_png(figure, path)


# ---------------------------------------------------------------------------------------------------- Fig. 1
def plot_landscape(alphas, losses, path, subtitle="", split="test"):
    """Fig. 1 and S2: test cross-entropy L(Θ + α·v) along random directions v = |Θ|·ζ·N(0, 1) (on the training
    split, split="train": Fig. S7).

    losses: label -> array (repeats, len(alphas)), one row per direction. The thick line is the mean over the
    directions (Fig. 1), the thin ones are the single directions (Fig. S2). Flat curves = a robust minimum.
    Colour and line style of the thick line by label_styles.
    """
    figures = "Fig. S7, the training set (mean, thick; single directions, thin)" if split == "train" else \
        "Fig. 1 (mean, thick) and S2 (single directions, thin)"
    figure, axes = new_axes(f"{figures}: {split} loss around Θ", "α  (parameters Θ + α·v, v = |Θ|·ζ·N(0, 1))",
                            f"{split} cross-entropy", subtitle=subtitle)
    for label, (colour, style) in label_styles(list(losses)).items():
        trials = np.atleast_2d(losses[label])
        for trial in trials:
            axes.plot(alphas, trial, color=colour, linewidth=0.8, alpha=0.35)
        axes.plot(alphas, trials.mean(axis=0), color=colour, linestyle=style, linewidth=2.2, label=label)
    axes.axvline(0, color="grey", linewidth=0.8, linestyle=":")
    add_legend(axes)
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
    for label, (colour, style) in label_styles(list(densities)).items():
        axes.stairs(densities[label], bin_edges, baseline=None, color=colour, linestyle=style, linewidth=1.6,
                    label=label)
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
    for label, (colour, style) in label_styles(list(table)).items():
        present = [k for k, zeta in enumerate(zetas) if zeta in table[label]]
        axes.plot(present, [100 * table[label][zetas[k]] for k in present], color=colour, linestyle=style,
                  marker="o", markersize=4, label=label)
    axes.set_xticks(range(len(zetas)), [f"{zeta:g}" for zeta in zetas])
    axes.set_ylim(-2, 102)  # a margin: the points at 0 % (large ζ) and 100 % stay clear of the frame
    add_legend(axes)
    return save_png(figure, path)


# ---------------------------------------------------------------------------------------------------- Fig. 4
def plot_pcm_drift(times, curves, float_accuracies, path):
    """Fig. 4: accuracy (%) of networks on simulated PCM against the time since programming (log axis).

    curves           : label -> (mean, std) arrays over repeats, one entry per time, as fractions
    float_accuracies : label -> the same network's accuracy in floating point on a PC (thin line across)
    Colour and line style by label_styles.
    """
    figure, axes = new_axes("Fig. 4: accuracy on simulated PCM as the devices drift",
                            "time since programming t (s)", "test accuracy (%)")
    for label, (colour, style) in label_styles(list(curves)).items():
        mean, std = 100 * np.asarray(curves[label][0]), 100 * np.asarray(curves[label][1])
        axes.errorbar(times, mean, yerr=std, color=colour, linestyle=style, marker="o", markersize=4, capsize=3,
                      label=label)
        axes.axhline(100 * float_accuracies[label], color=colour, linestyle=style, linewidth=1,
                     label=f"{label}: floating point")
    axes.set_xscale("log")
    add_legend(axes)
    return save_png(figure, path)


# ---------------------------------------------------------------------------------------------------- Fig. S4, S5
def plot_training_history(panels, path):
    """Fig. S4 (left, middle) and S5a/b: one panel per recorded quantity against the epoch, one line per checkpoint.

    panels: quantity description -> {label: (epochs, values)}. A label keeps its colour and line style
    (label_styles) in every panel; one legend for all panels, below them (a panel holds no room for long labels).
    """
    styles = label_styles(list(dict.fromkeys(label for lines in panels.values() for label in lines)))
    figure = Figure(figsize=(5.5 * len(panels), 4.2), layout="constrained")
    for index, (quantity, lines) in enumerate(panels.items()):
        axes = figure.add_subplot(1, len(panels), index + 1)
        for label, (epochs, values) in lines.items():
            colour, style = styles[label]
            axes.plot(epochs, values, color=colour, linestyle=style, marker="o", markersize=3, label=label)
        axes.set_xlabel("epoch")
        axes.set_ylabel(quantity)
        axes.grid(alpha=0.3)
    figure.legend(handles=labelled_lines(figure), loc="outside lower center", fontsize=8)
    figure.suptitle("Fig. S4, S5a/b: what training recorded per epoch", fontsize=11)
    return save_png(figure, path)


# ---------------------------------------------------------------------------------------------------- Fig. S5, S8
def plot_panel_per_checkpoint(panels, path, title, xlabel, ylabel, xticks=None):
    """Fig. S5 and S8 as the paper draws them: one panel per checkpoint (side by side, same y axis), one line per
    record in each — clean and attacked validation accuracy per epoch (S5a/b), or accuracy after a random and an
    adversarial weight perturbation per ζ (S5c/d, S8) — coloured by RECORD_COLOURS (attacked black, random red).

    panels : checkpoint label -> {record name: (x, y)}
    xticks : (positions, labels) for a categorical axis such as the equally spaced ζ, or None
    """
    figure = Figure(figsize=(3.0 * len(panels) + 1.0, 3.8), layout="constrained")
    axes_row = figure.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for axes, (label, records) in zip(axes_row, panels.items()):
        for name, (x, y) in records.items():
            axes.plot(x, y, color=RECORD_COLOURS.get(name), marker="o", markersize=4, label=name)
        axes.set_title(label, fontsize=10)
        if xticks is not None:
            axes.set_xticks(*xticks)
        else:
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))     # epochs
        axes.grid(alpha=0.3)
    axes_row[0].set_ylim(0, 100)
    axes_row[0].set_ylabel(ylabel)
    figure.supxlabel(xlabel, fontsize="medium")
    figure.suptitle(title, fontsize=11)
    axes_row[-1].legend(loc="best", fontsize=8)     # short record names: in the last panel, off its data
    return save_png(figure, path)
