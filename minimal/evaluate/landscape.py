"""python -m minimal.evaluate landscape: Fig. 1, S2 and Table S1, the test cross-entropy L(Θ + α·v) along random
directions v = |Θ|·ζ·N(0, 1), and its mean slope (the flatness of Table S1). Every finished curve (checkpoint,
direction) is saved at once in <out>/landscape_cells.json, so a stopped evaluation continues where it was."""
import json
import os

import numpy as np

from .. import plots
from ..cli import positive_float, positive_int
from ..io import format_table, write_csv
from ..robust.landscape import landscape_slope, loss_along, random_direction
from .cells import CellStore
from .common import FORWARD_BATCH, add_common_options, checkpoint_record, generator, load_checkpoints, write_outputs

NAME = "landscape"
HELP = "Fig. 1, S2, Table S1: test loss along random directions"
# the paper's figures of the landscape on each split (Fig. S6 is Fig. 1 for several β_rob)
LANDSCAPE_FIGURES = {"test": "Fig. 1, S2, S6, Table S1", "val": "Fig. 1, S2 on the validation set",
                     "train": "Fig. S7"}


def add_arguments(landscape):
    add_common_options(landscape, 500, FORWARD_BATCH)
    landscape.add_argument("--zeta", type=positive_float, default=0.2,
                           help="direction size: v = |Θ|·ζ·N(0, 1) (default: 0.2)")
    landscape.add_argument("--alpha-max", type=positive_float, default=2.0,
                           help="α runs from −max to max (default: 2)")
    landscape.add_argument("--num-alphas", type=positive_int, default=21, help="points on the α grid (default: 21)")
    landscape.add_argument("--repeats", type=positive_int, default=5, help="random directions (default: 5)")


def check_arguments(parser, args):
    if args.num_alphas < 2:
        parser.error(f"--num-alphas must be at least 2 (a slope needs two points), got {args.num_alphas}")


def landscape_trials(checkpoint, alphas, args, store):
    """Losses (repeats, len(alphas)) of one checkpoint: one row per random direction; a curve already in the
    CellStore is taken from there."""
    rows = []
    for repeat in range(args.repeats):
        rows.append(store.value(landscape_cell_key(checkpoint, repeat, args),
                                lambda: landscape_curve(checkpoint, alphas, args, repeat)))
    return np.array(rows)


def landscape_curve(checkpoint, alphas, args, repeat):
    """The losses along random direction number `repeat` (its own generator), as a list."""
    direction = random_direction(checkpoint.model, args.zeta, generator(args.seed, repeat))
    return loss_along(checkpoint.model, checkpoint.split, direction, alphas, args.batch_size,
                      desc=f"{checkpoint.label}, direction {repeat + 1}/{args.repeats}").tolist()


def landscape_cell_key(checkpoint, repeat, args):
    """What one curve depends on, as a string: the checkpoint's weights (their digest), the direction's number
    and size, the α grid, the data, and --batch-size (the logits of another batching may differ in the last bit,
    and a loss, unlike an accuracy, shows it)."""
    return json.dumps([checkpoint.weights, repeat, args.seed, args.zeta, args.alpha_max,
                       args.num_alphas, args.split, args.max_samples, args.data_dir, args.batch_size])


def interrupted_message(args):
    return (f"the finished curves (checkpoint, direction) are kept in {args.out}/landscape_cells.json; the same "
            f"command continues from them")


def run(args):
    checkpoints = load_checkpoints(args)
    alphas = np.linspace(-args.alpha_max, args.alpha_max, args.num_alphas)
    store = CellStore(os.path.join(args.out, "landscape_cells.json"))
    keys = [landscape_cell_key(checkpoint, repeat, args)
            for checkpoint in checkpoints for repeat in range(args.repeats)]
    store.report_finished(keys)
    losses = {checkpoint.label: landscape_trials(checkpoint, alphas, args, store) for checkpoint in checkpoints}
    slopes = {label: [landscape_slope(alphas, trial) for trial in trials] for label, trials in losses.items()}
    print(f"Table S1: mean |ΔL|/Δα of the {args.split} loss along {args.repeats} directions "
          f"v = |Θ|·{args.zeta:g}·N(0, 1), α ∈ [{-args.alpha_max:g}, {args.alpha_max:g}], "
          f"mean ± std over directions")
    center = int(np.argmin(np.abs(alphas)))     # α = 0 (or the grid point nearest to it)
    rows = [["checkpoint", "slope (mean ± std)", f"loss at α = {alphas[center]:g}"]]
    rows += [[label, f"{np.mean(values):.4f} ± {np.std(values):.4f}", f"{losses[label][0][center]:.4f}"]
             for label, values in slopes.items()]
    print(format_table(rows))
    curves = [["checkpoint", "direction"] + [f"α = {alpha:g}" for alpha in alphas]]
    curves += [[label, str(repeat + 1)] + [f"{loss:.6f}" for loss in trial]
               for label, trials in losses.items() for repeat, trial in enumerate(trials)]
    write_csv(args.out, "landscape_curves", curves)
    results = [{**checkpoint_record(checkpoint), "losses": losses[checkpoint.label].tolist(),
                "slopes": slopes[checkpoint.label], "slope_mean": float(np.mean(slopes[checkpoint.label])),
                "slope_std": float(np.std(slopes[checkpoint.label]))} for checkpoint in checkpoints]
    write_outputs(args.out, "landscape", rows,
                  record={"figure": LANDSCAPE_FIGURES[args.split], "split": args.split, "seed": args.seed,
                          "zeta": args.zeta, "alphas": alphas.tolist(), **store.record(keys),
                          "checkpoints": results})
    samples = min(len(checkpoint.split) for checkpoint in checkpoints)
    plots.plot_landscape(alphas, losses, os.path.join(args.out, "landscape.png"),
                         subtitle=f"{args.repeats} directions v = |Θ|·{args.zeta:g}·N(0, 1), {samples} "
                                  f"{args.split} samples", split=args.split)
