"""python -m minimal.evaluate history: what each checkpoint recorded epoch by epoch while it trained (meta.json):
the validation accuracy, clean and under the weight attack (--val-attack; Fig. S5a/b), and the mean weight
magnitude (Fig. S4: weights grow against a constant-size adversary, not against the relative one)."""
import os

from .. import plots
from ..cli import add_list_option
from ..io import format_table, read_json
from .common import EvaluationError, write_outputs

NAME = "history"
HELP = "Fig. S4, S5a/b: per-epoch validation accuracy (clean, attacked) and mean |W| from meta.json"
QUANTITIES = {                                     # name in meta.json's history -> what it is, for the figure
    "val_acc": "validation accuracy (%)",
    "val_acc_attacked": "validation accuracy under the weight attack (%)",
    "mean_abs_weight": "mean |W| of the weight matrices and kernels",
}
PERCENT = ("val_acc", "val_acc_attacked")


def add_arguments(history):
    history.add_argument("--checkpoint", action="append", required=True, metavar="DIR",
                         help="checkpoint folder (its meta.json is read); repeat it to compare several")
    history.add_argument("--label", action="append",
                         help="name in the table and legend, one per --checkpoint (default: '<method> seed <seed>')")
    history.add_argument("--out", help="output folder (default: runs/eval-history)")
    add_list_option(history, "--quantities", str, choices=list(QUANTITIES), default=list(QUANTITIES),
                    metavar="Q", help="what to show: " + ", ".join(QUANTITIES) + " (default: each one recorded)")
    history.add_argument("--figure", choices=("by-quantity", "by-checkpoint"), default="by-quantity",
                         help="by-quantity: a panel per quantity, a line per checkpoint (Fig. S4); by-checkpoint: a "
                              "panel per checkpoint, its clean and attacked validation accuracy (Fig. S5a/b; "
                              "mean |W| is left out) (default: %(default)s)")


def check_arguments(parser, args):
    pass


def recorded_histories(args):
    """label -> the checkpoint's history (a list of per-epoch dicts), read from meta.json."""
    histories = {}
    for index, folder in enumerate(args.checkpoint):
        meta = read_json(os.path.join(folder, "meta.json"))
        if not isinstance(meta, dict) or not meta.get("history"):
            raise EvaluationError(f"{folder}/meta.json is missing, unreadable or holds no training history")
        label = args.label[index] if args.label else f"{meta.get('method', '?')} seed {meta.get('seed', '?')}"
        histories[label] = meta["history"]
    return histories


def curves(histories, quantity):
    """label -> (epochs, values) of one quantity, for the checkpoints that recorded it (% for accuracies)."""
    scale = 100 if quantity in PERCENT else 1
    return {label: ([h["epoch"] for h in history if quantity in h],
                    [scale * h[quantity] for h in history if quantity in h])
            for label, history in histories.items() if any(quantity in h for h in history)}


def run(args):
    histories = recorded_histories(args)
    shown = {quantity: curves(histories, quantity) for quantity in args.quantities}
    shown = {quantity: lines for quantity, lines in shown.items() if lines}
    if not shown:
        raise EvaluationError(f"none of the checkpoints recorded {', '.join(args.quantities)}")
    if args.figure == "by-checkpoint" and not any(quantity in shown for quantity in PERCENT):
        raise EvaluationError("--figure by-checkpoint shows validation accuracies, and none was recorded")
    epochs = max(len(history) for history in histories.values())
    rows = [["checkpoint", "quantity"] + [f"epoch {epoch}" for epoch in range(1, epochs + 1)]]
    for quantity, lines in shown.items():
        for label, (line_epochs, values) in lines.items():
            by_epoch = dict(zip(line_epochs, values))
            rows.append([label, quantity] + [f"{by_epoch[e]:.4f}" if e in by_epoch else ""
                                             for e in range(1, epochs + 1)])
    print("Per-epoch records of training (meta.json)")
    print(format_table(rows))
    write_outputs(args.out, "history", rows, record={
        "figure": "Fig. S4, S5a/b" if args.figure == "by-quantity" else "Fig. S5a/b",
        "checkpoints": args.checkpoint,
        "curves": {quantity: {label: {"epochs": e, "values": v} for label, (e, v) in lines.items()}
                   for quantity, lines in shown.items()}})
    path = os.path.join(args.out, "history.png")
    if args.figure == "by-quantity":
        plots.plot_training_history({QUANTITIES[q]: lines for q, lines in shown.items()}, path)
    else:
        plot_by_checkpoint(shown, path)


def plot_by_checkpoint(shown, path):
    """Fig. S5a/b: a panel per checkpoint, its clean and attacked validation accuracy against the epoch."""
    panels = {}
    for quantity, record in zip(PERCENT, ("clean", "under the weight attack")):
        for label, line in shown.get(quantity, {}).items():
            panels.setdefault(label, {})[record] = line
    plots.plot_panel_per_checkpoint(panels, path, "Fig. S5a/b: validation accuracy while training,\nclean and "
                                    "under the weight attack", "epoch", "validation accuracy (%)")
