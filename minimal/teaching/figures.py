"""The course notebooks' figures. They are made with pyplot, so a notebook shows each one under the cell that
draws it (the project's report figures, minimal/plots.py, are written to files instead)."""
import matplotlib.pyplot as plt
import numpy as np

COLOURS = ("tab:blue", "tab:green", "tab:orange", "tab:red", "tab:purple", "tab:brown")


def accuracy_boxes(results, xlabel="mismatch level ζ", title=""):
    """One box of accuracies (%) per label and level, the boxes of one level side by side (Fig. 2's layout).
    results: label -> {level: accuracies (fractions)}."""
    labels = list(results)
    levels = sorted({level for cells in results.values() for level in cells})
    width = 0.8 / len(labels)
    figure, axes = plt.subplots(figsize=(max(5.0, 1.2 * len(levels) * len(labels) / 2 + 3), 3.5))
    for k, (label, colour) in enumerate(zip(labels, COLOURS)):
        positions = np.arange(len(levels)) + (k - (len(labels) - 1) / 2) * width
        boxes = axes.boxplot([100 * np.asarray(results[label][level]) for level in levels], positions=positions,
                             widths=0.9 * width, patch_artist=True, medianprops={"color": "black"})
        for box in boxes["boxes"]:
            box.set_facecolor(colour)
        axes.plot([], [], "s", color=colour, label=label)
    axes.set_xticks(np.arange(len(levels)), [f"{level:g}" for level in levels])
    finish(axes, xlabel, "test accuracy (%)", title, legend=len(labels) > 1)
    return figure


def curves(x, named_curves, xlabel, ylabel, title="", styles=None, log_x=False):
    """One line per name (y values over the x values); styles: optional name -> matplotlib format string."""
    figure, axes = plt.subplots(figsize=(5.5, 3.5))
    for (name, y), colour in zip(named_curves.items(), COLOURS * 3):
        axes.plot(x, y, (styles or {}).get(name, "o-"), color=colour, label=name)
    if log_x:
        axes.set_xscale("symlog", linthresh=min(value for value in x if value > 0))
    finish(axes, xlabel, ylabel, title, legend=True)
    return figure


def finish(axes, xlabel, ylabel, title, legend):
    """Labels, title, a light grid and the legend."""
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title, fontsize=11)
    axes.grid(alpha=0.3)
    if legend:
        axes.legend(fontsize=8)
    axes.figure.tight_layout()


def lsnn_activity(spikes, v, threshold, neuron, title=""):
    """The spiking network on one sample: left, the spike raster (a dot per spike, time × neuron); right, one
    neuron's membrane potential V and adaptive threshold B over time, its spikes marked.
    spikes, v, threshold: (T, H) arrays of one sample (LSNN.record_state's, one sample taken)."""
    figure, (raster, trace) = plt.subplots(1, 2, figsize=(11, 3.2))
    steps, neurons = np.nonzero(spikes)
    raster.plot(steps, neurons, "|", color="k", markersize=4)
    raster.axhline(neuron, color="tab:orange", lw=0.8)
    finish(raster, "time step t", "neuron", f"spikes z_t ({spikes.mean():.1%} of neuron-steps)", legend=False)
    trace.plot(v[:, neuron], color="tab:blue", label="membrane potential V_t")
    trace.plot(threshold[:, neuron], color="tab:red", label="threshold B_t = b0 + β b_t")
    fired = np.flatnonzero(spikes[:, neuron])
    trace.plot(fired, v[fired, neuron], "k.", label="spike z_t = 1")
    finish(trace, "time step t", "", f"neuron {neuron} (orange line on the left)", legend=True)
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    return figure
