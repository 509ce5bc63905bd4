"""python -m minimal.evaluate membrane: Fig. S10, the histogram of the LSNN's membrane potentials relative to its
adaptive threshold, (V − B)/B."""
import os

import numpy as np

from .. import plots
from ..cli import positive_int, progress_bar
from ..data.common import fixed_subset
from ..io import format_table
from ..nn.lsnn import LSNN, membrane_histogram
from .common import (FORWARD_BATCH, EvaluationError, add_common_options, checkpoint_record, load_checkpoints,
                     write_outputs)

NAME = "membrane"
HELP = "Fig. S10: LSNN membrane potentials relative to the threshold"
MEMBRANE_PERCENTILES = (0.5, 99.5)


MEMBRANE_RANGE_SAMPLES = 200


def add_arguments(membrane):
    add_common_options(membrane, 250, FORWARD_BATCH)
    membrane.add_argument("--bins", type=positive_int, default=96, help="histogram bins (default: 96)")
    membrane.add_argument("--range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                          help="histogram range of (V − B)/B; values outside are counted but not drawn (default: "
                               f"from the data, the {MEMBRANE_PERCENTILES[0]:g}th to {MEMBRANE_PERCENTILES[1]:g}th "
                               "percentile of all checkpoints' values)")


def check_arguments(parser, args):
    if args.range and args.range[0] >= args.range[1]:
        parser.error(f"--range LOW HIGH needs LOW < HIGH, got {args.range[0]:g} {args.range[1]:g}")


def membrane_range(checkpoints, batch_size):
    """The histogram range that shows the data: the MEMBRANE_PERCENTILES of (V − B)/B over every checkpoint, on
    a fixed subset of MEMBRANE_RANGE_SAMPLES samples each (widened to include the band |(V − B)/B| < 1)."""
    values = []
    for checkpoint in checkpoints:
        subset = fixed_subset(checkpoint.split, MEMBRANE_RANGE_SAMPLES)
        for start in range(0, len(subset), batch_size):
            state = checkpoint.model.record_state(subset.x[start:start + batch_size])
            values.append(((state["v"] - state["threshold"]) / state["threshold"]).ravel())
    low, high = np.percentile(np.concatenate(values), MEMBRANE_PERCENTILES)
    return min(float(low), -1.0), max(float(high), 1.0)


def run(args):
    checkpoints = load_checkpoints(args)
    for checkpoint in checkpoints:
        if not isinstance(checkpoint.model, LSNN):
            raise EvaluationError(f"membrane potentials need an LSNN; {checkpoint.folder} holds a "
                                  f"{type(checkpoint.model).__name__} ({checkpoint.meta['task']} task)")
    low, high = args.range or membrane_range(checkpoints, args.batch_size)
    bin_edges = np.linspace(low, high, args.bins + 1)
    histograms = {checkpoint.label: membrane_histogram(checkpoint.model, checkpoint.split, bin_edges, args.batch_size)
                  for checkpoint in progress_bar(checkpoints, unit="checkpoint")}
    print(f"Fig. S10: membrane potentials (V − B)/B on the {args.split} split")
    header = ["checkpoint", "near threshold |(V−B)/B| < 1", f"outside [{low:.3g}, {high:.3g}]"]
    print(format_table([header] + [[label, f"{100 * h['near_threshold']:.2f} %", f"{100 * h['outside']:.2f} %"]
                                   for label, h in histograms.items()]))
    rows = [["bin from", "bin to"] + list(histograms)]
    rows += [[f"{bin_edges[k]:g}", f"{bin_edges[k + 1]:g}"] + [f"{h['density'][k]:.6g}" for h in histograms.values()]
             for k in range(args.bins)]
    results = [{**checkpoint_record(checkpoint), **histograms[checkpoint.label],
                "density": histograms[checkpoint.label]["density"].tolist()} for checkpoint in checkpoints]
    write_outputs(args.out, "membrane", rows, record={"figure": "Fig. S10", "split": args.split,
                                                      "quantity": "(V - B) / B", "bin_edges": bin_edges.tolist(),
                                                      "checkpoints": results})
    densities = {f"{label} ({100 * h['near_threshold']:.0f}% near threshold, {100 * h['outside']:.0f}% outside "
                 f"the plot)": h["density"] for label, h in histograms.items()}
    samples = ", ".join(sorted({str(len(checkpoint.split)) for checkpoint in checkpoints}))
    plots.plot_membrane_histogram(bin_edges, densities, os.path.join(args.out, "membrane.png"),
                                  subtitle=f"every time step and neuron of {samples} {args.split} samples")
