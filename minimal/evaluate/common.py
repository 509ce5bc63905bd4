"""What every evaluation subcommand shares: loading the checkpoints with the data they are evaluated on, the
random generator of one cell of an experiment, the options every subcommand has, and writing the outputs."""
import os
from dataclasses import dataclass

import numpy as np

from ..data.common import Split, fixed_subset
from ..io import atomic_save_json, atomic_write_bytes, markdown_table, weights_digest, write_csv
from ..cli import nonnegative_int, positive_int
from ..tasks import TASKS, check_one_task, load_trained_model


class EvaluationError(RuntimeError):
    """A checkpoint or request that cannot be evaluated; main() prints it as one line and exits with 1."""


@dataclass
class Checkpoint:
    """A trained model ready to evaluate, with the data it is evaluated on."""
    label: str      # its name in tables and legends
    folder: str
    meta: dict      # meta.json: task, method, seed, settings, test_acc, …
    model: object   # the Module, in eval mode, holding the trained Θ
    split: Split    # the evaluation split (a fixed subset of --max-samples samples, if given)
    weights: str    # the SHA-256 of its model.npz (io.weights_digest), read once: what saved cells are keyed by


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
        checkpoints.append(Checkpoint(label, folder, meta, model, split, weights_digest(folder)))
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


def format_cell(summary):
    """'mean ± std (min)' with two decimals, e.g. '91.77 ± 0.12 (91.29)'."""
    return f"{summary['mean']:.2f} ± {summary['std']:.2f} ({summary['min']:.2f})"


def write_outputs(folder, name, rows, record, numeric_rows=None, figure=True):
    """<folder>/<name>.csv, <folder>/<name>.md (the printed table, rows of strings, as Markdown) and
    <folder>/<name>.json (record), each written atomically; the caller draws <name>.png if there is a figure.
    The CSV holds numeric_rows when the printed cells combine several numbers ('mean ± std (min)'), else rows."""
    write_csv(folder, name, numeric_rows or rows)
    atomic_write_bytes(os.path.join(folder, name + ".md"), (markdown_table(rows) + "\n").encode("utf-8"))
    atomic_save_json(os.path.join(folder, name + ".json"), record)
    print(f"wrote {os.path.join(folder, name)}.csv, .md, .json" + (" and .png" if figure else ""))


FORWARD_BATCH = "samples per forward pass (speed and memory only, the result does not depend on it)"


def add_common_options(parser, batch_size, batch_help, with_seed=True):
    """The options of every subcommand: which checkpoints, their labels, the split and its size, the output folder,
    the batch size and (where something is random) the seed."""
    parser.add_argument("--checkpoint", action="append", required=True, metavar="DIR",
                        help="checkpoint folder (model.npz + meta.json); repeat it to compare several")
    parser.add_argument("--label", action="append",
                        help="name in tables and legends, one per --checkpoint in the same order "
                             "(default: '<method> seed <seed>' from meta.json)")
    parser.add_argument("--split", choices=("test", "val", "train"), default="test",
                        help="data split; train: e.g. the loss landscape on the training set, Fig. S7 "
                             "(default: test)")
    parser.add_argument("--out", help="output folder (default: runs/eval-<subcommand>)")
    if with_seed:
        parser.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the random draws (default: 0)")
    parser.add_argument("--max-samples", type=positive_int, metavar="N",
                        help="use a fixed random subset of N samples of the split, the same in every run, for a "
                             "quick look (default: all)")
    parser.add_argument("--batch-size", type=positive_int, default=batch_size,
                        help=f"{batch_help} (default: {batch_size})")
    parser.add_argument("--data-dir", help="folder with the task's data (default: search the usual places)")
