"""python -m minimal.sweep --task fmnist --methods standard,beta --seeds 0,1 [--root DIR] [--jobs N] …

Trains one model per (method, seed) and then evaluates them all (by default under mismatch, Table 1), writing
one results table per evaluation. Every job is a plain `python -m minimal.train …` / `python -m
minimal.evaluate …` command, so the same list can go to any cluster scheduler (`--print-commands`). The sweep is
resumable: a training job whose meta.json already has a test accuracy is skipped, a stopped one continues from
its last finished epoch (`--resume`), and an evaluation is skipped when its table is newer than every checkpoint
and was made with the same arguments.
With --report FILE the tables, figures, commands and wall times go into one section of a Markdown file
(e.g. docs/results.md), regenerated on every run.

Example, the PCM experiment (Fig. 4, 5): fine-tune a trained standard CNN with noise injection, with and without
the paper's method, and evaluate all three on simulated PCM and under Gaussian weight noise:
  python -m minimal.sweep --task fmnist --methods forward_noise,forward_noise_beta --root runs/pcm-fmnist \
      --train-args "--init-from runs/sweep-fmnist/standard-seed0 --epochs 1 --train-noise layer_max …" \
      --baseline runs/sweep-fmnist/standard-seed0 --evaluate "drift=pcm --repeats 25" \
      --evaluate "joshi=mismatch --noise layer_max --zetas 0.026 0.056 0.11" --report docs/results.md
"""
import argparse
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from . import train
from .cli import (CommandError, OneLineErrorParser, UsageError, add_list_option, nonnegative_int, positive_int,
                  run_reporting_errors)
from .io import atomic_save_json, read_json
from .report import write_report_section
from .robust.methods import METHODS
from .tasks import TASKS


def build_parser():
    parser = OneLineErrorParser(prog="python -m minimal.sweep", description=__doc__.split("\n\n")[1])
    parser.add_argument("--task", required=True, choices=sorted(TASKS))
    add_list_option(parser, "--methods", str, choices=sorted(METHODS), required=True, metavar="METHOD",
                    help="training methods, comma- or space-separated")
    add_list_option(parser, "--seeds", nonnegative_int, default=[0], metavar="SEED",
                    help="seeds, comma- or space-separated (default: 0)")
    parser.add_argument("--root", help="folder for all runs (default: runs/sweep-<task>)")
    parser.add_argument("--jobs", type=positive_int, default=1, help="training processes at once (default 1)")
    parser.add_argument("--train-args", default="", help="extra arguments for every training job, e.g. "
                                                         "\"--epochs 3 --lr 1e-3\"")
    parser.add_argument("--evaluate", action="append", type=evaluation_spec, metavar="NAME=SUBCOMMAND ARGS",
                        help="an evaluation of all the models, written to <root>/NAME; repeat for several "
                             "(default: \"mismatch=mismatch --draws 100\", Table 1)")
    parser.add_argument("--baseline", action="append", default=[], metavar="DIR",
                        help="a trained checkpoint evaluated beside the sweep's models, e.g. the float baseline")
    parser.add_argument("--report", metavar="FILE",
                        help="write the tables, figures, commands and wall times into this Markdown file, in a "
                             "section of its own (the rest of the file is kept)")
    parser.add_argument("--print-commands", action="store_true", help="print the commands and exit")
    return parser


DEFAULT_EVALUATION = ("mismatch", ["mismatch", "--draws", "100"])


def evaluation_spec(text):
    """'drift=pcm --repeats 25' -> ('drift', ['pcm', '--repeats', '25'])."""
    name, separator, command = text.partition("=")
    words = shlex.split(command)
    if not separator or not name.isidentifier() or not words:
        raise argparse.ArgumentTypeError(f"must look like NAME=SUBCOMMAND [ARGS], e.g. \"drift=pcm --repeats 25\", "
                                         f"got {text!r}")
    return name, words


def run_folder(root, method, seed):
    return os.path.join(root, f"{method}-seed{seed}")


def training_command(args, root, method, seed):
    return [sys.executable, "-m", "minimal.train", "--task", args.task, "--method", method, "--seed", str(seed),
            "--out", run_folder(root, method, seed), "--resume", *shlex.split(args.train_args)]


def evaluation_command(evaluation, root, folders):
    name, (subcommand, *options) = evaluation
    checkpoints = [part for folder in folders for part in ("--checkpoint", folder)]
    return [sys.executable, "-m", "minimal.evaluate", subcommand, *checkpoints, "--out", os.path.join(root, name),
            *options]


def job_settings(args, root, method, seed):
    """The settings `python -m minimal.train` will resolve for this job's command."""
    return train.resolve_settings(train.build_parser().parse_args(training_command(args, root, method, seed)[3:]))


def recorded_settings(folder):
    """The settings a job's folder was trained with (its resume state, else its meta.json); None if untrained."""
    state = read_json(os.path.join(folder, train.RESUME_FOLDER, "state.json"), {})
    meta = read_json(os.path.join(folder, "meta.json"), {})
    return state.get("meta", meta).get("settings")


def is_trained(folder, settings):
    """A finished training job has a meta.json with a test accuracy, and nothing left to train under `settings`
    (a larger --epochs makes it unfinished again: `train --resume` continues it)."""
    meta = read_json(os.path.join(folder, "meta.json"), {})
    return "test_acc" in meta and not train.would_train_more(meta, settings)


def settings_conflicts(args, root, jobs):
    """One line per job folder that was trained with other settings than this sweep asks for (e.g. another
    --train-args): its model must not pass as this sweep's result, and `--resume` could not continue it."""
    conflicts = []
    for method, seed in jobs:
        folder = run_folder(root, method, seed)
        recorded = recorded_settings(folder)
        if recorded is None:
            continue
        wanted = job_settings(args, root, method, seed)
        for name in train.settings_differences(recorded, wanted):
            conflicts.append(f"{folder} was trained with {name} = {recorded.get(name)!r}, this sweep asks for "
                             f"{wanted[name]!r}")
    return conflicts


def run_logged(command, log_path):
    """Run one job with its output in log_path; return its exit code."""
    with open(log_path, "a") as log:
        log.write(f"$ {shlex.join(command)}\n")
        log.flush()
        return subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode


def train_all(args, root, jobs):
    """Run the unfinished training jobs, `args.jobs` at a time; returns the folders that failed."""
    pending = [(method, seed) for method, seed in jobs
               if not is_trained(run_folder(root, method, seed), job_settings(args, root, method, seed))]
    print(f"{len(jobs) - len(pending)} of {len(jobs)} training jobs already done; running {len(pending)}")

    def run(job):
        method, seed = job
        folder = run_folder(root, method, seed)
        os.makedirs(folder, exist_ok=True)
        start = time.time()
        code = run_logged(training_command(args, root, method, seed), os.path.join(folder, "train.log"))
        print(f"{'done' if code == 0 else f'FAILED (exit {code})'}: {method} seed {seed} "
              f"in {time.time() - start:.0f} s (log: {folder}/train.log)", flush=True)
        return None if code == 0 else folder

    with ThreadPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
        return [folder for folder in pool.map(run, pending) if folder]


def evaluation_is_current(root, evaluation, folders):
    """True when the evaluation's tables (JSON, and the CSV the report shows) exist, the JSON is newer than every
    checkpoint it covers, and it was made by the same `minimal.evaluate` arguments (as recorded in
    wall_seconds.json; tables made before that was recorded are judged by their age alone)."""
    name, (subcommand, *_) = evaluation
    table = os.path.join(root, name, subcommand + ".json")
    if not (os.path.isfile(table) and os.path.isfile(os.path.join(root, name, subcommand + ".csv"))):
        return False
    recorded = read_json(os.path.join(root, name, "wall_seconds.json"), {}).get("arguments")
    if recorded is not None and recorded != evaluation_arguments(evaluation, root, folders):
        return False
    return all(os.path.getmtime(table) > os.path.getmtime(os.path.join(f, "meta.json")) for f in folders)


def evaluation_arguments(evaluation, root, folders):
    """The evaluation command after `python -m minimal.evaluate`: what its results depend on."""
    return evaluation_command(evaluation, root, folders)[3:]


def evaluate_all(args, root, folders):
    """Run the evaluations that are not up to date; returns an error message or None. Each one's wall time and
    arguments are kept in <root>/<name>/wall_seconds.json, for the report and for evaluation_is_current."""
    for evaluation in args.evaluate:
        name = evaluation[0]
        if evaluation_is_current(root, evaluation, folders):
            print(f"evaluation {name} in {root}/{name} is up to date")
            continue
        os.makedirs(os.path.join(root, name), exist_ok=True)
        start = time.time()
        code = run_logged(evaluation_command(evaluation, root, folders), os.path.join(root, name + ".log"))
        if code != 0:
            return f"the evaluation {name} failed (exit {code}); see {root}/{name}.log"
        atomic_save_json(os.path.join(root, name, "wall_seconds.json"),
                         {"seconds": round(time.time() - start, 1),
                          "arguments": evaluation_arguments(evaluation, root, folders)})
    return None


def main(argv=None):
    args = build_parser().parse_args(argv)
    return run_reporting_errors(lambda: run_sweep(args, argv), INTERRUPTED_MESSAGE)


INTERRUPTED_MESSAGE = ("finished training jobs, the last finished epoch of each stopped one and the finished "
                       "mismatch cells are kept; the same command continues from them")


def run_sweep(args, argv):
    args.evaluate = args.evaluate or [DEFAULT_EVALUATION]
    root = args.root or os.path.join("runs", f"sweep-{args.task}")
    jobs = [(method, seed) for method in args.methods for seed in args.seeds]
    folders = [run_folder(root, method, seed) for method, seed in jobs]
    if args.print_commands:
        for method, seed in jobs:
            print(shlex.join(training_command(args, root, method, seed)))
        for evaluation in args.evaluate:
            print(shlex.join(evaluation_command(evaluation, root, args.baseline + folders)))
        return 0
    conflicts = settings_conflicts(args, root, jobs)
    if conflicts:
        raise UsageError(conflicts[0] + (f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else "")
                         + "; use another --root, or the settings it was trained with")
    failed = train_all(args, root, jobs)
    if failed:
        raise CommandError(f"{len(failed)} training job(s) failed: {', '.join(failed)}")
    error = evaluate_all(args, root, args.baseline + folders)
    if error:
        raise CommandError(error)
    if args.report:
        evaluated = args.baseline + folders
        write_report_section(args.report, root, argv if argv is not None else sys.argv[1:], args.evaluate,
                             [evaluation_command(e, root, evaluated) for e in args.evaluate], evaluated)
        print(f"wrote the {root} section of {args.report}")
    print(f"results: {', '.join(os.path.join(root, name) for name, _ in args.evaluate)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
