"""CIFAR-10: read the official binary batches with NumPy, split them into train / val / test, normalise per channel.

CIFAR-10 (Krizhevsky, 2009) has 60 000 colour 32x32 images in 10 classes: 50 000 for training, 10 000 for testing.
We read its "binary version" (cifar-10-binary.tar.gz, fetched by `python data_scripts/cifar10.py`), not the
"python version", whose batches are pickles (and a pickle can run code when loaded). The archive holds

    cifar-10-batches-bin/data_batch_1.bin … data_batch_5.bin   10 000 training images each
    cifar-10-batches-bin/test_batch.bin                         the 10 000 test images

and every file is nothing but records of 1 + 3072 bytes, one per image:

    byte 0         the label, 0..9
    bytes 1-1024   the red channel, 32 rows of 32 pixels (row-major); then 1024 bytes green, then 1024 blue

We hold out a fixed-seed 5 000 of the 50 000 training images as a validation set; the test set stays the test set.
"""
import os

import numpy as np

from minimal.data.common import (DataNotFoundError, Split, TaskData, first_folder_with, search_folders,
                                 train_val_indices)

FOLDER_NAME = "cifar-10-batches-bin"   # what the archive unpacks to, and the folder name we search for
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMAGE_SHAPE = (3, 32, 32)                           # channels (red, green, blue), rows, columns
RECORD_BYTES = 1 + int(np.prod(IMAGE_SHAPE))       # 3073: the label byte, then the pixels
IMAGES_PER_FILE = 10000

HOW_TO_GET_IT = "download it with `python data_scripts/cifar10.py`"


# ---------------------------------------------------------------------------------------------------------------
# Finding the files
# ---------------------------------------------------------------------------------------------------------------

def candidate_dirs(data_dir=None):
    """The folders that may hold the six files, in the order we search them: `data_dir` (its
    `cifar-10-batches-bin/` subfolder, or the folder itself), `$MINIMAL_DATA` likewise, then
    `~/.cache/minimal/cifar-10-batches-bin` (where `data_scripts/cifar10.py` puts them)."""
    return search_folders(FOLDER_NAME, data_dir)


def find_cifar10_dir(data_dir=None):
    """Return the first folder (see `candidate_dirs`) that holds all six files, else raise DataNotFoundError."""
    return first_folder_with(candidate_dirs(data_dir), TRAIN_FILES + (TEST_FILE,), "CIFAR-10", HOW_TO_GET_IT)


# ---------------------------------------------------------------------------------------------------------------
# Reading the binary batches
# ---------------------------------------------------------------------------------------------------------------

def parse_records(raw, name="CIFAR-10 data"):
    """The bytes of a batch file -> (uint8 images (N, 3, 32, 32), int64 labels (N,)).

    `name` only appears in error messages. Raises DataNotFoundError if the bytes are not whole records or a
    label is not 0..9.
    """
    if len(raw) % RECORD_BYTES:
        raise DataNotFoundError(f"{name} is corrupt: {len(raw)} bytes is not a whole number of "
                                f"{RECORD_BYTES}-byte records")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    if labels.max(initial=0) >= len(CLASS_NAMES):
        raise DataNotFoundError(f"{name} is corrupt: labels go up to {labels.max()}, expected 0..9")
    # np.frombuffer gives a read-only view of `raw`; .copy() hands back an ordinary array the caller owns.
    return records[:, 1:].reshape((-1,) + IMAGE_SHAPE).copy(), labels


def read_batch_file(path):
    """Read one batch file; it must hold exactly IMAGES_PER_FILE images."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as error:
        raise DataNotFoundError(f"{path}: cannot read it ({error.strerror}); {HOW_TO_GET_IT}") from error
    images, labels = parse_records(raw, name=path)
    if len(labels) != IMAGES_PER_FILE:
        raise DataNotFoundError(f"{path} holds {len(labels)} images, expected {IMAGES_PER_FILE}; {HOW_TO_GET_IT}")
    return images, labels


def read_batch_files(folder, names):
    """The images and labels of several batch files, one after the other."""
    parts = [read_batch_file(os.path.join(folder, name)) for name in names]
    return np.concatenate([images for images, _ in parts]), np.concatenate([labels for _, labels in parts])


# ---------------------------------------------------------------------------------------------------------------
# Normalising
# ---------------------------------------------------------------------------------------------------------------

def channel_mean_std(images):
    """Mean and standard deviation of each colour channel of uint8 images (N, 3, H, W), in pixel units 0..255.

    Computed from each channel's histogram of the 256 possible values: exact, and without a float copy of the
    images (45 000 images as float64 would take 1.1 GB).
    """
    levels = np.arange(256, dtype=np.float64)
    counts = np.stack([np.bincount(images[:, c].ravel(), minlength=256) for c in range(images.shape[1])])
    fractions = counts / counts.sum(axis=1, keepdims=True)
    mean = fractions @ levels
    return mean, np.sqrt(fractions @ levels ** 2 - mean ** 2)


def normalise(images, mean, std):
    """uint8 images (N, 3, H, W) -> float32 (x − mean) / std per channel."""
    x = images.astype(np.float32)
    x -= mean.astype(np.float32).reshape(1, -1, 1, 1)
    x /= std.astype(np.float32).reshape(1, -1, 1, 1)
    return x


# ---------------------------------------------------------------------------------------------------------------
# The loader
# ---------------------------------------------------------------------------------------------------------------

def load_cifar10(data_dir=None, val_fraction=0.1, seed=0):
    """Load CIFAR-10 as a TaskData.

    train / val: the official 50 000 training images, split by a fixed-seed permutation
                 (np.random.default_rng(seed)) into 45 000 / 5 000 for the default val_fraction=0.1;
    test:        the official 10 000 test images.
    x is float32 of shape (N, 3, 32, 32), each channel normalised by the mean and standard deviation of the
    training part (so validation and test stay unseen); y is int64 in 0..9. Same seed, same split.
    """
    folder = find_cifar10_dir(data_dir)
    train_images, train_labels = read_batch_files(folder, TRAIN_FILES)
    test_images, test_labels = read_batch_files(folder, (TEST_FILE,))

    train_index, val_index = train_val_indices(len(train_labels), val_fraction, np.random.default_rng(seed))
    train_part = train_images[train_index]
    mean, std = channel_mean_std(train_part)
    train = Split(normalise(train_part, mean, std), train_labels[train_index])
    val = Split(normalise(train_images[val_index], mean, std), train_labels[val_index])
    test = Split(normalise(test_images, mean, std), test_labels)

    info = {"n_train": len(train), "n_val": len(val), "n_test": len(test), "val_fraction": val_fraction,
            "seed": seed, "channel_mean": (mean / 255).tolist(), "channel_std": (std / 255).tolist()}
    return TaskData(train=train, val=val, test=test, classes=CLASS_NAMES, source=folder, info=info)
