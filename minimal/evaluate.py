"""python -m minimal.evaluate {mismatch,attack,landscape,membrane,pcm,ibp} --checkpoint DIR [--checkpoint DIR …]

The robustness measurements of the paper's §4, on one or several trained checkpoints side by side:

  mismatch    Table 1, Fig. 2     test accuracy under device mismatch Θ·(1 + ζ·N(0, 1)) (Eq. 1), many draws per ζ
  attack      Fig. 3, S3, S5c     test accuracy after the weight attack of Algorithm 1 (PGA on the cross-entropy
                                  or on the KL boundary loss) and after a random perturbation of the same size
  landscape   Fig. 1, S2, Tab. S1 test cross-entropy L(Θ + α·v) along random directions v = |Θ|·ζ·N(0, 1)
  membrane    Fig. S10            histogram of the LSNN's membrane potentials relative to its threshold
  pcm         Fig. 4              test accuracy on simulated phase-change-memory hardware (minimal/pcm.py) from
                                  25 s to a year after programming, many simulated chips per network
  ibp         Fig. S9             interval bound propagation (handed over to minimal.robust.ibp)

Each subcommand prints its table and writes <subcommand>.csv, .json (every number, every draw) and .png into
--out (default runs/eval-<subcommand>), each file atomically; mismatch also keeps each finished (checkpoint, ζ)
cell in mismatch_cells.json there, so a stopped run continues and a new ζ costs only its own column. A checkpoint
is evaluated on the split of its own data seed, so "test" is the split that model never saw. A missing or
unreadable checkpoint or data set gives one line on stderr and exit code 1; a bad argument, exit code 2.

Examples:
  python -m minimal.evaluate mismatch --checkpoint runs/ecg-standard-seed0 --checkpoint runs/ecg-beta-seed0
  python -m minimal.evaluate mismatch --checkpoint runs/fmnist-standard-seed0 --zetas 0.5 0.7 --jobs 2
  python -m minimal.evaluate mismatch --pool --checkpoint runs/fmnist-beta-seed0 --checkpoint runs/fmnist-beta-seed1
  python -m minimal.evaluate attack --checkpoint runs/fmnist-standard-seed0 --max-samples 1000
  python -m minimal.evaluate landscape --checkpoint runs/fmnist-standard-seed0 --label Standard
  python -m minimal.evaluate membrane --checkpoint runs/ecg-standard-seed0 --checkpoint runs/ecg-beta-seed0
  python -m minimal.evaluate pcm --checkpoint runs/fmnist-standard-seed0 --times 25,3600,86400 --repeats 25
"""
import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import combinations
from multiprocessing import get_context

import numpy as np
from scipy.stats import mannwhitneyu

from . import plots
from .data.common import DataNotFoundError, Split, fixed_subset, iterate_minibatches
from .io import atomic_save_json, atomic_write_bytes, format_table, markdown_table, write_csv
from .metrics import accuracy, mean_cross_entropy, predict_logits
from .nn.lsnn import LSNN
from .pcm import PCMModel
from .robust.attack import cross_entropy_objective, kl_objective, pga_attack, random_box_attack
from .robust.ibp import main_ibp
from .robust.mismatch import NOISE_MODELS, mismatch_draws, parameter_arrays
from .tasks import TASKS, CheckpointError, check_one_task, load_trained_model
from .cli import (OneLineErrorParser, add_list_option, check_writable_folder, nonnegative_float,
                  nonnegative_int, positive_float, positive_int, progress_bar, run_reporting_errors)

EXIT_ERROR = 1
MISMATCH_ZETAS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7)           # Table 1
ATTACK_ZETAS = (0.0, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5)      # Fig. 3
PCM_TIMES = (25.0, 3600.0, 86400.0, 2592000.0, 31536000.0)  # Fig. 4: 25 s, 1 hour, 1 day, 30 days, 1 year
ATTACKS = {                                                 # --attacks name -> name in tables and legends
    "pga-ce": "PGA on cross-entropy",
    "pga-kl": "PGA on KL",
    "random": "random box corner",
}


class EvaluationError(RuntimeError):
    """A checkpoint or request that cannot be evaluated; main() prints it as one line and exits with 1."""


# ---------------------------------------------------------------------------------------------------- checkpoints
@dataclass
class Checkpoint:
    """A trained model ready to evaluate, with the data it is evaluated on."""
    label: str      # its name in tables and legends
    folder: str
    meta: dict      # meta.json: task, method, seed, settings, test_acc, …
    model: object   # the Module, in eval mode, holding the trained Θ
    split: Split    # the evaluation split (a fixed subset of --max-samples samples, if given)


def load_checkpoints(args):
    """Every --checkpoint with its label and evaluation split; each data set is loaded once per task and seed."""
    loaded = [(folder, *load_trained_model(folder)) for folder in args.checkpoint]
    check_one_task([meta for _, _, meta in loaded], args.checkpoint)
    pool = getattr(args, "pool", False)  # mismatch --pool: one row per label, the draws of its checkpoints together
    labels = args.label or [meta["method"] if pool else f"{meta['method']} seed {meta['seed']}"
                            for _, _, meta in loaded]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated and not pool:
        raise EvaluationError(f"several checkpoints are labelled {repeated[0]!r}; name each one with --label")
    datasets, checkpoints = {}, []
    for label, (folder, model, meta) in zip(labels, loaded):
        key = (meta["task"], meta["seed"])
        if key not in datasets:
            datasets[key] = TASKS[key[0]].load_data(args.data_dir, key[1])
        split = fixed_subset(getattr(datasets[key], args.split), args.max_samples)
        checkpoints.append(Checkpoint(label, folder, meta, model, split))
    return checkpoints


def checkpoint_record(checkpoint):
    """What the JSON output says about a checkpoint."""
    meta = checkpoint.meta
    return {"label": checkpoint.label, "folder": checkpoint.folder, "task": meta["task"], "method": meta["method"],
            "seed": meta["seed"], "num_samples": len(checkpoint.split)}


def generator(seed, *keys):
    """The np.random.Generator of one cell of an experiment, e.g. one ζ (keys: numbers ≥ 0).

    Seeding every cell from (seed, keys), instead of drawing everything from one stream, makes a result
    independent of what else is in the run: `--zetas 0.3` alone reproduces the 0.3 column of a full sweep, and
    every checkpoint sees the same random numbers. Fractional keys (ζ) enter in millionths.
    """
    return np.random.default_rng([seed, *(int(round(key * 1_000_000)) for key in keys)])


# ---------------------------------------------------------------------------------------------------- mismatch
def mismatch_accuracies(model, split, zeta, num_draws, rng, batch_size=500, desc=None, noise="relative"):
    """Accuracy on the split for each of `num_draws` mismatch draws Θ·(1 + ζ·N(0, 1)) (Eq. 1).

    A draw is one simulated chip: a full set of frozen parameters, passed to the model as `params` (the model
    itself is never changed). It is scored on the whole split in batches of `batch_size` samples under no_grad,
    in float32, so the only Python loop is over draws and batches. ζ = 0 needs one draw: that draw is Θ itself.
    noise: one of mismatch.NOISE_MODELS (Eq. 1 by default; "layer_max" for the Gaussian noise of Fig. 5).
    """
    num_draws = 1 if zeta == 0 else num_draws
    draws = progress_bar(mismatch_draws(model, zeta, num_draws, rng, noise=noise), total=num_draws, desc=desc,
                         unit="draw")
    return np.array([accuracy(model, split, batch_size, draw) for draw in draws])


def summarise(accuracies):
    """Table 1's numbers of one cell, in %: mean, standard deviation (of the draws, ddof 0) and minimum."""
    percent = 100 * np.asarray(accuracies, dtype=np.float64)
    return {"mean": float(percent.mean()), "std": float(percent.std()), "min": float(percent.min())}


def format_cell(summary):
    """'mean ± std (min)' with two decimals, e.g. '91.77 ± 0.12 (91.29)'."""
    return f"{summary['mean']:.2f} ± {summary['std']:.2f} ({summary['min']:.2f})"


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


def timed_mismatch(checkpoint, zeta, args):
    """One cell of Table 1: the accuracies of the draws and the seconds each draw took."""
    start = time.perf_counter()
    accuracies = mismatch_accuracies(checkpoint.model, checkpoint.split, zeta, args.draws, generator(args.seed, zeta),
                                     args.batch_size, desc=f"{checkpoint.label}, ζ = {zeta:g}", noise=args.noise)
    return {"accuracies": accuracies, "seconds_per_draw": (time.perf_counter() - start) / len(accuracies)}


def timed_mismatch_cell(job):
    """timed_mismatch for one (checkpoint, ζ, args), the form a process pool can call."""
    return timed_mismatch(*job)


def mismatch_cells(checkpoints, args):
    """Every cell of Table 1, one {ζ: timed_mismatch(…)} per checkpoint. With --jobs N, N cells at a time, each
    in its own single-threaded process: one process with N threads is barely faster than one thread (much of a CNN
    forward pass is single-threaded NumPy), N processes are nearly N times faster. The result is the same either
    way, since every cell draws from its own generator (see generator()).

    Each finished cell is saved at once in <out>/mismatch_cells.json, and a cell found there is not computed
    again: an evaluation that stopped continues where it was, and adding a ζ computes only the new column."""
    store_path = os.path.join(args.out, "mismatch_cells.json")
    finished = load_finished_cells(store_path)
    jobs = [(checkpoint, zeta, args) for checkpoint in checkpoints for zeta in args.zetas]
    todo = [job for job in jobs if cell_key(*job) not in finished]
    if len(todo) < len(jobs):
        print(f"{len(jobs) - len(todo)} of {len(jobs)} cells already computed, in {store_path}")
    for job, result in zip(todo, computed_cells(todo, args.jobs)):
        finished[cell_key(*job)] = {"accuracies": result["accuracies"].tolist(),
                                    "seconds_per_draw": result["seconds_per_draw"]}
        atomic_save_json(store_path, finished)
    cells = [{} for _ in checkpoints]
    for index, checkpoint in enumerate(checkpoints):
        for zeta in args.zetas:
            cell = finished[cell_key(checkpoint, zeta, args)]
            cells[index][zeta] = {"accuracies": np.array(cell["accuracies"]),
                                  "seconds_per_draw": cell["seconds_per_draw"]}
    return cells


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


def computed_cells(jobs, num_processes):
    """timed_mismatch of each (checkpoint, ζ, args) job, yielded in order as they finish."""
    if num_processes == 1:
        yield from map(timed_mismatch_cell, jobs)
        return
    with single_threaded_children(), ProcessPoolExecutor(num_processes, mp_context=get_context("spawn")) as pool:
        yield from pool.map(timed_mismatch_cell, jobs)


def cell_key(checkpoint, zeta, args):
    """What a cell's numbers depend on, as a string: the checkpoint's weights file (where, size, modification
    time: retraining changes them), ζ, and the settings of the draws and the data. Not --batch-size or --jobs,
    which change only the speed."""
    weights = os.stat(os.path.join(checkpoint.folder, "model.npz"))
    return json.dumps([os.path.realpath(checkpoint.folder), weights.st_size, weights.st_mtime_ns, zeta, args.draws,
                       args.seed, args.noise, args.split, args.max_samples, args.data_dir])


def load_finished_cells(path):
    """The cells saved by mismatch_cells (cell_key -> accuracies, seconds per draw); none if there is no file. An
    unreadable file is reported and set aside (renamed *.unreadable), and its cells computed again."""
    if not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        os.replace(path, path + ".unreadable")
        print(f"warning: could not read {path} ({error}); moved it to {path}.unreadable, computing every cell",
              file=sys.stderr)
        return {}


THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@contextmanager
def single_threaded_children():
    """Processes started inside this block run numba and BLAS on one thread (a fresh interpreter reads these
    variables when it imports them); this process's own environment is restored afterwards."""
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update({name: "1" for name in THREAD_VARIABLES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_mismatch(args):
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


def u_test_p_values(accuracies, zetas):
    """The paper's significance test (§4: "p < 2 × 10⁻⁸ in all cases; U test"): for every pair of checkpoints and
    every ζ > 0, the two-sided Mann–Whitney U test of the two sets of draws. Returns (first, second, ζ, p) tuples.
    accuracies: label -> {ζ: the draws' accuracies}."""
    return [(first, second, zeta, float(mannwhitneyu(accuracies[first][zeta], accuracies[second][zeta],
                                                     alternative="two-sided").pvalue))
            for first, second in combinations(accuracies, 2) for zeta in zetas if zeta > 0]


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


NOISE_FIGURES = {"relative": "Table 1, Fig. 2", "constant": "Fig. S4", "layer_max": "Fig. 5"}
NOISE_DESCRIPTIONS = {"relative": "mismatch Θ·(1 + ζN(0, 1))", "constant": "constant noise Θ + ζN(0, 1)",
                      "layer_max": "Gaussian noise Θ + ζ·max|Θ|·N(0, 1) per tensor"}


# ---------------------------------------------------------------------------------------------------- attack
def attacked_parameters(model, x, y, attack, zeta, rng, num_steps=10, epsilon=0.001):
    """Θ* for one minibatch (x, y): PGA (Algorithm 1) on its cross-entropy ("pga-ce", Fig. 3) or on the KL
    between the clean and the attacked outputs ("pga-kl", Fig. S3), or a random corner of the ζ-box ("random")."""
    if attack == "random":
        return random_box_attack(model, zeta, rng)
    objective = cross_entropy_objective(y) if attack == "pga-ce" else kl_objective(model, x)
    return pga_attack(model, x, objective, rng, zeta, num_steps, epsilon).theta_star


def attacked_accuracy(model, split, attack, zeta, rng, batch_size=1000, num_steps=10, epsilon=0.001):
    """Accuracy on the split after the attack, which is computed per minibatch.

    The split is cut into random minibatches of `batch_size` samples; each minibatch gets its own Θ*, and its
    samples are classified at that Θ*. So Θ* is tailored to the samples it is scored on: a smaller minibatch
    makes a stronger attack, and so would a minibatch of one class (the ECG test split is sorted by class, hence
    the shuffle). batch_size ≥ len(split) gives one Θ* for the whole split, as the authors' worst-case experiment
    (`get_whole_attacked_test_acc`) attacks the whole test set at once. ζ = 0 leaves nothing to attack (the box
    is the point Θ): the clean accuracy.
    """
    if zeta == 0:
        return accuracy(model, split, batch_size)
    correct = 0
    for x, y in iterate_minibatches(split, batch_size, rng):
        theta_star = attacked_parameters(model, x, y, attack, zeta, rng, num_steps, epsilon)
        correct += int(np.sum(predict_logits(model, x, batch_size, theta_star).argmax(axis=1) == y))
    return correct / len(split)


def attack_sweep(checkpoint, args):
    """attack -> accuracies (len(ζ), repeats) of one checkpoint, for every attack, ζ and repeat."""
    accuracies = {attack: np.zeros((len(args.zetas), args.repeats)) for attack in args.attacks}
    cells = [(attack, k, repeat)
             for attack in args.attacks for k in range(len(args.zetas)) for repeat in range(args.repeats)]
    for attack, k, repeat in progress_bar(cells, desc=checkpoint.label, unit="attack"):
        rng = generator(args.seed, list(ATTACKS).index(attack), args.zetas[k], repeat)
        accuracies[attack][k, repeat] = attacked_accuracy(checkpoint.model, checkpoint.split, attack, args.zetas[k],
                                                          rng, args.batch_size, args.num_steps, args.epsilon)
    return accuracies


def run_attack(args):
    checkpoints = load_checkpoints(args)
    sweeps = {checkpoint.label: attack_sweep(checkpoint, args) for checkpoint in checkpoints}
    rows = [["checkpoint", "attack"] + [f"ζ = {zeta:g}" for zeta in args.zetas]]
    rows += [[label, attack] + [f"{100 * mean:.2f}" for mean in accuracies.mean(axis=1)]
             for label, sweep in sweeps.items() for attack, accuracies in sweep.items()]
    samples = min(len(checkpoint.split) for checkpoint in checkpoints)
    minibatch = min(args.batch_size, samples)      # a split smaller than --batch-size is attacked in one piece
    caption = (f"{args.split} accuracy (%) after the attack, Θ* computed per minibatch of {minibatch} of the "
               f"{samples} samples, mean over {args.repeats} repeat(s)")
    print(f"Fig. 3 / S3 / S5c: {caption}")
    print(format_table(rows))
    results = [{**checkpoint_record(checkpoint), "results": [
        {"attack": attack, "zeta": zeta, "accuracies": accuracies[k].tolist(), "mean": float(accuracies[k].mean()),
         "std": float(accuracies[k].std())}
        for attack, accuracies in sweeps[checkpoint.label].items() for k, zeta in enumerate(args.zetas)]}
        for checkpoint in checkpoints]
    write_outputs(args.out, "attack", rows, record={
        "figure": "Fig. 3, S3, S5c", "split": args.split, "seed": args.seed, "zetas": args.zetas,
        "attack_batch_size": args.batch_size, "num_steps": args.num_steps, "epsilon": args.epsilon,
        "repeats": args.repeats, "checkpoints": results})
    curves = {label: {ATTACKS[attack]: accuracies.mean(axis=1) for attack, accuracies in sweep.items()}
              for label, sweep in sweeps.items()}
    plots.plot_attack_curves(args.zetas, curves, os.path.join(args.out, "attack.png"),
                             subtitle=f"Θ* per minibatch of {minibatch} of {samples} {args.split} samples, "
                                      f"{args.repeats} repeat(s)")


# ---------------------------------------------------------------------------------------------------- landscape
def random_direction(model, zeta, rng):
    """v = |Θ| · ζ · N(0, 1) for every parameter: a random direction scaled like mismatch (Fig. 1, ζ = 0.2)."""
    return {name: (np.abs(theta) * zeta * rng.standard_normal(theta.shape)).astype(theta.dtype)
            for name, theta in parameter_arrays(model).items()}


def loss_along(model, split, direction, alphas, batch_size=500, desc=None):
    """The cross-entropy on the split at Θ + α·v, for every α (α = 0 gives exactly the clean loss)."""
    theta = parameter_arrays(model)
    return np.array([
        mean_cross_entropy(model, split, batch_size,
                           {name: (theta[name] + alpha * v).astype(v.dtype) for name, v in direction.items()})
        for alpha in progress_bar(alphas, desc=desc, unit="α")])


def landscape_slope(alphas, losses):
    """Table S1's flatness of one curve: the mean over the α grid of |ΔL| / Δα between neighbouring points."""
    return float(np.mean(np.abs(np.diff(losses)) / np.diff(alphas)))


def landscape_trials(checkpoint, alphas, args):
    """Losses (repeats, len(alphas)) of one checkpoint: one row per random direction."""
    rows = []
    for repeat in range(args.repeats):
        direction = random_direction(checkpoint.model, args.zeta, generator(args.seed, repeat))
        rows.append(loss_along(checkpoint.model, checkpoint.split, direction, alphas, args.batch_size,
                               desc=f"{checkpoint.label}, direction {repeat + 1}/{args.repeats}"))
    return np.array(rows)


def run_landscape(args):
    checkpoints = load_checkpoints(args)
    alphas = np.linspace(-args.alpha_max, args.alpha_max, args.num_alphas)
    losses = {checkpoint.label: landscape_trials(checkpoint, alphas, args) for checkpoint in checkpoints}
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
    write_outputs(args.out, "landscape", rows, record={"figure": "Fig. 1, S2, Table S1", "split": args.split,
                                                "seed": args.seed, "zeta": args.zeta, "alphas": alphas.tolist(),
                                                "checkpoints": results})
    samples = min(len(checkpoint.split) for checkpoint in checkpoints)
    plots.plot_landscape(alphas, losses, os.path.join(args.out, "landscape.png"),
                         subtitle=f"{args.repeats} directions v = |Θ|·{args.zeta:g}·N(0, 1), {samples} "
                                  f"{args.split} samples")


# ---------------------------------------------------------------------------------------------------- membrane
def membrane_histogram(model, split, bin_edges, batch_size=250):
    """Histogram of (V − B)/B over every sample, time step and neuron of the split (Fig. S10).

    (V − B)/B is the membrane potential V measured from the adaptive threshold B in units of B: 0 is the
    threshold, and |(V − B)/B| < 1 is where the surrogate gradient (Eq. 4) is nonzero, the band in which a small
    change of the weights can add or remove a spike. Dividing by B also makes neurons whose thresholds have
    adapted to different heights comparable.

    Returns the density (counts / (all values · bin width): the area under it is the fraction of values inside
    the edges), the fraction near threshold (|(V − B)/B| < 1) and the fraction outside the edges.
    """
    counts, near, total = np.zeros(len(bin_edges) - 1), 0, 0
    for start in range(0, len(split), batch_size):
        state = model.record_state(split.x[start:start + batch_size])
        relative = (state["v"] - state["threshold"]) / state["threshold"]
        counts += np.histogram(relative, bin_edges)[0]
        near += np.count_nonzero(np.abs(relative) < 1)
        total += relative.size
    return {"density": counts / (total * np.diff(bin_edges)), "near_threshold": near / total,
            "outside": 1 - counts.sum() / total}


MEMBRANE_PERCENTILES = (0.5, 99.5)
MEMBRANE_RANGE_SAMPLES = 200


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


def run_membrane(args):
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
    write_outputs(args.out, "membrane", rows, record={"figure": "Fig. S10", "split": args.split, "quantity": "(V - B) / B",
                                               "bin_edges": bin_edges.tolist(), "checkpoints": results})
    densities = {f"{label} ({100 * h['near_threshold']:.0f}% near threshold, {100 * h['outside']:.0f}% outside "
                 f"the plot)": h["density"] for label, h in histograms.items()}
    samples = ", ".join(sorted({str(len(checkpoint.split)) for checkpoint in checkpoints}))
    plots.plot_membrane_histogram(bin_edges, densities, os.path.join(args.out, "membrane.png"),
                                  subtitle=f"every time step and neuron of {samples} {args.split} samples")


# ---------------------------------------------------------------------------------------------------- pcm
def pcm_accuracies(checkpoint, times, repeats, seed, batch_size):
    """accuracies (repeats, times): each repeat programs a new simulated chip (programming noise and drift
    exponents drawn once) and reads that same chip at every time since programming, as one device would age."""
    accuracies = np.empty((repeats, len(times)))
    for repeat in progress_bar(range(repeats), desc=f"{checkpoint.label}: PCM chips", unit="chip"):
        rng = generator(seed, repeat)
        chip = PCMModel(checkpoint.model, rng)
        for column, t in enumerate(times):
            accuracies[repeat, column] = chip.accuracy(checkpoint.split, t, rng, batch_size)
    return accuracies


def format_time(seconds):
    """25 s, 1 h, 1 d, 30 d, 1 y: the paper's time axis in words."""
    for unit, size in (("y", 31536000), ("d", 86400), ("h", 3600)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size:g} {unit}"
    return f"{seconds:g} s"


def run_pcm(args):
    checkpoints = load_checkpoints(args)
    spiking = [checkpoint.label for checkpoint in checkpoints if isinstance(checkpoint.model, LSNN)]
    if spiking:
        raise EvaluationError(f"pcm simulates dense and conv layers (the CNN, ResNet-32); {spiking[0]} is an LSNN, "
                              f"whose fused recurrent kernel does not run on simulated crossbars")
    rows = [["checkpoint", "floating point"] + [f"t = {format_time(t)}" for t in args.times]]
    numeric_rows = [["checkpoint", "floating point"] + [f"{stat} t = {format_time(t)}" for t in args.times
                                                        for stat in ("mean", "std", "min")]]
    results, curves, float_accuracies = [], {}, {}
    for checkpoint in checkpoints:
        start = time.perf_counter()
        accuracies = pcm_accuracies(checkpoint, args.times, args.repeats, args.seed, args.batch_size)
        seconds = time.perf_counter() - start
        float_accuracies[checkpoint.label] = accuracy(checkpoint.model, checkpoint.split, args.batch_size)
        summaries = [summarise(accuracies[:, column]) for column in range(len(args.times))]
        rows.append([checkpoint.label, f"{100 * float_accuracies[checkpoint.label]:.2f}"]
                    + [format_cell(summary) for summary in summaries])
        numeric_rows.append([checkpoint.label, f"{100 * float_accuracies[checkpoint.label]:.4f}"]
                            + [f"{summary[stat]:.4f}" for summary in summaries for stat in ("mean", "std", "min")])
        curves[checkpoint.label] = (accuracies.mean(axis=0), accuracies.std(axis=0))
        results.append({**checkpoint_record(checkpoint), "float_accuracy": float_accuracies[checkpoint.label],
                        "seconds": seconds, "results": [
                            {"t": t, **summary, "accuracies": accuracies[:, column].tolist()}
                            for column, (t, summary) in enumerate(zip(args.times, summaries))]})
        print(f"{checkpoint.label}: {args.repeats} chips × {len(args.times)} times on {len(checkpoint.split)} "
              f"samples in {seconds:.0f} s")
    print(f"Fig. 4: {args.split} accuracy (%) on simulated PCM, mean ± std (min) over {args.repeats} chips")
    print(format_table(rows))
    write_outputs(args.out, "pcm", rows, numeric_rows=numeric_rows, record={"figure": "Fig. 4", "split": args.split, "repeats": args.repeats,
                                          "seed": args.seed, "times": args.times, "checkpoints": results})
    plots.plot_pcm_drift(args.times, curves, float_accuracies, os.path.join(args.out, "pcm.png"))


# ---------------------------------------------------------------------------------------------------- output
def write_outputs(folder, name, rows, record, numeric_rows=None, figure=True):
    """<folder>/<name>.csv, <folder>/<name>.md (the printed table, rows of strings, as Markdown) and
    <folder>/<name>.json (record), each written atomically; the caller draws <name>.png if there is a figure.
    The CSV holds numeric_rows when the printed cells combine several numbers ('mean ± std (min)'), else rows."""
    write_csv(folder, name, numeric_rows or rows)
    atomic_write_bytes(os.path.join(folder, name + ".md"), (markdown_table(rows) + "\n").encode("utf-8"))
    atomic_save_json(os.path.join(folder, name + ".json"), record)
    print(f"wrote {os.path.join(folder, name)}.csv, .md, .json" + (" and .png" if figure else ""))


# ---------------------------------------------------------------------------------------------------- command line
def seconds(text):
    """A time since programming in seconds: finite and ≥ 0."""
    value = float(text)
    if not np.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"times must be finite and ≥ 0 seconds, got {text}")
    return value


def add_common_options(parser, batch_size, batch_help):
    parser.add_argument("--checkpoint", action="append", required=True, metavar="DIR",
                        help="checkpoint folder (model.npz + meta.json); repeat it to compare several")
    parser.add_argument("--label", action="append",
                        help="name in tables and legends, one per --checkpoint in the same order "
                             "(default: '<method> seed <seed>' from meta.json)")
    parser.add_argument("--split", choices=("test", "val"), default="test", help="data split (default: test)")
    parser.add_argument("--out", help="output folder (default: runs/eval-<subcommand>)")
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the random draws (default: 0)")
    parser.add_argument("--max-samples", type=positive_int, metavar="N",
                        help="use a fixed random subset of N samples of the split, the same in every run, for a "
                             "quick look (default: all)")
    parser.add_argument("--batch-size", type=positive_int, default=batch_size,
                        help=f"{batch_help} (default: {batch_size})")
    parser.add_argument("--data-dir", help="folder with the task's data (default: search the usual places)")


def build_parser():
    paragraphs = __doc__.split("\n\n")
    parser = OneLineErrorParser(prog="python -m minimal.evaluate", description="\n\n".join(paragraphs[1:4]),
                                epilog=paragraphs[4], formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True,
                                     metavar="{mismatch,attack,landscape,membrane,pcm,ibp}")
    forward_batch = "samples per forward pass (speed and memory only, the result does not depend on it)"

    mismatch = commands.add_parser("mismatch", help="Table 1, Fig. 2: accuracy under mismatch Θ·(1 + ζ·N(0, 1))")
    add_common_options(mismatch, 500, forward_batch)
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

    attack = commands.add_parser("attack",
                                 help="Fig. 3, S3, S5c: accuracy after the PGA weight attack and a random one")
    add_common_options(attack, 1000, "samples per attacked minibatch: each minibatch gets its own Θ*")
    add_list_option(attack, "--zetas", nonnegative_float, default=ATTACK_ZETAS, metavar="ζ",
                    help="attack sizes: the box |Θ* − Θ| ≤ ζ|Θ|, space- or comma-separated (default: %(default)s)")
    add_list_option(attack, "--attacks", str, choices=list(ATTACKS), default=list(ATTACKS), metavar="ATTACK",
                    help="pga-ce: PGA on the cross-entropy (Fig. 3); pga-kl: PGA on the KL boundary loss (Fig. S3); "
                         "random: a random corner of the box (Fig. S5c) (default: all three)")
    attack.add_argument("--repeats", type=positive_int, default=1,
                        help="repeats with other seeds, averaged (default: 1)")
    attack.add_argument("--num-steps", type=positive_int, default=10, help="PGA steps N_steps (default: 10)")
    attack.add_argument("--epsilon", type=nonnegative_float, default=0.001,
                        help="random start Θ*₀ = Θ + |Θ|·ε·N(0, 1) (default: 0.001)")

    landscape = commands.add_parser("landscape", help="Fig. 1, S2, Table S1: test loss along random directions")
    add_common_options(landscape, 500, forward_batch)
    landscape.add_argument("--zeta", type=positive_float, default=0.2,
                           help="direction size: v = |Θ|·ζ·N(0, 1) (default: 0.2)")
    landscape.add_argument("--alpha-max", type=positive_float, default=2.0,
                           help="α runs from −max to max (default: 2)")
    landscape.add_argument("--num-alphas", type=positive_int, default=21, help="points on the α grid (default: 21)")
    landscape.add_argument("--repeats", type=positive_int, default=5, help="random directions (default: 5)")

    membrane = commands.add_parser("membrane", help="Fig. S10: LSNN membrane potentials relative to the threshold")
    add_common_options(membrane, 250, forward_batch)
    membrane.add_argument("--bins", type=positive_int, default=96, help="histogram bins (default: 96)")
    membrane.add_argument("--range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                          help="histogram range of (V − B)/B; values outside are counted but not drawn (default: "
                               f"from the data, the {MEMBRANE_PERCENTILES[0]:g}th to {MEMBRANE_PERCENTILES[1]:g}th "
                               "percentile of all checkpoints' values)")

    pcm = commands.add_parser("pcm", help="Fig. 4: accuracy on simulated PCM hardware over time since programming")
    add_common_options(pcm, 200, forward_batch)
    add_list_option(pcm, "--times", seconds, default=PCM_TIMES, metavar="T",
                    help="seconds since programming, space- or comma-separated (default: 25 s, 1 h, 1 d, 30 d, 1 y)")
    pcm.add_argument("--repeats", type=positive_int, default=25,
                     help="simulated chips per network, each programmed anew (default: 25, as the paper)")

    commands.add_parser("ibp", add_help=False,
                        help="Fig. S9: interval bound propagation; see python -m minimal.evaluate ibp --help")
    return parser


def check_arguments(parser, args, unknown):
    """The checks argparse cannot express; a failure is a usage error (one line, exit code 2)."""
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.label and len(args.label) != len(args.checkpoint):
        parser.error(f"give one --label per --checkpoint: {len(args.label)} labels for "
                     f"{len(args.checkpoint)} checkpoints")
    if hasattr(args, "zetas"):
        args.zetas = sorted(set(args.zetas))
    if hasattr(args, "times"):
        args.times = sorted(set(args.times))
    if args.command == "landscape" and args.num_alphas < 2:
        parser.error(f"--num-alphas must be at least 2 (a slope needs two points), got {args.num_alphas}")
    if args.command == "membrane" and args.range and args.range[0] >= args.range[1]:
        parser.error(f"--range LOW HIGH needs LOW < HIGH, got {args.range[0]:g} {args.range[1]:g}")
    args.out = args.out or os.path.join("runs", f"eval-{args.command}")


COMMANDS = {"mismatch": run_mismatch, "attack": run_attack, "landscape": run_landscape, "membrane": run_membrane,
            "pcm": run_pcm}


def interrupted_message(args):
    if args.command == "mismatch":
        return (f"the finished (checkpoint, ζ) cells are kept in {args.out}/mismatch_cells.json; the same command "
                f"continues from them")
    return "no table was written; run the command again"


def run_command(args):
    check_writable_folder(args.out)
    COMMANDS[args.command](args)


def main(argv=None):
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)  # the unknown ones are ibp's own options
    if args.command == "ibp":
        return main_ibp(unknown)
    check_arguments(parser, args, unknown)
    return run_reporting_errors(lambda: run_command(args), lambda: interrupted_message(args),
                                expected=(EvaluationError, CheckpointError, DataNotFoundError))


if __name__ == "__main__":
    sys.exit(main())
