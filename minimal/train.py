"""python -m minimal.train --task fmnist --method standard [--epochs N] [--max-steps N] …

Trains one model, keeps the checkpoint with the best validation accuracy in `--out` (model.npz + meta.json,
written atomically, and resume/ with the state after the last finished epoch, or every 10 minutes inside a long
one), and reports the test accuracy of that checkpoint at the end. A folder that already holds a run is never
overwritten unless asked: `--resume` continues it (a finished run stays as it is), `--overwrite` starts it again.
A diverging loss (NaN, inf or exploded) stops training with one line; the checkpoint on disk is then still the
last good one.
"""
import functools
import itertools
import math
import os
import shlex
import subprocess
import sys
import time

import numpy as np

from .cli import (EXIT_ERROR, CommandError, OneLineErrorParser, UsageError, check_writable_folder, nonnegative_int,
                  positive_float, positive_int, progress_bar, run_reporting_errors)
from .data.common import DataNotFoundError, fixed_subset, iterate_minibatches
from .metrics import accuracy
from .nn.module import load_checkpoint, save_checkpoint
from .optim import PiecewiseConstant
from .pcm import clip_weights, is_crossbar_weight
from .robust.attack import attacked_accuracy
from .robust.methods import METHOD_DEFAULTS, METHODS, TEXT_CHOICES, hyperparameters
from .run_folder import (RESUME_FOLDER, check_output_folder, claimed_output_folder, has_resume_point, resume_from,
                         resume_point_description, save_resume_point)
from .tasks import TASKS, CheckpointError, load_trained_model, model_rng

EXIT_DATA, EXIT_DIVERGED = EXIT_ERROR, 3
# a long epoch (β on the F-MNIST CNN: ~25 min on one core) also saves its resume state this often, so that a stop
# inside it loses at most this much training
SAVE_WITHIN_EPOCH_SECONDS = 600


def build_parser():
    parser = OneLineErrorParser(prog="python -m minimal.train", description=__doc__.split("\n\n")[1])
    parser.add_argument("--task", required=True, choices=sorted(TASKS),
                        help="; ".join(f"{t.name}: {t.description}" for t in TASKS.values()))
    parser.add_argument("--method", default="standard", choices=sorted(METHODS),
                        help="training method (default: standard)")
    parser.add_argument("--epochs", type=positive_int, help="epochs (default: the task's)")
    parser.add_argument("--max-steps", type=positive_int, help="stop after this many optimiser steps in total")
    parser.add_argument("--batch-size", type=positive_int, help="minibatch size (default: the task's)")
    parser.add_argument("--lr", type=positive_float,
                        help="learning rate of the task's optimiser (Adam; cifar10: SGD) (default: the task's)")
    parser.add_argument("--lr-drop-epoch", type=int,
                        help="from this epoch on use lr/10 (cifar10: lr/5, and /5 again at its later drops) "
                             "(default: the task's; negative: never)")
    parser.add_argument("--seed", type=nonnegative_int, default=0,
                        help="seed for initialisation, data split and shuffling, ≥ 0 (default: 0)")
    parser.add_argument("--val-samples", type=positive_int, metavar="N",
                        help="validate each epoch on a fixed random subset of N validation samples, for quick "
                             "runs (default: the whole validation split); the test accuracy always uses all")
    parser.add_argument("--val-attack", type=positive_float, metavar="ζ",
                        help="also record each epoch's validation accuracy under the weight attack of size ζ (PGA "
                             "on the cross-entropy, Θ* per minibatch of 1000, as evaluate attack): Fig. S5a/b "
                             "(paper: 0.1) (default: off; it costs about N_steps validation passes)")
    parser.add_argument("--data-dir", help="folder with the task's data (default: search the usual places)")
    parser.add_argument("--out", help="output folder (default: runs/<task>-<method>-seed<seed>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the stopped run in --out from its last saved state (a "
                             "finished run is left as it is; an empty or missing --out starts a new run)")
    parser.add_argument("--overwrite", action="store_true",
                        help="train from scratch even if --out holds a run, replacing it")
    parser.add_argument("--init-from", metavar="DIR",
                        help="start from the weights of this checkpoint (same task) instead of a random "
                             "initialisation: fine-tuning a pretrained model, as the paper's PCM experiments do")
    parser.add_argument("--clip-sigmas", type=positive_float, metavar="N",
                        help="after every step clip each weight matrix and kernel to ±N·std of its entries "
                             "(PCM training: no outlier weight sets the conductance scale). The paper's text says "
                             "2 (Fig. S12); minimal uses 2.5, the clip of its PCM mapping (DESIGN.md §4, pcm.py), "
                             "so that training and the simulated chip clip the same weights (default: off)")
    parser.add_argument("--grow-weights-to", type=positive_float, metavar="M",
                        help="inverse weight decay (Fig. S4, right): add the loss term −(λ/2)·‖W‖² over the weight "
                             "matrices and kernels while their mean |W| is below M, so that the optimiser grows "
                             "them as it fits the data (default: off)")
    parser.add_argument("--inverse-weight-decay", type=positive_float, default=0.001, metavar="λ",
                        help="with --grow-weights-to: the strength λ of the term (default: 0.001, with which the "
                             "F-MNIST MLP's mean |W| grows from 0.05 to 2 in 8 epochs)")
    parser.add_argument("--keep", choices=("best", "last"), default="best",
                        help="which epoch's network becomes the run's checkpoint: the one with the best validation "
                             "accuracy, or the last one, for runs whose point is where training ends, such as "
                             "--grow-weights-to (default: best)")
    add_method_options(parser)
    return parser


def add_method_options(parser):
    """One option per method hyperparameter (--beta-rob, --zeta-attack, …); unset means the method's default."""
    group = parser.add_argument_group("method hyperparameters (default: the paper's value for the method/task)")
    defaults = {}
    for method, names in METHOD_DEFAULTS.items():
        for name, value in names.items():
            defaults.setdefault(name, (value, []))[1].append(method)
    for name, (value, methods) in sorted(defaults.items()):
        kind = {bool: parse_bool, int: positive_int, str: str}.get(type(value), float)
        if name == "warmup_epochs":
            kind = nonnegative_int
        choices = TEXT_CHOICES.get(name)
        group.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None, choices=choices,
                           help=f"used by {', '.join(methods)} (paper: {value})")


def parse_bool(text):
    if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(f"must be true or false, got {text}")
    return text.lower() in ("true", "1", "yes")


def resolve_settings(args):
    """Command-line values, falling back on the task's defaults."""
    task = TASKS[args.task]
    drop = task.lr_drop_epoch if args.lr_drop_epoch is None else args.lr_drop_epoch
    return {
        "task": task.name, "method": args.method, "seed": args.seed,
        "epochs": args.epochs or task.epochs,
        "max_steps": args.max_steps,
        "batch_size": args.batch_size or task.batch_size,
        "lr": args.lr or task.lr,
        "lr_drop_epoch": drop if drop is not None and drop >= 0 else None,
        "val_samples": args.val_samples,
        "val_attack": args.val_attack,
        "out": args.out or os.path.join("runs", f"{task.name}-{args.method}-seed{args.seed}"),
        "resume": args.resume,
        "overwrite": args.overwrite,
        "init_from": args.init_from,
        "clip_sigmas": args.clip_sigmas,
        "grow_weights_to": args.grow_weights_to,
        "inverse_weight_decay": args.inverse_weight_decay if args.grow_weights_to else None,
        "keep": args.keep,
        **method_settings(args),
    }


def method_settings(args):
    """The chosen method's hyperparameters: the command line's value, else the paper's default."""
    config = {name: getattr(args, name) for name in METHOD_DEFAULTS[args.method]}
    return hyperparameters(args.method, {"task": args.task, **config})


def learning_rate_schedule(settings):
    """lr, divided by the task's lr_divisor at lr_drop_epoch and again at each of the task's later drops."""
    task, first_drop = TASKS[settings["task"]], settings["lr_drop_epoch"]
    if first_drop is None:
        return PiecewiseConstant([], [settings["lr"]])
    drops = [first_drop] + [epoch for epoch in task.later_lr_drops if epoch > first_drop]
    return PiecewiseConstant(drops, [settings["lr"] / task.lr_divisor ** k for k in range(len(drops) + 1)])


# ---------------------------------------------------------------------------------------------------- the loop
class TrainingDiverged(CommandError):
    exit_code = EXIT_DIVERGED


def exploded_loss(num_classes):
    """A training loss above this has diverged: 100 × ln(classes) is a cross-entropy that gives the true class a
    probability of e^(−100·ln C) on average, far beyond any model that is still learning (an untrained one is
    at about ln C). A finite loss of 1e28 is then caught, not only NaN and inf."""
    return 100 * math.log(num_classes)


def method_of_epoch(settings, epoch):
    """The training step of this epoch: the standard one during the method's warm-up epochs (AWP, ABCD: see
    minimal.robust.methods), the method's own after them."""
    if epoch < settings.get("warmup_epochs", 0):
        return METHODS["standard"]
    return METHODS[settings["method"]]


def train_one_epoch(model, method, optimizer, data, settings, rng, steps_left, epoch, partial=None,
                    save_within_epoch=None):
    """One pass over the training split (or fewer steps if the step budget ends). Returns (steps, mean loss).

    partial: where a resumed run stopped inside this epoch ({"steps", "losses", "rng_at_epoch_start"}), or None.
    save_within_epoch(partial): called every SAVE_WITHIN_EPOCH_SECONDS with how far the epoch got."""
    rng_at_epoch_start = partial["rng_at_epoch_start"] if partial else rng.bit_generator.state
    batches = epoch_batches(data, settings, rng, partial)
    total = min(-(-len(data.train) // settings["batch_size"]), steps_left)
    limit = exploded_loss(len(data.classes))
    losses = list(partial["losses"]) if partial else []
    last_save = time.time()
    model.train()
    with progress_bar(batches, total=total, initial=len(losses), desc=f"epoch {epoch + 1}/{settings['epochs']}",
                      unit="step") as bar:
        for x, y in bar:
            if len(losses) >= total:
                break
            loss = method(model, x, y, rng, settings)
            if not np.isfinite(loss) or loss > limit:
                raise TrainingDiverged(f"loss became {loss:.4g} at epoch {epoch + 1}, step {len(losses) + 1} "
                                       f"(diverged: above {limit:.0f} or not finite)")
            if settings.get("grow_weights_to"):
                add_inverse_weight_decay(model, settings["inverse_weight_decay"], settings["grow_weights_to"])
            optimizer.step()
            if settings.get("clip_sigmas"):
                clip_weight_matrices(model, settings["clip_sigmas"])
            losses.append(loss)
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            if save_within_epoch and len(losses) < total and time.time() - last_save >= SAVE_WITHIN_EPOCH_SECONDS:
                save_within_epoch({"steps": len(losses), "losses": losses, "rng_at_epoch_start": rng_at_epoch_start})
                last_save = time.time()
    return len(losses), float(np.mean(losses))


def epoch_batches(data, settings, rng, partial):
    """The epoch's minibatches, in an order drawn from rng at the epoch's start. Resuming inside the epoch, the
    same order is drawn again from the generator state saved at its start, and the batches already trained on are
    skipped (rng itself is then where the stopped run left it)."""
    if partial is None:
        return iterate_minibatches(data.train, settings["batch_size"], rng)
    order_rng = np.random.default_rng()
    order_rng.bit_generator.state = partial["rng_at_epoch_start"]
    batches = iterate_minibatches(data.train, settings["batch_size"], order_rng)
    return itertools.islice(batches, partial["steps"], None)


def clip_weight_matrices(model, n_sigmas):
    """Each dense weight and conv kernel clipped to ±n·std of its own entries (biases untouched)."""
    for _, p in model.named_parameters():
        if is_crossbar_weight(p.data):
            p.data = clip_weights(p.data, n_sigmas).astype(p.dtype)


def add_inverse_weight_decay(model, strength, target):
    """Inverse weight decay (Fig. S4, right): while the mean |W| of the weight matrices and kernels is below
    `target`, add the gradient of the loss term −(λ/2)·‖W‖², which is −λ·W, to what the method's backward left in
    p.grad (biases untouched). The optimiser then grows the weights while it fits the data, so the network can
    keep its accuracy while noise of constant size becomes relatively smaller (how much that buys: docs/results.md)."""
    if mean_weight_magnitude(model) < target:
        for _, p in model.named_parameters():
            if is_crossbar_weight(p.data):
                p.grad -= strength * p.data


def initialise_from(model, folder, task_name, log):
    """Copy the weights of a trained checkpoint of the same task into the fresh model (fine-tuning)."""
    pretrained, meta = load_trained_model(folder)
    if meta["task"] != task_name:
        raise CheckpointError(f"--init-from {folder} is a {meta['task']} checkpoint, not {task_name}")
    model.load_state_dict(pretrained.state_dict())
    log(f"starting from the weights of {folder} ({meta['method']}, test acc {meta.get('test_acc', float('nan')):.4f})")


def train(settings, data_dir=None, log=print):
    """Train with `settings` (see resolve_settings); returns the meta dict written next to the checkpoint.

    With settings["resume"], a run that was stopped continues from its last saved state, the end of an epoch or a
    point inside one (model, optimiser moments, random generator and history restored), giving the same result as
    an unbroken run, and a finished run is returned as it is. Without it, a folder holding a run is refused unless
    settings["overwrite"].
    """
    if settings.get("warmup_epochs", 0) >= settings["epochs"]:
        raise UsageError(f"--warmup-epochs {settings['warmup_epochs']} leaves none of the {settings['epochs']} "
                         f"epochs to {settings['method']}")
    check_writable_folder(settings["out"])
    with claimed_output_folder(settings["out"]):      # one process at a time trains in --out
        return train_in_claimed_folder(settings, data_dir, log)


def train_in_claimed_folder(settings, data_dir, log):
    finished = check_output_folder(settings)
    if finished:
        log(f"{settings['out']} is already finished (test accuracy {finished['test_acc']:.4f}); "
            f"its checkpoint is left untouched")
        return finished
    task = TASKS[settings["task"]]
    data = task.load_data(data_dir, settings["seed"])
    model = task.build_model(model_rng(settings["seed"]))
    if settings.get("init_from"):
        initialise_from(model, settings["init_from"], task.name, log)
    optimizer = task.optimizer(model.parameters(), settings["lr"])
    rng = np.random.default_rng([settings["seed"], 1])
    meta = {"task": task.name, "method": settings["method"], "seed": settings["seed"], "settings": settings,
            "data_source": data.source, "code_version": code_version(), "num_parameters": model.num_parameters(),
            "history": [],
            "best_val_acc": -1.0, "steps": 0}
    partial = None                                   # where a stopped run left its last epoch (resume)
    if settings.get("resume") and has_resume_point(settings["out"]):
        meta, partial = resume_from(settings, model, optimizer, rng, log)
    log(f"{task.name}, {settings['method']}: {len(data.train)} train / {len(data.val)} val / {len(data.test)} test "
        f"samples, {model.num_parameters():,} parameters -> {settings['out']}")
    log(f"data: {data.source}")
    start = time.time() - seconds_trained(meta, partial)
    run_epochs(settings, model, optimizer, data, rng, meta, start, log, partial)
    return finish(settings, model, data, meta, start, log)


def seconds_trained(meta, partial):
    """The training time a resumed run has behind it: up to its save inside an epoch, or to its last epoch."""
    if partial:
        return partial["seconds"]
    return meta["history"][-1]["seconds"] if meta["history"] else 0


def code_version():
    """The git commit of the code that trains (with "+changes" if the work tree differs from it), or None outside a
    git checkout: kernels and methods change, so a checkpoint says which code made it."""
    folder = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=folder, capture_output=True,
                                text=True, timeout=10)
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "."], cwd=folder,
                                 capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if commit.returncode != 0:
        return None
    return commit.stdout.strip() + ("+changes" if changed.stdout.strip() else "")


def run_epochs(settings, model, optimizer, data, rng, meta, start, log, partial=None):
    """Train the remaining epochs (the first from where `partial` says it stopped); after each, validate, keep the
    best checkpoint and save the resume point."""
    schedule = learning_rate_schedule(settings)
    budget = settings["max_steps"] or float("inf")
    validation = fixed_subset(data.val, settings.get("val_samples"))

    def save_within_epoch(progress):
        if parameters_are_finite(model):      # a step that broke the weights is no state to resume from
            progress["seconds"] = round(time.time() - start, 1)
            save_resume_point(settings["out"], model, optimizer, rng, meta, partial_epoch=progress)
    for epoch in range(len(meta["history"]), settings["epochs"]):
        if meta["steps"] >= budget:
            log(f"step budget of {settings['max_steps']} reached")
            break
        optimizer.lr = schedule(epoch)
        try:
            done, train_loss = train_one_epoch(model, method_of_epoch(settings, epoch), optimizer, data,
                                               settings, rng, budget - meta["steps"], epoch, partial,
                                               save_within_epoch)
        except TrainingDiverged as error:
            raise TrainingDiverged(f"{error}; stopping: {last_good_checkpoint(settings, meta)}") from None
        partial = None
        meta["steps"] += done
        val_acc = accuracy(model, validation, desc="validation")
        meta["history"].append({"epoch": epoch + 1, "steps": meta["steps"], "lr": optimizer.lr,
                                "train_loss": train_loss, "val_acc": val_acc,
                                "mean_abs_weight": mean_weight_magnitude(model),
                                **attacked_validation(model, validation, settings, epoch),
                                "seconds": round(time.time() - start, 1)})
        warming_up = epoch < settings.get("warmup_epochs", 0)
        keep_last = settings.get("keep") == "last"
        improved = val_acc > meta["best_val_acc"] and not keep_last
        saved = (improved or keep_last) and not warming_up              # a warm-up network is not the method's
        if saved:   # with --keep last, best_epoch and best_val_acc are the last epoch's: the checkpoint's
            meta["best_epoch"], meta["best_val_acc"] = epoch + 1, val_acc
            save_checkpoint(settings["out"], model, meta)
        save_resume_point(settings["out"], model, optimizer, rng, meta)
        attacked = meta["history"][-1].get("val_acc_attacked")
        under_attack = f", under attack ζ {settings['val_attack']:g}: {attacked:.4f}" if attacked is not None else ""
        saved_note = " (best, saved)" if improved and saved else " (saved)" if saved else ""
        log(f"epoch {epoch + 1}{' (warm-up: standard steps)' if warming_up else ''}: train loss {train_loss:.4f}, "
            f"val acc {val_acc:.4f}{under_attack}{saved_note}, {time.time() - start:.0f} s")


def parameters_are_finite(model):
    return all(np.isfinite(p.data).all() for p in model.parameters())


def mean_weight_magnitude(model):
    """mean |W| over the entries of every weight matrix and kernel (not the biases): does training grow the
    weights? (Fig. S4: it does against an adversary of constant size, not against the relative one)."""
    weights = [np.abs(p.data).ravel() for _, p in model.named_parameters() if is_crossbar_weight(p.data)]
    return float(np.concatenate(weights).mean())


def attacked_validation(model, validation, settings, epoch):
    """{"val_acc_attacked": accuracy under the weight attack of size --val-attack} (Fig. S5a/b), or {} when off.
    Its random start is seeded by the run's seed and the epoch, so a resumed run records the same numbers."""
    zeta = settings.get("val_attack")
    if not zeta:
        return {}
    rng = np.random.default_rng([settings["seed"], 2, epoch])
    return {"val_acc_attacked": attacked_accuracy(model, validation, "pga-ce", zeta, rng)}


def last_good_checkpoint(settings, meta):
    if "best_epoch" not in meta:
        return "no checkpoint was written yet"
    return (f"the last good checkpoint (epoch {meta['best_epoch']}, val acc {meta['best_val_acc']:.4f}) "
            f"is in {settings['out']}")


def finish(settings, model, data, meta, start, log):
    """Reload the best checkpoint, measure its test accuracy, and write it into meta.json."""
    if "best_epoch" not in meta:   # only possible when a step budget ends inside the warm-up
        raise CommandError(f"training stopped during the {settings['warmup_epochs']} warm-up epoch(s) of standard "
                           f"steps: there is no {settings['method']} network to save; give more --max-steps or "
                           f"--warmup-epochs 0")
    state, _ = load_checkpoint(settings["out"])
    model.load_state_dict(state)
    meta["test_acc"] = accuracy(model, data.test, desc="test")
    meta["train_seconds"] = round(time.time() - start, 1)
    save_checkpoint(settings["out"], model, meta)
    log(f"test accuracy {meta['test_acc']:.4f} (checkpoint from epoch {meta['best_epoch']}); "
        f"wrote {settings['out']}/model.npz and meta.json in {meta['train_seconds']:.0f} s")
    return meta


# ---------------------------------------------------------------------------------------------------- main
def continue_command(argv):
    """The command that continues this run: the same arguments with --resume (and without --overwrite)."""
    words = [word for word in argv if word != "--overwrite"]
    return shlex.join(["python", "-m", "minimal.train", *words, *([] if "--resume" in words else ["--resume"])])


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    settings = resolve_settings(args)

    def interrupted():
        if has_resume_point(settings["out"]):
            return (f"the state saved last ({resume_point_description(settings['out'])}) is in "
                    f"{settings['out']}/{RESUME_FOLDER}; continue with: {continue_command(argv)}")
        return "nothing had been saved yet"
    log = functools.partial(print, flush=True)     # each line reaches a log file (or a tail -f) at once
    return run_reporting_errors(lambda: train(settings, args.data_dir, log), interrupted,
                                expected=(DataNotFoundError, CheckpointError))


if __name__ == "__main__":
    sys.exit(main())
