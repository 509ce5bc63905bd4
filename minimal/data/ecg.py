"""The ECG task: 4-class heartbeat classification on the MIT-BIH Arrhythmia Database (paper: Bauer et al. 2019 setup).

Each sample is one heartbeat: 100 time steps at 180 Hz (0.56 s) centred on the annotated R peak, both leads, shape
(time, channel) = (100, 2). Classes, in label order: N (normal), L (left bundle branch block), R (right bundle
branch block), V (premature ventricular contraction). `data_scripts/ecg_mitbih.py` builds the beat set from the raw
PhysioNet records and documents the preprocessing; a copy ships inside the package (`embedded/ecg_mitbih.npz`, with
its SHA-256 in `embedded/ecg_mitbih.json`), so `load_ecg()` works offline.

Input encoding (`delay_taps` > 1, what the ecg task uses): a tapped delay line. Each lead reaches the network
through `delay_taps` channels, the lead itself and copies delayed by `delay_spacing`, 2·`delay_spacing`, … steps
(zero before the window starts), channel order (tap, lead): x_t, y_t, x_{t−s}, y_{t−s}, … With the task's 4 taps
4 steps apart, a neuron's input current at step t is a learned filter over the last 13 samples (72 ms, about a
QRS complex) of both leads, instead of a mix of the two current samples: the LSNN's time-averaged readout then
sees how long each learned waveform feature is present, which lifts the accuracy a training budget of minutes
reaches (docs/ecg-accuracy.md). The paper does not say how the beats become input currents; its network has 2
inputs. In hardware the taps are synaptic (axonal) delays.

The stored set is class balanced (every class has as many beats as the rarest one). Two ways to split it:

* `split="beat"` (the paper's): each class's beats are shuffled with `seed` and cut 80/10/10, so every split is
  balanced. Beats of one patient appear in train and test.
* `split="record"`: whole subjects go to one split. The subjects are shuffled with `seed` and cut 80/10/10; a cut is
  drawn again (same generator) until every split holds at least `MIN_BEATS_PER_CLASS` beats of every class, since
  L and R beats come from only a few records. Each split is then balanced by subsampling every class to that
  split's rarest class. Records 201 and 202 are the same man, so they count as one subject. The 47 subjects are cut
  38 / 5 / 4; as L beats come from 4 records and R beats from 6, val and test end up much smaller than 10% of the
  beats (seed 0: 15936 / 2284 / 1068 beats).
"""
import json
from pathlib import Path

import numpy as np

from minimal.data.common import DataNotFoundError, Split, TaskData
from minimal.io import load_npz, sha256_of_file

CLASSES = ("N", "L", "R", "V")
SPLIT_KINDS = ("beat", "record")
SPLIT_NAMES = ("train", "val", "test")
TRAIN_FRACTION, VAL_FRACTION = 0.8, 0.1  # the test split gets the rest
EMBEDDED_PATH = Path(__file__).parent / "embedded" / "ecg_mitbih.npz"
NUM_LEADS = 2
DELAY_TAPS, DELAY_SPACING = 4, 4     # the ecg task's input encoding (see the module docstring)
ENCODED_CHANNELS = NUM_LEADS * DELAY_TAPS
BUILD_COMMAND = "python data_scripts/ecg_mitbih.py"
SAME_SUBJECT = {202: 201}  # MIT-BIH records 201 and 202 come from the same subject
MIN_BEATS_PER_CLASS = 250  # per split, for the record split (so val and test hold at least 1000 beats)
MAX_RECORD_SPLIT_DRAWS = 10_000


def load_ecg(path=None, split="beat", seed=0, delay_taps=1, delay_spacing=DELAY_SPACING) -> TaskData:
    """Load the ECG beat set (default: the embedded copy), check its SHA-256, and split it.

    Returns TaskData with x float32 of shape (n, 100, 2·delay_taps) = (beats, time, channel): the two leads, through
    a tapped delay line when delay_taps > 1 (see `delay_line`); y int64 in 0..3 (CLASSES order), and
    info = {"split": kind, "seed": seed, "counts": {split: {class: n}}, "records": {split: [record ids]}}.
    """
    if split not in SPLIT_KINDS:
        raise ValueError(f"unknown ECG split {split!r}; choose one of {', '.join(SPLIT_KINDS)}")
    path = Path(path) if path is not None else EMBEDDED_PATH
    verify_checksum(path)
    arrays = load_npz(path)
    x = delay_line(arrays["x"].astype(np.float32) * np.float32(arrays["x_scale"]), delay_taps, delay_spacing)
    y = arrays["y"].astype(np.int64)
    record = arrays["record"].astype(np.int64)
    rng = np.random.default_rng(seed)
    parts = split_by_beat(y, rng) if split == "beat" else split_by_record(y, record, rng)
    info = {
        "split": split,
        "seed": seed,
        "counts": {name: class_counts(y[part]) for name, part in zip(SPLIT_NAMES, parts)},
        "records": {name: np.unique(record[part]).tolist() for name, part in zip(SPLIT_NAMES, parts)},
    }
    train, val, test = (Split(x[part], y[part]) for part in parts)
    return TaskData(train, val, test, CLASSES, f"MIT-BIH Arrhythmia Database beats, {path}", info)


def delay_line(x: np.ndarray, taps: int, spacing: int) -> np.ndarray:
    """x (n, T, C) -> (n, T, C·taps): channels k·C … (k+1)·C − 1 hold x delayed by k·spacing steps (zeros before
    the first sample). taps = 1 returns x itself."""
    if taps < 1 or spacing < 1 or (taps - 1) * spacing >= x.shape[1]:
        raise ValueError(f"a delay line of {taps} taps {spacing} steps apart does not fit {x.shape[1]} steps")
    n_steps, n_channels = x.shape[1], x.shape[2]
    delayed = np.zeros(x.shape[:2] + (n_channels * taps,), x.dtype)
    for k in range(taps):
        delayed[:, k * spacing:, k * n_channels:(k + 1) * n_channels] = x[:, :n_steps - k * spacing]
    return delayed


def verify_checksum(path: Path):
    """Raise DataNotFoundError unless `path` exists and its SHA-256 equals the one in the JSON beside it."""
    json_path = path.with_suffix(".json")
    if not path.is_file() or not json_path.is_file():
        raise DataNotFoundError(f"ECG beat set {path} (or its {json_path.name}) not found; "
                                f"build it with `{BUILD_COMMAND}`")
    expected = json.loads(json_path.read_text())["sha256"]
    if sha256_of_file(path) != expected:
        raise DataNotFoundError(f"{path} is corrupt (checksum mismatch); rebuild with `{BUILD_COMMAND}`")


def class_counts(y: np.ndarray) -> dict:
    """Number of samples of each class, keyed by class name."""
    return {name: int(np.sum(y == label)) for label, name in enumerate(CLASSES)}


def cut(items: np.ndarray):
    """Cut a (shuffled) array into train / val / test pieces of 80 / 10 / 10 percent (rounded)."""
    n_train = round(TRAIN_FRACTION * len(items))
    n_val = round(VAL_FRACTION * len(items))
    return items[:n_train], items[n_train:n_train + n_val], items[n_train + n_val:]


def split_by_beat(y: np.ndarray, rng) -> list:
    """Indices of train / val / test: each class's beats shuffled and cut 80/10/10 (stratified by class)."""
    pieces = [cut(rng.permutation(np.flatnonzero(y == label))) for label in range(len(CLASSES))]
    return [np.sort(np.concatenate(per_split)) for per_split in zip(*pieces)]


def split_by_record(y: np.ndarray, record: np.ndarray, rng) -> list:
    """Indices of train / val / test with every subject in one split only, each split class balanced."""
    subject = np.array([SAME_SUBJECT.get(r, r) for r in record.tolist()], dtype=np.int64)
    subjects = np.unique(subject)
    for _ in range(MAX_RECORD_SPLIT_DRAWS):
        parts = [np.flatnonzero(np.isin(subject, group)) for group in cut(rng.permutation(subjects))]
        if all(min(class_counts(y[part]).values()) >= MIN_BEATS_PER_CLASS for part in parts):
            return [balance_classes(part, y, rng) for part in parts]
    raise ValueError(f"no split of these {len(subjects)} subjects gives every split {MIN_BEATS_PER_CLASS} beats of "
                     f"every class (tried {MAX_RECORD_SPLIT_DRAWS} draws); use split='beat' or more records")


def balance_classes(indices: np.ndarray, y: np.ndarray, rng) -> np.ndarray:
    """Subsample `indices` so every class has as many as the rarest class (drawn without replacement)."""
    per_class = [indices[y[indices] == label] for label in range(len(CLASSES))]
    smallest = min(len(members) for members in per_class)
    return np.sort(np.concatenate([rng.choice(members, smallest, replace=False) for members in per_class]))
