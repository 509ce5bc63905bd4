"""python -m minimal.sweep --task fmnist --methods standard,beta --seeds 0,1 [--root DIR] [--jobs N | --scheduler A] …

Trains one model per (method, seed) and then evaluates them all (by default under mismatch, Table 1), writing
one results table per evaluation (or, with --train-only, trains and stops). Every job is a plain `python -m
minimal.train …` / `python -m minimal.evaluate …` command, so the same list can go to any cluster scheduler
(`--print-commands`). The sweep is resumable: a training job whose meta.json already has a test accuracy is
skipped, a stopped one continues from its last saved state (`--resume`), and an evaluation is skipped when its
table is newer than every checkpoint and was made with the same arguments.
With --scheduler ADDRESS the same commands go to the workers of a Dask scheduler instead (training jobs as many at
a time as the cluster has worker threads, then the evaluations, as many at a time too); `--scheduler local:N`
starts N workers on this machine. The workers need this folder and this Python environment at the same paths (a
shared filesystem), with `pip install -e ".[cluster]"` done; see README.md, "Running a sweep on a cluster".
With --report FILE the tables, figures, commands and wall times go into one section of a Markdown file
(e.g. docs/results.md), regenerated on every run. With --vary NAME=V1,V2 every method is trained once per value
of that training option (repeat --vary for every combination), e.g. the supplementary sweeps over β_rob, the
attack's box or N_steps; their folders and labels name the values.

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
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from itertools import product

from . import run_folder, train
from .cli import (SINGLE_THREADED, CommandError, OneLineErrorParser, UsageError, add_list_option, nonnegative_int,
                  positive_int, run_reporting_errors)
from .io import atomic_save_json, read_json, weights_digest
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
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--jobs", type=positive_int, default=1,
                       help="processes at once, training jobs and then the evaluations (default 1)")
    where.add_argument("--scheduler", type=scheduler_address, metavar="ADDRESS",
                       help="run the jobs on the workers of the Dask scheduler at ADDRESS (e.g. tcp://HOST:8786), "
                            "or on N worker processes started here (local:N); needs pip install -e \".[cluster]\"")
    parser.add_argument("--train-args", default="", help="extra arguments for every training job, e.g. "
                                                         "\"--epochs 3 --lr 1e-3\"")
    parser.add_argument("--vary", action="append", default=[], type=varied_option, metavar="NAME=V1,V2,…",
                        help="train every method once per value of this training option (its name as in "
                             "python -m minimal.train --help, e.g. beta_rob=0.1,0.5 or attack_box=relative,constant);"
                             " repeat it to train every combination")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--evaluate", action="append", type=evaluation_spec, metavar="NAME=SUBCOMMAND ARGS",
                      help="an evaluation of all the models, written to <root>/NAME; repeat for several "
                           "(default: \"mismatch=mismatch --draws 100\", Table 1)")
    what.add_argument("--train-only", action="store_true",
                      help="train and stop, evaluating nothing: e.g. two sweeps that share a list of runs between "
                           "two queues, and a later one with --evaluate (which finds the models trained)")
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


LOCAL_CLUSTER = "local:"
BUSY = "busy"   # what run_logged returns instead of an exit code for a run that another process is training


def varied_option(text):
    """'beta_rob=0.1,0.5' -> ('beta_rob', ['0.1', '0.5']), for an option that python -m minimal.train has."""
    name, separator, values = text.partition("=")
    name = name.strip().removeprefix("--").replace("-", "_")
    values = [value.strip() for value in values.split(",") if value.strip()]
    if not separator or not values:
        raise argparse.ArgumentTypeError(f"must look like NAME=V1,V2, e.g. beta_rob=0.1,0.5, got {text!r}")
    if name not in TRAINING_OPTIONS:
        raise argparse.ArgumentTypeError(f"python -m minimal.train has no option --{name.replace('_', '-')}")
    return name, values


# what --vary may vary: every option of python -m minimal.train that is not the job's identity or its folder
TRAINING_OPTIONS = {action.dest for action in train.build_parser()._actions if action.option_strings} - {
    "help", "task", "method", "seed", "out", "resume", "overwrite"}


@dataclass(frozen=True)
class Job:
    """One training job of the sweep: a method, a seed and (with --vary) the values of the varied options."""
    method: str
    seed: int
    variant: tuple = ()     # ((option name, value as typed), …)

    def folder(self, root):
        """<root>/<method>-seed<k>, or <root>/<method>-<name><value>…-seed<k> with --vary."""
        return os.path.join(root, "-".join([self.method, *(f"{name}{value}" for name, value in self.variant),
                                            f"seed{self.seed}"]))

    def train_args(self):
        return [word for name, value in self.variant for word in ("--" + name.replace("_", "-"), value)]

    def label(self, with_seed=True):
        """Its name in tables: 'beta beta_rob 0.5 seed 0' ('beta beta_rob 0.5' for a pooled table)."""
        name = " ".join([self.method, *(f"{option} {value}" for option, value in self.variant)])
        return f"{name} seed {self.seed}" if with_seed else name


def sweep_jobs(args):
    """Every (method, values of the varied options, seed), in that order."""
    names = [name for name, _ in args.vary]
    variants = [tuple(zip(names, values)) for values in product(*(values for _, values in args.vary))]
    return [Job(method, seed, variant) for method in args.methods for variant in variants for seed in args.seeds]


def scheduler_address(text):
    """--scheduler: 'local:N' (N ≥ 1) or the address of a running Dask scheduler, passed on as it is."""
    workers = text.removeprefix(LOCAL_CLUSTER)
    if workers != text and not (workers.isdigit() and int(workers) > 0):
        raise argparse.ArgumentTypeError(f"local:N needs a number of workers N ≥ 1, got {text!r}")
    return text


def training_command(args, root, job):
    return [sys.executable, "-m", "minimal.train", "--task", args.task, "--method", job.method, "--seed",
            str(job.seed), "--out", job.folder(root), "--resume", *shlex.split(args.train_args), *job.train_args()]


def evaluation_command(evaluation, root, baselines, jobs):
    """The evaluate command of one --evaluate spec on the baselines and the jobs' checkpoints. With --vary the
    checkpoints get labels that name their values (without the seed where the table pools the seeds)."""
    name, (subcommand, *options) = evaluation
    folders = baselines + [job.folder(root) for job in jobs]
    checkpoints = [part for folder in folders for part in ("--checkpoint", folder)]
    labels = []
    if any(job.variant for job in jobs):
        with_seed = "--pool" not in options
        names = [os.path.basename(os.path.normpath(folder)) for folder in baselines]
        names += [job.label(with_seed) for job in jobs]
        labels = [part for label in names for part in ("--label", label)]
    return [sys.executable, "-m", "minimal.evaluate", subcommand, *checkpoints, *labels, "--out",
            os.path.join(root, name), *options]


def job_settings(args, root, job):
    """The settings `python -m minimal.train` will resolve for this job's command."""
    return train.resolve_settings(train.build_parser().parse_args(training_command(args, root, job)[3:]))


def recorded_settings(folder):
    """The settings a job's folder was trained with (its resume state, else its meta.json); None if untrained."""
    state = read_json(os.path.join(folder, run_folder.RESUME_FOLDER, "state.json"), {})
    meta = read_json(os.path.join(folder, "meta.json"), {})
    return state.get("meta", meta).get("settings")


def is_trained(folder, settings):
    """A finished training job has a meta.json with a test accuracy, and nothing left to train under `settings`
    (a larger --epochs makes it unfinished again: `train --resume` continues it)."""
    meta = read_json(os.path.join(folder, "meta.json"), {})
    return "test_acc" in meta and not run_folder.would_train_more(meta, settings)


def settings_conflicts(args, root, jobs):
    """One line per job folder that was trained with other settings than this sweep asks for (e.g. another
    --train-args): its model must not pass as this sweep's result, and `--resume` could not continue it."""
    conflicts = []
    for job in jobs:
        folder = job.folder(root)
        recorded = recorded_settings(folder)
        if recorded is None:
            continue
        wanted = job_settings(args, root, job)
        for name in run_folder.settings_differences(recorded, wanted):
            conflicts.append(f"{folder} was trained with {name} = {recorded.get(name)!r}, this sweep asks for "
                             f"{wanted[name]!r}")
    return conflicts


def run_logged(command, log_path, folder=None, environment=None, training_folder=None):
    """Run one job with its output appended to log_path; return its exit code and wall time in seconds.
    folder: the working folder (default: this process's); environment: variables set for the job on top of
    this process's. A Dask worker runs this same function, imported from minimal.sweep.
    training_folder: for a training job, its run folder. If another process trains there right now (a second
    sweep, a terminal), the job is not run and its log, which that process is writing, is left alone: returns
    (BUSY, 0.0). Checked when the job's turn comes, which may be hours after the sweep started."""
    if training_folder is not None and run_folder.is_being_trained(os.path.join(folder or ".", training_folder)):
        return BUSY, 0.0
    start = time.time()
    with open(log_path, "a") as log:
        log.write(f"$ {shlex.join(command)}\n")
        log.flush()
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=folder,
                              env={**os.environ, **(environment or {})}).returncode
    return code, time.time() - start


@contextmanager
def job_runner(scheduler, jobs):
    """A function run_job(command, log_path, training_folder=None) that starts one job and returns a future of
    run_logged's (exit code, seconds). Without a scheduler the jobs run here, `jobs` processes at a time. With one
    they go to its workers, each job in this folder (which the workers must share) with numba and BLAS on one
    thread: a Dask worker thread stands for one core."""
    if scheduler is None:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            yield lambda command, log_path, training_folder=None: pool.submit(
                run_logged, command, log_path, training_folder=training_folder)
        return
    folder = os.getcwd()
    with dask_executor(scheduler) as executor:
        yield lambda command, log_path, training_folder=None: executor.submit(
            run_logged, command, os.path.abspath(log_path), folder, SINGLE_THREADED, training_folder=training_folder)


@contextmanager
def dask_executor(address):
    """A concurrent.futures executor on the workers of the Dask scheduler at `address`; 'local:N' starts a
    cluster of N single-threaded worker processes on this machine, closed again when the sweep ends."""
    distributed = import_dask_distributed()
    with ExitStack() as stack:
        if address.startswith(LOCAL_CLUSTER):
            address = stack.enter_context(distributed.LocalCluster(
                n_workers=int(address.removeprefix(LOCAL_CLUSTER)), threads_per_worker=1, processes=True))
        try:
            client = stack.enter_context(distributed.Client(address))
        except (OSError, ValueError) as error:  # no scheduler there (after a 30 s timeout), or a malformed address
            raise CommandError(f"cannot connect to the Dask scheduler at {address}: {error}") from None
        print(f"jobs go to the Dask scheduler at {client.scheduler.address} "
              f"({len(client.scheduler_info()['workers'])} workers at the moment)", flush=True)
        yield client.get_executor(pure=False)


def import_dask_distributed():
    """dask.distributed, an optional dependency, imported only when --scheduler asks for it."""
    try:
        import dask.distributed
    except ImportError:
        raise CommandError('--scheduler needs Dask distributed: pip install -e ".[cluster]"') from None
    return dask.distributed


def job_problem(future):
    """What went wrong with a finished job (None if nothing) and its wall time in seconds. A job that could not
    run at all fails with the reason: e.g. a worker without the project installed or without this folder."""
    try:
        code, seconds = future.result()
    except Exception as error:  # raised on a Dask worker, or by the scheduler (a worker died)
        return f"could not run: {type(error).__name__}: {error}", 0.0
    if code == BUSY:
        return "not run: another process is training it right now", seconds
    return (None if code == 0 else f"exit {code}"), seconds


def train_all(args, root, jobs, run_job):
    """Hand the unfinished training jobs to run_job (see job_runner), which decides how many run at a time;
    returns the folders that failed."""
    pending = [job for job in jobs if not is_trained(job.folder(root), job_settings(args, root, job))]
    print(f"{len(jobs) - len(pending)} of {len(jobs)} training jobs already done; running {len(pending)}")
    started = {}
    for job in pending:
        folder = job.folder(root)
        os.makedirs(folder, exist_ok=True)
        started[run_job(training_command(args, root, job), os.path.join(folder, "train.log"), folder)] = (job, folder)
    failed = []
    for future in as_completed(started):
        job, folder = started[future]
        problem, seconds = job_problem(future)
        print(f"{'done' if problem is None else f'FAILED ({problem})'}: {job.label()} in {seconds:.0f} s "
              f"(log: {folder}/train.log)", flush=True)
        if problem is not None:
            failed.append(folder)
    return failed


def evaluation_is_current(root, evaluation, baselines, jobs):
    """True when the evaluation's tables (JSON, and the CSV the report shows) exist and were made by the same
    `minimal.evaluate` arguments from the same weights, as recorded in wall_seconds.json (see evaluation_record):
    a retrained checkpoint makes it out of date, a fresh clone of committed results does not."""
    name, (subcommand, *_) = evaluation
    folder = os.path.join(root, name)
    if not all(os.path.isfile(os.path.join(folder, subcommand + ending)) for ending in (".json", ".csv")):
        return False
    recorded = read_json(os.path.join(folder, "wall_seconds.json"), {})
    current = evaluation_record(evaluation, root, baselines, jobs)
    return all(recorded.get(key) == current[key] for key in ("arguments", "weights"))


def evaluation_record(evaluation, root, baselines, jobs):
    """What an evaluation's results depend on: its command's arguments and the digest of each checkpoint's
    weights, in the order of its --checkpoint arguments (None for a missing one: the evaluation will say so)."""
    folders = baselines + [job.folder(root) for job in jobs]
    arguments = evaluation_command(evaluation, root, baselines, jobs)[3:]     # after `python -m minimal.evaluate`
    return {"arguments": arguments,
            "weights": [weights_digest(folder) if os.path.isfile(os.path.join(folder, "model.npz")) else None
                        for folder in folders]}


def evaluate_all(args, root, jobs, run_job):
    """Hand the evaluations that are not up to date to run_job (see job_runner), all at once: they are
    independent (each writes its own folder), so with --jobs N or a scheduler N of them run side by side. Returns
    the first failure's message or None. Each one's wall time, arguments and weights (as they were when it
    started) are kept in <root>/<name>/wall_seconds.json, for the report and for evaluation_is_current."""
    running = []
    for evaluation in args.evaluate:
        name = evaluation[0]
        if evaluation_is_current(root, evaluation, args.baseline, jobs):
            print(f"evaluation {name} in {root}/{name} is up to date")
            continue
        os.makedirs(os.path.join(root, name), exist_ok=True)
        record = evaluation_record(evaluation, root, args.baseline, jobs)
        log_path = os.path.join(root, name + ".log")
        future = run_job(evaluation_command(evaluation, root, args.baseline, jobs), log_path)
        running.append((name, record, future))
    failures = []
    for name, record, future in running:
        problem, seconds = job_problem(future)
        if problem is not None:
            failures.append(f"the evaluation {name} failed ({problem}); see {root}/{name}.log")
            continue
        atomic_save_json(os.path.join(root, name, "wall_seconds.json"), {"seconds": round(seconds, 1), **record})
    return failures[0] if failures else None


def main(argv=None):
    args = build_parser().parse_args(argv)
    return run_reporting_errors(lambda: run_sweep(args, argv),
                                INTERRUPTED_MESSAGE if args.scheduler is None else SCHEDULER_INTERRUPTED_MESSAGE)


INTERRUPTED_MESSAGE = ("finished training jobs, the last saved state of each stopped one and the finished "
                       "mismatch cells are kept; the same command continues from them")
SCHEDULER_INTERRUPTED_MESSAGE = ("finished training jobs and the finished mismatch cells are kept; jobs running on "
                                 "Dask workers that Ctrl-C did not reach (other machines) go on to their end (see "
                                 "their logs): once they have, the same command continues from them")


def run_sweep(args, argv):
    if args.train_only and args.report:
        raise UsageError("--report writes the evaluations' tables: not allowed with --train-only")
    args.evaluate = [] if args.train_only else args.evaluate or [DEFAULT_EVALUATION]
    root = args.root or os.path.join("runs", f"sweep-{args.task}")
    jobs = sweep_jobs(args)
    if args.print_commands:
        for job in jobs:
            print(shlex.join(training_command(args, root, job)))
        for evaluation in args.evaluate:
            print(shlex.join(evaluation_command(evaluation, root, args.baseline, jobs)))
        return 0
    conflicts = settings_conflicts(args, root, jobs)
    if conflicts:
        raise UsageError(conflicts[0] + (f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else "")
                         + "; use another --root, or the settings it was trained with")
    with job_runner(args.scheduler, args.jobs) as run_job:
        failed = train_all(args, root, jobs, run_job)
        if failed:
            raise CommandError(f"{len(failed)} training job(s) failed: {', '.join(failed)}")
        error = evaluate_all(args, root, jobs, run_job)
    if error:
        raise CommandError(error)
    if args.report:
        evaluated = args.baseline + [job.folder(root) for job in jobs]
        write_report_section(args.report, root, argv if argv is not None else sys.argv[1:], args.evaluate,
                             [evaluation_command(e, root, args.baseline, jobs) for e in args.evaluate], evaluated)
        print(f"wrote the {root} section of {args.report}")
    if args.train_only:
        print(f"trained: {len(jobs)} models in {root}")
    else:
        print(f"results: {', '.join(os.path.join(root, name) for name, _ in args.evaluate)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
