"""python -m minimal.train --task fmnist --method standard [--epochs N] [--max-steps N] …

Trains one model, keeps the checkpoint with the best validation accuracy in `--out` (model.npz + meta.json,
written atomically), and reports the test accuracy of that checkpoint at the end. A NaN/inf loss stops training
with a clear message; the checkpoint on disk is then still the last good one.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
from tqdm import tqdm

from .data.common import DataNotFoundError, iterate_minibatches
from .metrics import accuracy
from .io import atomic_save_json, atomic_save_npz, load_npz, read_json
from .nn.module import load_checkpoint, save_checkpoint
from .optim import PiecewiseConstant
from .pcm import clip_weights, is_crossbar_weight
from .robust.methods import METHOD_DEFAULTS, METHODS, hyperparameters
from .robust.mismatch import NOISE_MODELS
from .tasks import TASKS, CheckpointError, load_trained_model, model_rng

EXIT_USAGE, EXIT_DATA, EXIT_DIVERGED = 2, 1, 3


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a bad value gets a single error line (no usage dump) and exit code 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def positive_float(text):
    value = float(text)
    if not np.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def nonnegative_float(text):
    value = float(text)
    if not np.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number ≥ 0, got {text}")
    return value


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
    parser.add_argument("--seed", type=int, default=0, help="seed for initialisation, data split and shuffling (default: 0)")
    parser.add_argument("--data-dir", help="folder with the task's data (default: search the usual places)")
    parser.add_argument("--out", help="output folder (default: runs/<task>-<method>-seed<seed>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue a stopped run in --out from the end of its last finished epoch")
    parser.add_argument("--init-from", metavar="DIR",
                        help="start from the weights of this checkpoint (same task) instead of a random "
                             "initialisation: fine-tuning a pretrained model, as the paper's PCM experiments do")
    parser.add_argument("--clip-sigmas", type=positive_float, metavar="N",
                        help="after every step clip each weight matrix and kernel to ±N·std of its entries "
                             "(PCM training: no outlier weight sets the conductance scale; paper: 2) (default: off)")
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
        choices = sorted(NOISE_MODELS) if isinstance(value, str) else None   # train_noise is the one text option
        group.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None, choices=choices,
                           help=f"used by {', '.join(methods)} (paper: {value})")


def parse_bool(text):
    if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"must be true or false, got {text}")
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
        "out": args.out or os.path.join("runs", f"{task.name}-{args.method}-seed{args.seed}"),
        "resume": args.resume,
        "init_from": args.init_from,
        "clip_sigmas": args.clip_sigmas,
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


class TrainingDiverged(RuntimeError):
    pass


def train_one_epoch(model, method, optimizer, data, settings, rng, steps_left, epoch):
    """One pass over the training split (or fewer steps if the step budget ends). Returns (steps, mean loss)."""
    batches = iterate_minibatches(data.train, settings["batch_size"], rng)
    total = min(-(-len(data.train) // settings["batch_size"]), steps_left)
    losses = []
    model.train()
    with tqdm(batches, total=total, desc=f"epoch {epoch + 1}/{settings['epochs']}", unit="step",
              leave=False, mininterval=0.5) as bar:
        for x, y in bar:
            loss = method(model, x, y, rng, settings)
            if not np.isfinite(loss):
                raise TrainingDiverged(f"loss became {loss} at epoch {epoch + 1}, step {len(losses) + 1}")
            optimizer.step()
            if settings.get("clip_sigmas"):
                clip_weight_matrices(model, settings["clip_sigmas"])
            losses.append(loss)
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            if len(losses) == total:
                break
    return len(losses), float(np.mean(losses))


def clip_weight_matrices(model, n_sigmas):
    """Each dense weight and conv kernel clipped to ±n·std of its own entries (biases untouched)."""
    for _, p in model.named_parameters():
        if is_crossbar_weight(p.data):
            p.data = clip_weights(p.data, n_sigmas).astype(p.dtype)


def initialise_from(model, folder, task_name, log):
    """Copy the weights of a trained checkpoint of the same task into the fresh model (fine-tuning)."""
    pretrained, meta = load_trained_model(folder)
    if meta["task"] != task_name:
        raise CheckpointError(f"--init-from {folder} is a {meta['task']} checkpoint, not {task_name}")
    model.load_state_dict(pretrained.state_dict())
    log(f"starting from the weights of {folder} ({meta['method']}, test acc {meta.get('test_acc', float('nan')):.4f})")


def train(settings, data_dir=None, log=print):
    """Train with `settings` (see resolve_settings); returns the meta dict written next to the checkpoint.

    With settings["resume"], a run that was stopped continues from the end of its last finished epoch
    (model, optimiser moments, random generator and history restored), giving the same result as an unbroken run.
    """
    task = TASKS[settings["task"]]
    data = task.load_data(data_dir, settings["seed"])
    model = task.build_model(model_rng(settings["seed"]))
    if settings.get("init_from"):
        initialise_from(model, settings["init_from"], task.name, log)
    optimizer = task.optimizer(model.parameters(), settings["lr"])
    schedule = learning_rate_schedule(settings)
    rng = np.random.default_rng([settings["seed"], 1])
    meta = {"task": task.name, "method": settings["method"], "seed": settings["seed"], "settings": settings,
            "data_source": data.source, "num_parameters": model.num_parameters(), "history": [],
            "best_val_acc": -1.0, "steps": 0}
    if settings.get("resume"):
        meta = resume_from(settings, model, optimizer, rng, meta, log)
    log(f"{task.description}: {len(data.train)} train / {len(data.val)} val / {len(data.test)} test samples "
        f"from {data.source}; {model.num_parameters():,} parameters; method {settings['method']}")
    start = time.time() - meta["history"][-1]["seconds"] if meta["history"] else time.time()
    budget = settings["max_steps"] or float("inf")
    epochs_before = len(meta["history"])
    for epoch in range(len(meta["history"]), settings["epochs"]):
        if meta["steps"] >= budget:
            break
        optimizer.lr = schedule(epoch)
        try:
            done, train_loss = train_one_epoch(model, METHODS[settings["method"]], optimizer, data, settings,
                                               rng, budget - meta["steps"], epoch)
        except TrainingDiverged as error:
            kept = (f"the last good checkpoint (epoch {meta['best_epoch']}, val acc {meta['best_val_acc']:.4f}) "
                    f"is in {settings['out']}" if "best_epoch" in meta else "no checkpoint was written yet")
            raise TrainingDiverged(f"{error}; stopping: {kept}") from None
        meta["steps"] += done
        val_acc = accuracy(model, data.val)
        meta["history"].append({"epoch": epoch + 1, "steps": meta["steps"], "lr": optimizer.lr,
                                "train_loss": train_loss, "val_acc": val_acc,
                                "seconds": round(time.time() - start, 1)})
        improved = val_acc > meta["best_val_acc"]
        if improved:
            meta["best_epoch"], meta["best_val_acc"] = epoch + 1, val_acc
            save_checkpoint(settings["out"], model, meta)
        save_resume_point(settings["out"], model, optimizer, rng, meta)
        log(f"epoch {epoch + 1}: train loss {train_loss:.4f}, val acc {val_acc:.4f}"
            f"{' (best, saved)' if improved else ''}, {time.time() - start:.0f} s")
    if meta["steps"] >= budget:
        log(f"step budget of {settings['max_steps']} reached")
    finished = finished_meta(settings["out"], meta) if len(meta["history"]) == epochs_before else None
    if finished:
        log(f"{settings['out']} is already finished (test accuracy measured after epoch {epochs_before}); "
            f"its checkpoint is left untouched")
        return finished
    return finish(settings, model, data, meta, start, log)


def finished_meta(out, meta):
    """out/meta.json when it holds a test accuracy measured after the same epochs as `meta`, else None.

    Resuming a finished run then trains nothing and must not rewrite model.npz: evaluations cache their
    results by the checkpoint's size and modification time.
    """
    saved = read_json(os.path.join(out, "meta.json"), {})
    return saved if "test_acc" in saved and len(saved["history"]) == len(meta["history"]) else None


def finish(settings, model, data, meta, start, log):
    """Reload the best checkpoint, measure its test accuracy, and write it into meta.json."""
    state, _ = load_checkpoint(settings["out"])
    model.load_state_dict(state)
    meta["test_acc"] = accuracy(model, data.test)
    meta["train_seconds"] = round(time.time() - start, 1)
    save_checkpoint(settings["out"], model, meta)
    log(f"test accuracy {meta['test_acc']:.4f} (checkpoint from epoch {meta['best_epoch']}); "
        f"wrote {settings['out']}/model.npz and meta.json in {meta['train_seconds']:.0f} s")
    return meta


# ---------------------------------------------------------------------------------------------------- resuming
RESUME_FOLDER = "resume"
SETTINGS_THAT_MAY_CHANGE_ON_RESUME = ("epochs", "max_steps", "resume", "out")


def save_resume_point(out, model, optimizer, rng, meta):
    """After each epoch: model + optimiser arrays in one .npz, then state.json naming it (the commit point)."""
    folder = os.path.join(out, RESUME_FOLDER)
    name = f"epoch-{len(meta['history']):04d}.npz"
    arrays = {"model/" + k: v for k, v in model.state_dict().items()}
    arrays.update({"optimizer/" + k: v for k, v in optimizer.state_arrays().items()})
    atomic_save_npz(os.path.join(folder, name), arrays)
    atomic_save_json(os.path.join(folder, "state.json"),
                     {"arrays": name, "rng": rng.bit_generator.state, "meta": meta})
    for old in os.listdir(folder):
        if old.startswith("epoch-") and old != name:
            os.remove(os.path.join(folder, old))


def resume_from(settings, model, optimizer, rng, fresh_meta, log):
    """Restore the state saved by save_resume_point, or return fresh_meta when there is none."""
    state_path = os.path.join(settings["out"], RESUME_FOLDER, "state.json")
    if not os.path.isfile(state_path):
        return fresh_meta
    with open(state_path) as f:
        state = json.load(f)
    differences = [name for name in settings if name not in SETTINGS_THAT_MAY_CHANGE_ON_RESUME
                   and state["meta"]["settings"].get(name) != settings[name]]
    if differences:
        raise ResumeMismatch(f"cannot resume {settings['out']}: it was trained with other settings "
                             f"({', '.join(differences)}); use another --out or remove that folder")
    arrays = load_npz(os.path.join(settings["out"], RESUME_FOLDER, state["arrays"]))
    model.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("model/")})
    optimizer.load_state_arrays({k[10:]: v for k, v in arrays.items() if k.startswith("optimizer/")})
    rng.bit_generator.state = state["rng"]
    meta = state["meta"]
    meta["settings"] = settings
    log(f"resuming {settings['out']} after epoch {len(meta['history'])}")
    return meta


class ResumeMismatch(RuntimeError):
    pass


def main(argv=None):
    args = build_parser().parse_args(argv)
    settings = resolve_settings(args)
    try:
        train(settings, args.data_dir)
    except DataNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_DATA
    except TrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_DIVERGED
    except ResumeMismatch as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_DATA
    return 0


if __name__ == "__main__":
    sys.exit(main())
