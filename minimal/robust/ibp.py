"""Verified accuracy under weight perturbations, by interval bound propagation (Supplementary Fig. S9).

For an attack size ζ every parameter Θ becomes the interval [Θ − ζ|Θ|, Θ + ζ|Θ|] (Interval.from_weights), and
the model (the very code that trained it, written with minimal/nn/functional.py) computes interval logits
[l̲, l̄] that contain the logits of every network in that box. A sample is *verified* when the correct class c wins
in all of them, i.e. its lowest logit beats every other class's highest:

    l̲_c > l̄_k   for every class k ≠ c.

The paper says it as "the correct logit interval has the largest lower bound and is disjoint from the others",
which is the same condition. The verified accuracy, the fraction of verified samples, is a lower bound on the
accuracy of the worst network in the box; interval bounds are loose (they forget which network produced which
value), so the true worst case is usually better. At ζ = 0 the box is the trained network alone, and the verified
accuracy is its accuracy (a tie between two logits counts as not verified).

    python -m minimal.evaluate ibp --checkpoint DIR [--checkpoint DIR …] [--zetas ζ …]
    python -m minimal.robust.ibp   (the same)

prints the verified accuracy per checkpoint and ζ and writes ibp.csv, ibp.json and ibp.png (Fig. S9) into --out.
"""
import os
import sys

import numpy as np
from tqdm import tqdm

from .. import plots
from ..autodiff import no_grad
from ..data.common import DataNotFoundError, fixed_subset
from ..interval import Interval
from ..io import atomic_save_json, format_table, write_csv
from ..nn.lsnn import LSNN
from ..cli import (OneLineErrorParser, add_list_option, check_writable_folder, nonnegative_float, positive_int,
                   run_reporting_errors)
from ..tasks import TASKS, CheckpointError, check_one_task, load_trained_model

DEFAULT_ZETAS = (0.0, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3)  # the attack sizes of Fig. S9


class IBPError(RuntimeError):
    """A checkpoint that cannot be evaluated; main_ibp prints it as one line and exits with 1."""


# ---------------------------------------------------------------------------------------------------- verification
def interval_parameters(model, zeta):
    """name -> [Θ − ζ|Θ|, Θ + ζ|Θ|] for every parameter (the paper perturbs every weight and bias)."""
    return {name: Interval.from_weights(p.data, zeta) for name, p in model.named_parameters()}


def interval_logits(model, x, params_intervals):
    """Interval logits (N, classes) of `model` on the point inputs x, its parameters given as Intervals. The LSNN
    runs its reference path: the fused kernel computes points only."""
    with no_grad():
        if isinstance(model, LSNN):
            return model(x, params_intervals, path="reference")
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
    params = interval_parameters(model, zeta)
    verified = 0
    for start in tqdm(range(0, len(split), batch_size), desc=desc, leave=False, disable=None):
        logits = interval_logits(model, split.x[start:start + batch_size], params)
        verified += int(verified_mask(logits.lo, logits.hi, split.y[start:start + batch_size]).sum())
    return verified / len(split)


# ---------------------------------------------------------------------------------------------------- sweep
def default_label(meta):
    """'<method> seed <seed>', as the other evaluations of minimal.evaluate name a checkpoint."""
    return f"{meta.get('method', '?')} seed {meta.get('seed', 0)}"


def ibp_sweep(checkpoints, zetas=DEFAULT_ZETAS, labels=None, split="test", max_samples=None, batch_size=100,
              data_dir=None):
    """Verified accuracy of every checkpoint at every ζ, {label: {ζ: fraction}}, and the number of samples each
    checkpoint was verified on, {label: count}.

    Each checkpoint is evaluated on the split of its own data seed (the test samples it never saw); each data set
    is loaded once per task and seed. labels: one per checkpoint (default: '<method> seed <seed>').
    """
    loaded = [load_trained_model(folder) for folder in checkpoints]
    check_one_task([meta for _, meta in loaded], checkpoints)
    labels = labels or [default_label(meta) for _, meta in loaded]
    if len(set(labels)) < len(labels):
        raise IBPError(f"several checkpoints have the label {max(labels, key=labels.count)!r}; give each a --label")
    datasets, table, counts = {}, {}, {}
    for label, (model, meta) in zip(labels, loaded):
        key = (meta["task"], meta.get("seed", 0))
        if key not in datasets:
            datasets[key] = TASKS[key[0]].load_data(data_dir, key[1])
        samples = fixed_subset(getattr(datasets[key], split), max_samples)
        table[label] = {zeta: verified_accuracy(model, samples, zeta, batch_size, desc=f"{label}, ζ={zeta:g}")
                        for zeta in zetas}
        counts[label] = len(samples)
    return table, counts


# ---------------------------------------------------------------------------------------------------- output
def table_rows(table):
    """The table as CSV rows, laid out as the other evaluations' tables: a header ('checkpoint', 'ζ = …'), then one
    row per checkpoint with its verified accuracy in % at each ζ."""
    zetas = sorted({zeta for row in table.values() for zeta in row})
    header = ["checkpoint"] + [f"ζ = {zeta:g}" for zeta in zetas]
    return [header] + [[label] + [f"{100 * row[zeta]:.1f}" for zeta in zetas] for label, row in table.items()]


def write_outputs(folder, table, settings, subtitle=""):
    """<folder>/ibp.csv (checkpoint × ζ, verified accuracy in %), ibp.json (fractions and the settings), ibp.png
    (Fig. S9)."""
    write_csv(folder, "ibp", table_rows(table))
    atomic_save_json(os.path.join(folder, "ibp.json"),
                     {"figure": "Fig. S9", "settings": settings,
                      "verified_accuracy": {label: [{"zeta": zeta, "verified_accuracy": acc}
                                                    for zeta, acc in row.items()]
                                            for label, row in table.items()}})
    plots.plot_verified_accuracy(table, os.path.join(folder, "ibp.png"), subtitle)
    print(f"wrote {os.path.join(folder, 'ibp')}.csv, .json and .png")


# ---------------------------------------------------------------------------------------------------- command line
def build_parser():
    parser = OneLineErrorParser(prog="python -m minimal.evaluate ibp",
                                description="Fig. S9: verified accuracy by interval bound propagation. A sample is "
                                            "verified when its correct class wins for every network in the box "
                                            "[Θ − ζ|Θ|, Θ + ζ|Θ|].")
    parser.add_argument("--checkpoint", action="append", required=True, metavar="DIR",
                        help="checkpoint folder (model.npz + meta.json); repeat it to compare several")
    parser.add_argument("--label", action="append",
                        help="name in the table and legend, one per --checkpoint in the same order "
                             "(default: '<method> seed <seed>' from meta.json)")
    add_list_option(parser, "--zetas", nonnegative_float, default=DEFAULT_ZETAS, metavar="ζ",
                    help="attack sizes ζ, space- or comma-separated (default: %(default)s)")
    parser.add_argument("--split", choices=("test", "val"), default="test", help="data split (default: test)")
    parser.add_argument("--max-samples", type=positive_int, metavar="N",
                        help="use N samples of the split, drawn at random (the same N every run) (default: all)")
    parser.add_argument("--batch-size", type=positive_int, default=100,
                        help="samples per interval pass (speed and memory only) (default: 100)")
    parser.add_argument("--data-dir", help="folder with the task's data (default: search the usual places)")
    parser.add_argument("--out", default=os.path.join("runs", "eval-ibp"),
                        help="output folder for ibp.csv, ibp.json, ibp.png (default: %(default)s)")
    return parser


def main_ibp(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.label and len(args.label) != len(args.checkpoint):
        parser.error(f"give one --label per --checkpoint: {len(args.label)} labels for "
                     f"{len(args.checkpoint)} checkpoints")
    return run_reporting_errors(lambda: run_ibp(args), "no table was written; run the command again",
                                expected=(IBPError, CheckpointError, DataNotFoundError))


def run_ibp(args):
    check_writable_folder(args.out)
    zetas = sorted(set(args.zetas))
    table, counts = ibp_sweep(args.checkpoint, zetas, args.label, args.split, args.max_samples, args.batch_size,
                              args.data_dir)
    print(format_table(table_rows(table)))
    settings = {"checkpoints": args.checkpoint, "zetas": zetas, "split": args.split,
                "max_samples": args.max_samples, "samples": counts}
    samples = ", ".join(sorted({str(count) for count in counts.values()}))
    write_outputs(args.out, table, settings, subtitle=f"{samples} {args.split} samples")


if __name__ == "__main__":
    sys.exit(main_ibp())
