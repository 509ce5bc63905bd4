"""python -m minimal.evaluate {mismatch,attack,landscape,membrane,pcm,ibp} --checkpoint DIR [--checkpoint DIR …]

The robustness measurements of the paper's §4, on one or several trained checkpoints side by side. Each
subcommand is a module of this package (its options, its table, its figure); the measurements themselves live
beside their concepts (minimal/robust/mismatch.py, attack.py, landscape.py, ibp.py, minimal/pcm.py):

  mismatch    Table 1, Fig. 2     test accuracy under device mismatch Θ·(1 + ζ·N(0, 1)) (Eq. 1), many draws per ζ
  attack      Fig. 3, S3, S5c     test accuracy after the weight attack of Algorithm 1 (PGA on the cross-entropy
                                  or on the KL boundary loss) and after a random perturbation of the same size
  landscape   Fig. 1, S2, Tab. S1 test cross-entropy L(Θ + α·v) along random directions v = |Θ|·ζ·N(0, 1)
  membrane    Fig. S10            histogram of the LSNN's membrane potentials relative to its threshold
  pcm         Fig. 4              test accuracy on simulated phase-change-memory hardware (minimal/pcm.py) from
                                  25 s to a year after programming, many simulated chips per network
  ibp         Fig. S9             verified accuracy by interval bound propagation (minimal/robust/ibp.py)
  history     Fig. S4, S5a/b      what training recorded per epoch: validation accuracy, clean and under the
                                  weight attack (train --val-attack), and the mean weight magnitude

Each subcommand prints its table and writes <subcommand>.csv (numbers), .md (the printed table), .json (every
number, every draw) and .png into --out (default runs/eval-<subcommand>), each file atomically; mismatch, attack
and landscape also keep each finished cell there (<subcommand>_cells.json: a (checkpoint, ζ) of Table 1, one
attacked accuracy, one landscape curve), so a stopped run continues and a new ζ costs only its own column.
Lists (--zetas, --times, --attacks) are space- or comma-separated. A checkpoint is evaluated on the split of its own
data seed, so "test" is the split that model never saw. A missing or unreadable checkpoint or data set gives one
line on stderr and exit code 1; a bad argument, exit code 2.

Examples:
  python -m minimal.evaluate mismatch --checkpoint runs/ecg-standard-seed0 --checkpoint runs/ecg-beta-seed0
  python -m minimal.evaluate mismatch --checkpoint runs/fmnist-standard-seed0 --zetas 0.5 0.7 --jobs 2
  python -m minimal.evaluate mismatch --pool --checkpoint runs/fmnist-beta-seed0 --checkpoint runs/fmnist-beta-seed1
  python -m minimal.evaluate attack --checkpoint runs/fmnist-standard-seed0 --max-samples 1000
  python -m minimal.evaluate landscape --checkpoint runs/fmnist-standard-seed0 --label Standard
  python -m minimal.evaluate membrane --checkpoint runs/ecg-standard-seed0 --checkpoint runs/ecg-beta-seed0
  python -m minimal.evaluate pcm --checkpoint runs/fmnist-standard-seed0 --times 25,3600,86400 --repeats 25
  python -m minimal.evaluate ibp --checkpoint runs/ecg-standard-seed0 --zetas 0 1e-5 1e-4
"""

import argparse

from ..cli import OneLineErrorParser, check_writable_folder, run_reporting_errors
from ..data.common import DataNotFoundError
from ..tasks import CheckpointError
from . import attack, history, ibp, landscape, membrane, mismatch, pcm
from .common import EvaluationError

SUBCOMMANDS = {module.NAME: module for module in (mismatch, attack, landscape, membrane, pcm, ibp, history)}


def build_parser():
    paragraphs = __doc__.split("\n\n")
    parser = OneLineErrorParser(prog="python -m minimal.evaluate", description="\n\n".join(paragraphs[1:4]),
                                epilog=paragraphs[4], formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(SUBCOMMANDS) + "}")
    for name, module in SUBCOMMANDS.items():
        module.add_arguments(commands.add_parser(name, help=module.HELP))
    return parser


def check_arguments(parser, args):
    """The checks argparse cannot express; a failure is a usage error (one line, exit code 2)."""
    if args.label and len(args.label) != len(args.checkpoint):
        parser.error(f"give one --label per --checkpoint: {len(args.label)} labels for "
                     f"{len(args.checkpoint)} checkpoints")
    SUBCOMMANDS[args.command].check_arguments(parser, args)
    args.out = args.out or f"runs/eval-{args.command}"


def interrupted_message(args):
    module = SUBCOMMANDS[args.command]
    if hasattr(module, "interrupted_message"):
        return module.interrupted_message(args)
    return "no table was written; run the command again"


def run(args):
    check_writable_folder(args.out)
    SUBCOMMANDS[args.command].run(args)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    return run_reporting_errors(lambda: run(args), lambda: interrupted_message(args),
                                expected=(EvaluationError, CheckpointError, DataNotFoundError))
