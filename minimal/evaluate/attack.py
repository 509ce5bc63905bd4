"""python -m minimal.evaluate attack: Fig. 3, S3 and S5c, test accuracy after the weight attack of Algorithm 1 (PGA
on the cross-entropy or on the KL boundary loss) and after a random perturbation of the same size.

Every finished cell (checkpoint, attack, ζ, repeat) is saved at once in <out>/attack_cells.json, keyed by what its
number depends on, as mismatch keeps its cells: a stopped evaluation continues where it was."""
import json
import os

import numpy as np

from .. import plots
from ..cli import add_list_option, nonnegative_float, positive_int, progress_bar
from ..io import format_table
from ..robust.attack import ATTACKS, attacked_accuracy
from .cells import CellStore
from .common import add_common_options, checkpoint_record, generator, load_checkpoints, write_outputs

NAME = "attack"
HELP = "Fig. 3, S3, S5c: accuracy after the PGA weight attack and a random one"
ATTACK_ZETAS = (0.0, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5)      # Fig. 3


def add_arguments(attack):
    add_common_options(attack, 1000, "samples per attacked minibatch: each minibatch gets its own Θ*")
    add_list_option(attack, "--zetas", nonnegative_float, default=ATTACK_ZETAS, metavar="ζ",
                    help="attack sizes: the box |Θ* − Θ| ≤ ζ|Θ|, space- or comma-separated (default: %(default)s)")
    add_list_option(attack, "--attacks", str, choices=list(ATTACKS), default=list(ATTACKS), metavar="ATTACK",
                    help="pga-ce: PGA on the cross-entropy (Fig. 3); pga-kl: PGA on the KL boundary loss (Fig. S3); "
                         "random: a random corner of the box (Fig. S5c) (default: all three)")
    attack.add_argument("--repeats", type=positive_int, default=1,
                        help="repeats with other seeds, averaged (default: 1)")
    attack.add_argument("--attack-steps", type=positive_int, default=10, help="PGA steps N_steps (default: 10)")
    attack.add_argument("--epsilon", type=nonnegative_float, default=0.001,
                        help="random start Θ*₀ = Θ + |Θ|·ε·N(0, 1) (default: 0.001)")
    attack.add_argument("--figure", choices=("by-attack", "by-checkpoint"), default="by-attack",
                        help="by-attack: a panel per attack, a line per checkpoint (Fig. 3, S3); by-checkpoint: a "
                             "panel per checkpoint, a line per attack (Fig. S5c/d, S8) (default: %(default)s)")


def check_arguments(parser, args):
    args.zetas = sorted(set(args.zetas))


def attack_sweep(checkpoint, args, store):
    """attack -> accuracies (len(ζ), repeats) of one checkpoint, for every attack, ζ and repeat; a cell already in
    the CellStore is taken from there."""
    accuracies = {attack: np.zeros((len(args.zetas), args.repeats)) for attack in args.attacks}
    for attack, k, repeat in progress_bar(attack_cells(args), desc=checkpoint.label, unit="attack"):
        accuracies[attack][k, repeat] = store.value(
            attack_cell_key(checkpoint, attack, args.zetas[k], repeat, args),
            lambda: attacked_accuracy(checkpoint.model, checkpoint.split, attack, args.zetas[k],
                                      generator(args.seed, list(ATTACKS).index(attack), args.zetas[k], repeat),
                                      args.batch_size, args.attack_steps, args.epsilon))
    return accuracies


def attack_cells(args):
    """(attack, index of ζ, repeat) of every cell of one checkpoint."""
    return [(attack, k, repeat)
            for attack in args.attacks for k in range(len(args.zetas)) for repeat in range(args.repeats)]


def attack_cell_key(checkpoint, attack, zeta, repeat, args):
    """What one attacked accuracy depends on, as a string: the checkpoint's weights (their digest), the attack, ζ,
    the repeat, and the attack's settings and data. --batch-size counts here: each minibatch gets its own Θ*."""
    return json.dumps([checkpoint.weights, attack, zeta, repeat, args.seed, args.split,
                       args.max_samples, args.data_dir, args.batch_size, args.attack_steps, args.epsilon])


def interrupted_message(args):
    return (f"the finished (checkpoint, attack, ζ) cells are kept in {args.out}/attack_cells.json; the same "
            f"command continues from them")


def run(args):
    checkpoints = load_checkpoints(args)
    store = CellStore(os.path.join(args.out, "attack_cells.json"))
    keys = [attack_cell_key(checkpoint, attack, args.zetas[k], repeat, args)
            for checkpoint in checkpoints for attack, k, repeat in attack_cells(args)]
    store.report_finished(keys)
    sweeps = {checkpoint.label: attack_sweep(checkpoint, args, store) for checkpoint in checkpoints}
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
        "figure": "Fig. 3, S3, S5c" if args.figure == "by-attack" else "Fig. S5c/d, S8",
        "split": args.split, "seed": args.seed, "zetas": args.zetas,
        "attack_batch_size": args.batch_size, "attack_steps": args.attack_steps, "epsilon": args.epsilon,
        "repeats": args.repeats, **store.record(keys), "checkpoints": results})
    curves = {label: {ATTACKS[attack]: accuracies.mean(axis=1) for attack, accuracies in sweep.items()}
              for label, sweep in sweeps.items()}
    subtitle = f"Θ* per minibatch of {minibatch} of {samples} {args.split} samples, {args.repeats} repeat(s)"
    path = os.path.join(args.out, "attack.png")
    if args.figure == "by-attack":
        plots.plot_attack_curves(args.zetas, curves, path, subtitle=subtitle)
    else:
        plot_by_checkpoint(args.zetas, curves, path, subtitle)


def plot_by_checkpoint(zetas, curves, path, subtitle):
    """Fig. S5c/d, S8: a panel per checkpoint, the attacks side by side in it."""
    positions = np.arange(len(zetas))
    panels = {label: {attack: (positions, 100 * np.asarray(means)) for attack, means in lines.items()}
              for label, lines in curves.items()}
    plots.plot_panel_per_checkpoint(
        panels, path, f"Fig. S5c/d, S8: random against adversarial weight perturbation\n{subtitle}",
        "attack size ζ (box |Θ* − Θ| ≤ ζ|Θ|; equally spaced, not to scale)", "test accuracy (%)",
        xticks=(positions, [f"{zeta:g}" for zeta in zetas]))
