"""What every data loader returns, and the minibatch iterator the training loop uses."""
import os
from dataclasses import dataclass, field

import numpy as np


class DataNotFoundError(RuntimeError):
    """A data set is missing or corrupt. The message says where we looked and how to get it."""


@dataclass(frozen=True)
class Split:
    """Inputs `x` (first axis = samples) and integer class labels `y`."""
    x: np.ndarray
    y: np.ndarray

    def __post_init__(self):
        if len(self.x) != len(self.y):
            raise ValueError(f"x has {len(self.x)} samples but y has {len(self.y)}")

    def __len__(self):
        return len(self.y)


@dataclass(frozen=True)
class TaskData:
    """Train / validation / test splits of one task, its class names and where the data came from."""
    train: Split
    val: Split
    test: Split
    classes: tuple
    source: str
    info: dict = field(default_factory=dict)


def train_val_indices(n_samples, val_fraction, rng):
    """Randomly split 0..n_samples-1 into (train_indices, val_indices); the validation part has
    round(n_samples * val_fraction) of them."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be strictly between 0 and 1, got {val_fraction}")
    n_val = int(round(n_samples * val_fraction))
    order = rng.permutation(n_samples)
    return order[n_val:], order[:n_val]


def iterate_minibatches(split: Split, batch_size: int, rng=None, shuffle=True):
    """Yield (x, y) minibatches; the last one may be smaller. Shuffling uses the given np.random.Generator."""
    order = rng.permutation(len(split)) if shuffle else np.arange(len(split))
    for start in range(0, len(split), batch_size):
        index = order[start:start + batch_size]
        yield split.x[index], split.y[index]


def fixed_subset(split: Split, count, seed=0):
    """`count` samples of the split, the same ones every time (a seeded random choice, kept in their original
    order); the whole split when count is None or not smaller. Random rather than the first ones: a split may be
    ordered by class (the ECG test split is)."""
    if count is None or count >= len(split):
        return split
    index = np.sort(np.random.default_rng(seed).choice(len(split), count, replace=False))
    return Split(split.x[index], split.y[index])


def search_folders(subfolder, data_dir=None):
    """Where a data set may be, in search order. A folder the user names (`data_dir`, i.e. --data-dir) is the only
    place looked at: data_dir/subfolder and data_dir, so an empty or wrong folder is an error that names it, never
    a silent fallback to another copy. Without it: $MINIMAL_DATA/subfolder and $MINIMAL_DATA, then
    ~/.cache/minimal/subfolder (where the download scripts put it)."""
    if data_dir is not None:
        return [os.path.join(os.fspath(data_dir), subfolder), os.fspath(data_dir)]
    folders = []
    if os.environ.get("MINIMAL_DATA"):
        folders += [os.path.join(os.environ["MINIMAL_DATA"], subfolder), os.environ["MINIMAL_DATA"]]
    folders.append(os.path.expanduser(os.path.join("~", ".cache", "minimal", subfolder)))
    return folders


def first_folder_with(folders, file_names, data_name, how_to_get_it):
    """The first of `folders` that holds every file in `file_names`, else DataNotFoundError naming them all."""
    for folder in folders:
        if all(os.path.isfile(os.path.join(folder, name)) for name in file_names):
            return os.path.abspath(folder)
    raise DataNotFoundError(
        f"{data_name} not found: none of {', '.join(folders)} holds all of {', '.join(file_names)}; "
        f"{how_to_get_it} (or set $MINIMAL_DATA to the folder that holds them).")
