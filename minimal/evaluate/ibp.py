"""python -m minimal.evaluate ibp: Fig. S9, the verified accuracy by interval bound propagation. A sample is verified
when its correct class wins for every network in the box [Θ − ζ|Θ|, Θ + ζ|Θ|] (minimal/robust/ibp.py)."""
import os

from .. import plots
from ..cli import add_list_option, nonnegative_float
from ..io import format_table
from ..robust.ibp import verified_accuracy
from .common import add_common_options, load_checkpoints, write_outputs

NAME = "ibp"
HELP = "Fig. S9: verified accuracy by interval bound propagation"
IBP_ZETAS = (0.0, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3)  # the attack sizes of Fig. S9


def add_arguments(ibp):
    add_common_options(ibp, 100, "samples per interval pass (speed and memory only)", with_seed=False)
    add_list_option(ibp, "--zetas", nonnegative_float, default=IBP_ZETAS, metavar="ζ",
                    help="attack sizes ζ, space- or comma-separated (default: %(default)s)")


def check_arguments(parser, args):
    args.zetas = sorted(set(args.zetas))


def table_rows(table):
    """The table as rows: a header ('checkpoint', 'ζ = …'), then one row per checkpoint with its verified accuracy
    in % at each ζ."""
    zetas = sorted({zeta for row in table.values() for zeta in row})
    header = ["checkpoint"] + [f"ζ = {zeta:g}" for zeta in zetas]
    return [header] + [[label] + [f"{100 * row[zeta]:.1f}" for zeta in zetas] for label, row in table.items()]


def run(args):
    checkpoints = load_checkpoints(args)
    table = {checkpoint.label: {zeta: verified_accuracy(checkpoint.model, checkpoint.split, zeta, args.batch_size,
                                                        desc=f"{checkpoint.label}, ζ={zeta:g}")
                                for zeta in args.zetas}
             for checkpoint in checkpoints}
    rows = table_rows(table)
    print(format_table(rows))
    counts = {checkpoint.label: len(checkpoint.split) for checkpoint in checkpoints}
    settings = {"checkpoints": [checkpoint.folder for checkpoint in checkpoints], "zetas": args.zetas,
                "split": args.split, "max_samples": args.max_samples, "samples": counts}
    write_outputs(args.out, "ibp", rows, record={
        "figure": "Fig. S9", "settings": settings,
        "verified_accuracy": {label: [{"zeta": zeta, "verified_accuracy": accuracy} for zeta, accuracy in row.items()]
                              for label, row in table.items()}})
    samples = ", ".join(sorted({str(count) for count in counts.values()}))
    plots.plot_verified_accuracy(table, os.path.join(args.out, "ibp.png"), f"{samples} {args.split} samples")
