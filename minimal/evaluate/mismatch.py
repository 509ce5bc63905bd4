"""python -m minimal.evaluate mismatch: Table 1 and Fig. 2, test accuracy under device mismatch Θ·(1 + ζ·N(0, 1))
(Eq. 1), many draws (simulated chips) per ζ, with the paper's Mann–Whitney U test between the rows."""
import os

import numpy as np

from .. import plots
from ..cli import add_list_option, nonnegative_float, positive_int
from ..io import format_table
from ..robust.mismatch import NOISE_MODELS, summarise, u_test_p_values
from .cells import mismatch_cells
from .common import FORWARD_BATCH, add_common_options, checkpoint_record, format_cell, load_checkpoints, write_outputs

NAME = "mismatch"
HELP = "Table 1, Fig. 2: accuracy under mismatch Θ·(1 + ζ·N(0, 1))"
MISMATCH_ZETAS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7)           # Table 1


NOISE_FIGURES = {"relative": "Table 1, Fig. 2", "constant": "Fig. S4", "layer_max": "Fig. 5"}


NOISE_DESCRIPTIONS = {"relative": "mismatch Θ·(1 + ζN(0, 1))", "constant": "constant noise Θ + ζN(0, 1)",
                      "layer_max": "Gaussian noise Θ + ζ·max|Θ|·N(0, 1) per tensor"}


def add_arguments(mismatch):
    add_common_options(mismatch, 500, FORWARD_BATCH)
    add_list_option(mismatch, "--zetas", nonnegative_float, default=MISMATCH_ZETAS, metavar="ζ",
                    help="mismatch levels, space- or comma-separated (default: %(default)s)")
    mismatch.add_argument("--draws", type=positive_int, default=100,
                          help="mismatch draws (simulated chips) per ζ > 0 (default: 100, as the paper)")
    mismatch.add_argument("--noise", choices=sorted(NOISE_MODELS), default="relative",
                          help="relative: Eq. 1, Θ·(1 + ζN(0, 1)); constant: Θ + ζN(0, 1) (Fig. S4); layer_max: "
                               "Θ + ζ·max|Θ|·N(0, 1) per tensor (Joshi et al., Fig. 5) (default: relative)")
    mismatch.add_argument("--pool", action="store_true",
                          help="checkpoints with the same label are model instances of one network (other seeds): "
                               "one row each, their draws together, as the paper's Table 1 (default label with "
                               "--pool: the method)")
    mismatch.add_argument("--jobs", type=positive_int, default=1,
                          help="cells (checkpoint, ζ) evaluated at a time, each in a single-threaded process; "
                               "the number of cores is a good choice (default: 1, in this process)")


def check_arguments(parser, args):
    args.zetas = sorted(set(args.zetas))


def interrupted_message(args):
    return (f"the finished (checkpoint, ζ) cells are kept in {args.out}/mismatch_cells.json; the same command "
            f"continues from them")


def table1_numeric_rows(summaries, zetas, draws):
    """Table 1 for mismatch.csv, as numbers: per checkpoint the number of draws per ζ > 0, then the mean, std and
    min (%) at every ζ, each in a column of its own (so the file loads as numbers)."""
    header = ["checkpoint", "draws"] + [f"{stat} ζ = {zeta:g}" for zeta in zetas for stat in ("mean", "std", "min")]
    return [header] + [[label, str(draws[label])] + [f"{cells[zeta][stat]:.4f}" for zeta in zetas
                                                      for stat in ("mean", "std", "min")]
                       for label, cells in summaries.items()]


def table1_rows(summaries, zetas):
    """Table 1 as rows of strings: a header, then one row per checkpoint with one cell per ζ.

    summaries: label -> {ζ: summarise(...)}.
    """
    header = ["checkpoint"] + [f"ζ = {zeta:g}" for zeta in zetas]
    return [header] + [[label] + [format_cell(cells[zeta]) for zeta in zetas] for label, cells in summaries.items()]


def pooled_rows(checkpoints, cells):
    """Table 1's rows, label -> {ζ: the accuracies of the draws}. Checkpoints that share a label are model
    instances of one network (mismatch --pool): their draws are put together, as the paper's Table 1 pools its
    100 draws over two model instances. cells: mismatch_cells(…), one {ζ: cell} per checkpoint."""
    rows = {}
    for checkpoint, row in zip(checkpoints, cells):
        pooled = rows.setdefault(checkpoint.label, {})
        for zeta, cell in row.items():
            pooled[zeta] = np.concatenate([pooled.get(zeta, np.empty(0)), cell["accuracies"]])
    return rows


def run(args):
    checkpoints = load_checkpoints(args)
    cells = mismatch_cells(checkpoints, args)
    accuracies = pooled_rows(checkpoints, cells)
    summaries = {label: {zeta: summarise(draws) for zeta, draws in row.items()} for label, row in accuracies.items()}
    rows = table1_rows(summaries, args.zetas)
    draws = {label: max(len(row[zeta]) for zeta in row) for label, row in accuracies.items()}
    instances = " (the draws of all checkpoints with the same label pooled)" if args.pool else ""
    print(f"Table 1: {args.split} accuracy (%) under {NOISE_DESCRIPTIONS[args.noise]}, mean ± std (min) over "
          f"{args.draws} draws (ζ = 0: one) per checkpoint{instances}")
    print(format_table(rows))
    timed = [zeta for zeta in args.zetas if zeta > 0] or args.zetas  # ζ = 0 also pays for the first-call warm-up
    for checkpoint, row in zip(checkpoints, cells):
        per_draw = np.mean([row[zeta]["seconds_per_draw"] for zeta in timed])
        name = checkpoint.folder if args.pool else checkpoint.label
        print(f"{name}: {per_draw:.3f} s per draw on {len(checkpoint.split)} samples")
    results = [{**checkpoint_record(checkpoint), "results": [
        {"zeta": zeta, **summarise(cell["accuracies"]), "seconds_per_draw": cell["seconds_per_draw"],
         "accuracies": cell["accuracies"].tolist()} for zeta, cell in row.items()]}
        for checkpoint, row in zip(checkpoints, cells)]
    table = [{"label": label, "folders": [c.folder for c in checkpoints if c.label == label],
              "results": [{"zeta": zeta, **summaries[label][zeta], "draws": len(draws)}
                          for zeta, draws in row.items()]} for label, row in accuracies.items()]
    cell_seconds = sum(cell["seconds_per_draw"] * len(cell["accuracies"]) for row in cells
                       for cell in row.values())   # including cells computed by an earlier run
    write_outputs(args.out, "mismatch", rows, numeric_rows=table1_numeric_rows(summaries, args.zetas, draws),
                  record={"figure": NOISE_FIGURES[args.noise], "noise": args.noise,
                                               "split": args.split, "draws": args.draws, "seed": args.seed,
                                               "zetas": args.zetas, "pooled": args.pool,
                                               "cell_seconds": round(cell_seconds, 1), "table": table,
                                               "checkpoints": results})
    write_u_tests(args.out, accuracies, args.zetas)
    samples = ", ".join(sorted({str(len(checkpoint.split)) for checkpoint in checkpoints}))
    plots.plot_mismatch_boxes(accuracies, os.path.join(args.out, "mismatch.png"),
                              f"{NOISE_FIGURES[args.noise]}: {args.split} accuracy under "
                              f"{NOISE_DESCRIPTIONS[args.noise]}\n{max(draws.values())} draws per ζ > 0 and row, "
                              f"{samples} samples")


def write_u_tests(folder, accuracies, zetas):
    """Print the U tests and write them to <folder>/mismatch_u_test.csv (a row per pair, a column per ζ > 0) and
    .json; nothing to test with one checkpoint or only ζ = 0."""
    tests = u_test_p_values(accuracies, zetas)
    if not tests:
        return
    noisy = [zeta for zeta in zetas if zeta > 0]
    pairs = list(dict.fromkeys((first, second) for first, second, _, _ in tests))
    p_value = {(first, second, zeta): p for first, second, zeta, p in tests}
    rows = [["pair"] + [f"ζ = {zeta:g}" for zeta in noisy]]
    rows += [[f"{first} vs {second}"] + [f"{p_value[first, second, zeta]:.1e}" for zeta in noisy]
             for first, second in pairs]
    print("Mann–Whitney U test of the draws, two-sided p-values:")
    print(format_table(rows))
    write_outputs(folder, "mismatch_u_test", rows, record={"test": "Mann–Whitney U, two-sided", "p_values": [
        {"first": first, "second": second, "zeta": zeta, "p": p} for first, second, zeta, p in tests]}, figure=False)
