"""Fashion-MNIST: find the four official IDX files, read them with NumPy, and split them into train / val / test.

Fashion-MNIST (Xiao et al., 2017) has 70 000 grey 28x28 images of clothes in 10 classes: 60 000 for training and
10 000 for testing. It ships as four gzip'ed files in the IDX format of the original MNIST:

    train-images-idx3-ubyte.gz   train-labels-idx1-ubyte.gz   t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz

An IDX file is a tiny header followed by raw bytes:

    bytes 0-3   magic number: 0x00 0x00, a type code (0x08 = unsigned byte), the number of dimensions
    then        one big-endian uint32 per dimension (for images: count, rows, columns; for labels: count)
    then        the values, row-major, one byte each

We hold out a fixed-seed 20 % of the official training set as a validation set; the official test set stays the
test set.
"""
import gzip
import os
import zlib

import numpy as np

from minimal.data.common import (DataNotFoundError, Split, TaskData, first_folder_with, search_folders,
                                 train_val_indices)

FILE_NAMES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
OFFICIAL_COUNTS = {"train": 60000, "test": 10000}
IMAGE_SIDE = 28

IMAGE_MAGIC = 0x00000803   # unsigned bytes, 3 dimensions (count, rows, columns)
LABEL_MAGIC = 0x00000801   # unsigned bytes, 1 dimension (count)
GZIP_MAGIC = b"\x1f\x8b"   # the first two bytes of every gzip file

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"   # where `apt-get install dataset-fashion-mnist` puts the files
HOW_TO_GET_IT = ("install it with `apt-get install dataset-fashion-mnist` "
                 "or download it with `python data_scripts/fmnist.py`")


# ---------------------------------------------------------------------------------------------------------------
# Finding the files
# ---------------------------------------------------------------------------------------------------------------

def candidate_dirs(data_dir=None):
    """The folders that may hold the four files, in the order we search them: `data_dir` alone when given (its
    `fashion-mnist/` subfolder, or the folder itself); else `$MINIMAL_DATA` likewise,
    `~/.cache/minimal/fashion-mnist` (where `data_scripts/fmnist.py` downloads to), then the Debian package's
    folder `/usr/share/datasets/fashion-mnist`."""
    return search_folders("fashion-mnist", data_dir) + ([DEBIAN_DIR] if data_dir is None else [])


def has_all_files(folder):
    """True if `folder` contains all four Fashion-MNIST files."""
    return all(os.path.isfile(os.path.join(folder, name)) for name in FILE_NAMES.values())


def find_fmnist_dir(data_dir=None):
    """Return the first folder (see `candidate_dirs`) that holds all four files, else raise DataNotFoundError."""
    return first_folder_with(candidate_dirs(data_dir), list(FILE_NAMES.values()), "Fashion-MNIST", HOW_TO_GET_IT)


# ---------------------------------------------------------------------------------------------------------------
# Reading IDX files
# ---------------------------------------------------------------------------------------------------------------

def read_file_bytes(path):
    """The content of `path`, decompressed if it is a gzip file (recognised by its first two bytes, not its name)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as error:
        raise DataNotFoundError(f"{path}: cannot read it ({error.strerror}); {HOW_TO_GET_IT}") from error
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as error:   # truncated download, flipped bits, ...
        raise DataNotFoundError(f"{path} is corrupt: its gzip stream is damaged or truncated ({error}); "
                                f"delete it and {HOW_TO_GET_IT}") from error


def parse_idx(raw, name="IDX data"):
    """Turn the bytes of an uncompressed IDX file into a uint8 array (3-D for images, 1-D for labels).

    `name` only appears in error messages. Raises DataNotFoundError if the header is unknown or if the number of
    bytes after the header differs from the product of the dimension sizes.
    """
    if len(raw) < 4:
        raise DataNotFoundError(f"{name} is corrupt: {len(raw)} bytes is too short for an IDX header")
    magic = int.from_bytes(raw[:4], "big")
    if magic not in (IMAGE_MAGIC, LABEL_MAGIC):
        raise DataNotFoundError(f"{name} is corrupt: magic number 0x{magic:08x} is neither "
                                f"0x{IMAGE_MAGIC:08x} (images) nor 0x{LABEL_MAGIC:08x} (labels)")
    n_dims = raw[3]                     # the last byte of the magic number
    header_size = 4 + 4 * n_dims        # magic + one uint32 per dimension
    if len(raw) < header_size:
        raise DataNotFoundError(f"{name} is corrupt: the header needs {header_size} bytes, found {len(raw)}")
    shape = tuple(int(size) for size in np.frombuffer(raw, dtype=">u4", count=n_dims, offset=4))
    expected = int(np.prod(shape))
    found = len(raw) - header_size
    if found != expected:
        what = "pixels" if magic == IMAGE_MAGIC else "labels"
        raise DataNotFoundError(f"{name} is corrupt: expected {expected} bytes of {what} "
                                f"for shape {shape}, found {found}")
    # np.frombuffer gives a read-only view of `raw`; .copy() hands back an ordinary array the caller owns.
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape).copy()


def read_idx(path):
    """Read a gzip'ed (or plain) IDX file into a uint8 array; raise DataNotFoundError naming the file if it is bad."""
    path = os.fspath(path)
    return parse_idx(read_file_bytes(path), name=path)


# ---------------------------------------------------------------------------------------------------------------
# Checking, splitting and scaling
# ---------------------------------------------------------------------------------------------------------------

def check_images_and_labels(images, labels, expected_count, name):
    """Raise DataNotFoundError unless we have `expected_count` 28x28 images and as many labels in 0..9."""
    expected_shape = (expected_count, IMAGE_SIDE, IMAGE_SIDE)
    if images.shape != expected_shape:
        raise DataNotFoundError(f"{name} images have shape {images.shape}, expected {expected_shape}")
    if labels.shape != (expected_count,):
        raise DataNotFoundError(f"{name} labels have shape {labels.shape}, expected ({expected_count},)")
    if labels.max(initial=0) >= len(CLASS_NAMES):
        raise DataNotFoundError(f"{name} labels go up to {labels.max()}, expected 0..{len(CLASS_NAMES) - 1}")


def read_images_and_labels(folder, part, expected_count):
    """Read and check the uint8 images (N, 28, 28) and labels (N,) of `part` ("train" or "test") in `folder`."""
    images = read_idx(os.path.join(folder, FILE_NAMES[f"{part}_images"]))
    labels = read_idx(os.path.join(folder, FILE_NAMES[f"{part}_labels"]))
    check_images_and_labels(images, labels, expected_count, name=f"{folder}: {part}")
    return images, labels


def to_unit_float(images):
    """uint8 images (N, 28, 28) with values 0..255 -> float32 (N, 1, 28, 28) with values in [0, 1].

    The extra axis is the single colour channel, as the convolution layers expect (N, channels, height, width).
    """
    return (images.astype(np.float32) / np.float32(255))[:, np.newaxis, :, :]


def make_split(images, labels):
    """A Split with float32 images in [0, 1] and int64 labels."""
    return Split(x=to_unit_float(images), y=labels.astype(np.int64))


# ---------------------------------------------------------------------------------------------------------------
# The loader
# ---------------------------------------------------------------------------------------------------------------

def load_fmnist(data_dir=None, val_fraction=0.2, seed=0):
    """Load Fashion-MNIST as a TaskData.

    train / val: the official 60 000 training images, split by a fixed-seed permutation
                 (np.random.default_rng(seed)) into 48 000 / 12 000 for the default val_fraction=0.2;
    test:        the official 10 000 test images.
    x is float32 of shape (N, 1, 28, 28) scaled to [0, 1]; y is int64 in 0..9. Same seed, same split.
    """
    folder = find_fmnist_dir(data_dir)
    train_images, train_labels = read_images_and_labels(folder, "train", OFFICIAL_COUNTS["train"])
    test_images, test_labels = read_images_and_labels(folder, "test", OFFICIAL_COUNTS["test"])

    # Split the uint8 arrays first and convert afterwards: this never holds a second float copy of all 60 000.
    train_index, val_index = train_val_indices(len(train_labels), val_fraction, np.random.default_rng(seed))
    train = make_split(train_images[train_index], train_labels[train_index])
    val = make_split(train_images[val_index], train_labels[val_index])
    test = make_split(test_images, test_labels)

    info = {"n_train": len(train), "n_val": len(val), "n_test": len(test),
            "val_fraction": val_fraction, "seed": seed}
    return TaskData(train=train, val=val, test=test, classes=CLASS_NAMES, source=folder, info=info)
