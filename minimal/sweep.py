"""python -m minimal.sweep --task fmnist --methods standard,beta --seeds 0,1 [--root DIR] [--jobs N] …

Trains one model per (method, seed) and then evaluates them all under mismatch, writing one results table.
Every job is a plain `python -m minimal.train …` / `python -m minimal.evaluate …` command, so the same list
can go to any cluster scheduler (`--print-commands`). The sweep is resumable: a training job whose meta.json
already has a test accuracy is skipped, a stopped one continues from its last finished epoch (`--resume`), and
the evaluation is skipped when its table is newer than every checkpoint.
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from .robust.methods import METHODS
from .tasks import TASKS
from .train import OneLineErrorParser


def build_parser():
    parser = OneLineErrorParser(prog="python -m minimal.sweep", description=__doc__.split("\n\n")[1])
    parser.add_argument("--task", required=True, choices=sorted(TASKS))
    parser.add_argument("--methods", required=True, type=comma_list(METHODS), help="comma-separated methods")
    parser.add_argument("--seeds", default=[0], type=comma_list(None, int), help="comma-separated seeds")
    parser.add_argument("--root", help="folder for all runs (default: runs/sweep-<task>)")
    parser.add_argument("--jobs", type=int, default=1, help="training processes at once (default 1)")
    parser.add_argument("--train-args", default="", help="extra arguments for every training job, e.g. "
                                                         "\"--epochs 3 --lr 1e-3\"")
    parser.add_argument("--eval-args", default="--draws 100", help="extra arguments for the mismatch evaluation")
    parser.add_argument("--print-commands", action="store_true", help="print the commands and exit")
    return parser


def comma_list(allowed, kind=str):
    def parse(text):
        values = [kind(v) for v in text.split(",") if v]
        unknown = [v for v in values if allowed is not None and v not in allowed]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {', '.join(sorted(allowed))}")
        return values
    return parse


def run_folder(root, method, seed):
    return os.path.join(root, f"{method}-seed{seed}")


def training_command(args, root, method, seed):
    return [sys.executable, "-m", "minimal.train", "--task", args.task, "--method", method, "--seed", str(seed),
            "--out", run_folder(root, method, seed), "--resume", *shlex.split(args.train_args)]


def evaluation_command(args, root, folders):
    checkpoints = [part for folder in folders for part in ("--checkpoint", folder)]
    return [sys.executable, "-m", "minimal.evaluate", "mismatch", *checkpoints, "--out",
            os.path.join(root, "mismatch"), *shlex.split(args.eval_args)]


def is_trained(folder):
    """A finished training job has a meta.json with a test accuracy."""
    try:
        with open(os.path.join(folder, "meta.json")) as f:
            return "test_acc" in json.load(f)
    except (OSError, ValueError):
        return False


def run_logged(command, log_path):
    """Run one job with its output in log_path; return its exit code."""
    with open(log_path, "a") as log:
        log.write(f"$ {shlex.join(command)}\n")
        log.flush()
        return subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode


def train_all(args, root, jobs):
    """Run the unfinished training jobs, `args.jobs` at a time; returns the folders that failed."""
    pending = [(method, seed) for method, seed in jobs if not is_trained(run_folder(root, method, seed))]
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


def evaluation_is_current(root, folders):
    table = os.path.join(root, "mismatch", "mismatch.json")
    if not os.path.isfile(table):
        return False
    return all(os.path.getmtime(table) > os.path.getmtime(os.path.join(f, "meta.json")) for f in folders)


def main(argv=None):
    args = build_parser().parse_args(argv)
    root = args.root or os.path.join("runs", f"sweep-{args.task}")
    jobs = [(method, seed) for method in args.methods for seed in args.seeds]
    folders = [run_folder(root, method, seed) for method, seed in jobs]
    if args.print_commands:
        for method, seed in jobs:
            print(shlex.join(training_command(args, root, method, seed)))
        print(shlex.join(evaluation_command(args, root, folders)))
        return 0
    failed = train_all(args, root, jobs)
    if failed:
        print(f"error: {len(failed)} training job(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    if evaluation_is_current(root, folders):
        print(f"mismatch evaluation in {root}/mismatch is up to date")
    else:
        os.makedirs(root, exist_ok=True)
        code = run_logged(evaluation_command(args, root, folders), os.path.join(root, "evaluate.log"))
        if code != 0:
            print(f"error: the mismatch evaluation failed (exit {code}); see {root}/evaluate.log", file=sys.stderr)
            return 1
    print(f"results: {root}/mismatch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
