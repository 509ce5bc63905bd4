"""Tests of the Fashion-MNIST loader (minimal/data/fmnist.py) and its download script (data_scripts/fmnist.py).

Synthetic IDX files test the reader and the error messages; the real data (Debian package dataset-fashion-mnist)
tests the loader end to end and is skipped where it is not installed.
"""
import gzip
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from minimal.data import fmnist
from minimal.data.common import DataNotFoundError

REPO_ROOT = Path(__file__).resolve().parent.parent
REAL_DIR = Path(fmnist.DEBIAN_DIR)
HAS_REAL_DATA = fmnist.has_all_files(REAL_DIR)
needs_real_data = pytest.mark.skipif(not HAS_REAL_DATA, reason=f"Fashion-MNIST not installed in {REAL_DIR}")


def load_data_script():
    """Import data_scripts/fmnist.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("data_script_fmnist", REPO_ROOT / "data_scripts" / "fmnist.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def idx_bytes(array, magic=None, shape=None):
    """The bytes of an (uncompressed) IDX file holding uint8 `array`; `magic` and `shape` override the header."""
    array = np.asarray(array, dtype=np.uint8)
    shape = array.shape if shape is None else shape
    magic = 0x00000800 + len(shape) if magic is None else magic
    header = magic.to_bytes(4, "big") + b"".join(size.to_bytes(4, "big") for size in shape)
    return header + array.tobytes()


def write_gz(path, payload):
    path.write_bytes(gzip.compress(payload))
    return path


def synthetic_images_and_labels(n, seed):
    """`n` random 28x28 uint8 images and labels that cycle through 0..9 (so every class is present)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    return images, labels


def write_synthetic_fmnist(folder, n_train=50, n_test=20):
    """A complete (tiny) Fashion-MNIST folder; returns the uint8 arrays that were written."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for part, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        images, labels = synthetic_images_and_labels(n, seed)
        write_gz(folder / fmnist.FILE_NAMES[f"{part}_images"], idx_bytes(images))
        write_gz(folder / fmnist.FILE_NAMES[f"{part}_labels"], idx_bytes(labels))
        arrays[part] = (images, labels)
    return arrays


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    """Point every search location at empty folders, so no real Fashion-MNIST can be found."""
    monkeypatch.setenv("MINIMAL_DATA", str(tmp_path / "minimal_data"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(fmnist, "DEBIAN_DIR", str(tmp_path / "debian"))
    return tmp_path


# ---------------------------------------------------------------------------------------------------------------
# read_idx on synthetic files
# ---------------------------------------------------------------------------------------------------------------

def test_read_idx_round_trips_images_and_labels(tmp_path):
    images, labels = synthetic_images_and_labels(7, seed=0)
    images_back = fmnist.read_idx(write_gz(tmp_path / "images.gz", idx_bytes(images)))
    labels_back = fmnist.read_idx(write_gz(tmp_path / "labels.gz", idx_bytes(labels)))
    assert images_back.dtype == np.uint8 and images_back.shape == (7, 28, 28)
    np.testing.assert_array_equal(images_back, images)
    np.testing.assert_array_equal(labels_back, labels)
    images_back[0, 0, 0] += 1  # the caller owns an ordinary, writable array


def test_read_idx_reads_uncompressed_files_too(tmp_path):
    images, _ = synthetic_images_and_labels(3, seed=0)
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(idx_bytes(images))
    np.testing.assert_array_equal(fmnist.read_idx(path), images)


def test_read_idx_rejects_a_bad_magic_number(tmp_path):
    path = write_gz(tmp_path / "bad.gz", idx_bytes(np.zeros((2, 28, 28)), magic=0x12345678))
    with pytest.raises(DataNotFoundError, match=r"bad\.gz is corrupt: magic number 0x12345678"):
        fmnist.read_idx(path)


def test_read_idx_rejects_a_wrong_number_of_dimensions(tmp_path):
    # 2-D data (0x802) is valid IDX but neither Fashion-MNIST images (3-D) nor labels (1-D).
    path = write_gz(tmp_path / "flat.gz", idx_bytes(np.zeros((2, 784))))
    with pytest.raises(DataNotFoundError, match="magic number 0x00000802"):
        fmnist.read_idx(path)


def test_read_idx_rejects_dimension_sizes_that_do_not_match_the_bytes(tmp_path):
    images, _ = synthetic_images_and_labels(3, seed=0)
    path = write_gz(tmp_path / "short.gz", idx_bytes(images, shape=(4, 28, 28)))  # header claims one more image
    with pytest.raises(DataNotFoundError, match="short.gz is corrupt: expected 3136 bytes of pixels .* found 2352"):
        fmnist.read_idx(path)


def test_read_idx_rejects_extra_bytes_after_the_data(tmp_path):
    _, labels = synthetic_images_and_labels(5, seed=0)
    path = write_gz(tmp_path / "long.gz", idx_bytes(labels) + b"\x00")
    with pytest.raises(DataNotFoundError, match="expected 5 bytes of labels .* found 6"):
        fmnist.read_idx(path)


def test_read_idx_rejects_a_truncated_header(tmp_path):
    path = write_gz(tmp_path / "header.gz", idx_bytes(np.zeros(5))[:6])
    with pytest.raises(DataNotFoundError, match="header needs 8 bytes, found 6"):
        fmnist.read_idx(path)


def test_read_idx_rejects_a_truncated_gzip_stream(tmp_path):
    images, _ = synthetic_images_and_labels(20, seed=0)
    compressed = gzip.compress(idx_bytes(images))
    path = tmp_path / "truncated.gz"
    path.write_bytes(compressed[: len(compressed) // 2])  # a download that stopped half way
    with pytest.raises(DataNotFoundError, match="truncated.gz is corrupt: its gzip stream is damaged or truncated"):
        fmnist.read_idx(path)


def test_read_idx_on_a_missing_file_says_how_to_get_it(tmp_path):
    with pytest.raises(DataNotFoundError, match="cannot read it .*apt-get install dataset-fashion-mnist"):
        fmnist.read_idx(tmp_path / "missing.gz")


# ---------------------------------------------------------------------------------------------------------------
# Checking, splitting, scaling
# ---------------------------------------------------------------------------------------------------------------

def test_check_images_and_labels_accepts_good_data_and_rejects_bad():
    images, labels = synthetic_images_and_labels(10, seed=0)
    fmnist.check_images_and_labels(images, labels, expected_count=10, name="ok")  # no error
    with pytest.raises(DataNotFoundError, match=r"images have shape \(10, 28, 28\), expected \(60000, 28, 28\)"):
        fmnist.check_images_and_labels(images, labels, expected_count=60000, name="train")
    with pytest.raises(DataNotFoundError, match="labels have shape"):
        fmnist.check_images_and_labels(images, labels[:9], expected_count=10, name="train")
    with pytest.raises(DataNotFoundError, match="expected 0..9"):
        fmnist.check_images_and_labels(images, np.full(10, 10, np.uint8), expected_count=10, name="train")
    with pytest.raises(DataNotFoundError, match="images have shape"):
        fmnist.check_images_and_labels(images[:, :27], labels, expected_count=10, name="train")


def test_train_val_indices_is_a_seeded_partition():
    train, val = fmnist.train_val_indices(100, 0.2, np.random.default_rng(0))
    assert len(train) == 80 and len(val) == 20
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(100))
    train_again, val_again = fmnist.train_val_indices(100, 0.2, np.random.default_rng(0))
    np.testing.assert_array_equal(val, val_again)
    _, val_other = fmnist.train_val_indices(100, 0.2, np.random.default_rng(1))
    assert not np.array_equal(np.sort(val), np.sort(val_other))


@pytest.mark.parametrize("bad_fraction", [0, 1, -0.1, 1.5])
def test_train_val_indices_rejects_fractions_outside_0_1(bad_fraction):
    with pytest.raises(ValueError, match="val_fraction"):
        fmnist.train_val_indices(100, bad_fraction, np.random.default_rng(0))


def test_to_unit_float_scales_to_0_1_with_a_channel_axis():
    images = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    x = fmnist.to_unit_float(images)
    assert x.dtype == np.float32 and x.shape == (1, 1, 2, 2)
    np.testing.assert_allclose(x[0, 0], [[0.0, 1.0], [0.2, 0.4]], rtol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# Finding the folder
# ---------------------------------------------------------------------------------------------------------------

def test_missing_data_gives_one_line_saying_where_we_looked_and_what_to_do(nowhere):
    with pytest.raises(DataNotFoundError) as caught:
        fmnist.find_fmnist_dir()
    message = str(caught.value)
    assert "\n" not in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "python data_scripts/fmnist.py" in message
    for place in ("minimal_data", "home", "debian"):
        assert str(nowhere / place) in message
    with pytest.raises(DataNotFoundError):
        fmnist.load_fmnist()


def test_find_fmnist_dir_search_order(nowhere):
    explicit = nowhere / "explicit"
    in_env = nowhere / "minimal_data" / "fashion-mnist"
    in_cache = nowhere / "home" / ".cache" / "minimal" / "fashion-mnist"
    write_synthetic_fmnist(in_cache)
    assert fmnist.find_fmnist_dir() == str(in_cache)
    write_synthetic_fmnist(in_env)
    assert fmnist.find_fmnist_dir() == str(in_env)
    write_synthetic_fmnist(explicit)
    assert fmnist.find_fmnist_dir(explicit) == str(explicit)


def test_find_fmnist_dir_accepts_files_directly_in_minimal_data(nowhere):
    write_synthetic_fmnist(nowhere / "minimal_data")
    assert fmnist.find_fmnist_dir() == str(nowhere / "minimal_data")


def test_a_folder_with_only_some_files_is_skipped(nowhere):
    folder = nowhere / "minimal_data"
    write_synthetic_fmnist(folder)
    os.remove(folder / fmnist.FILE_NAMES["test_labels"])
    with pytest.raises(DataNotFoundError, match="not found"):
        fmnist.find_fmnist_dir()


# ---------------------------------------------------------------------------------------------------------------
# The whole loader on a tiny synthetic folder (expected counts patched down from 60000 / 10000)
# ---------------------------------------------------------------------------------------------------------------

def test_load_fmnist_on_a_synthetic_folder(nowhere, monkeypatch):
    arrays = write_synthetic_fmnist(nowhere / "minimal_data", n_train=50, n_test=20)
    monkeypatch.setattr(fmnist, "OFFICIAL_COUNTS", {"train": 50, "test": 20})
    data = fmnist.load_fmnist(val_fraction=0.2, seed=3)
    assert (len(data.train), len(data.val), len(data.test)) == (40, 10, 20)
    assert data.info == {"n_train": 40, "n_val": 10, "n_test": 20, "val_fraction": 0.2, "seed": 3}
    assert data.source == str(nowhere / "minimal_data")
    assert data.classes == fmnist.CLASS_NAMES
    test_images, test_labels = arrays["test"]
    np.testing.assert_array_equal(data.test.y, test_labels)
    np.testing.assert_allclose(data.test.x[:, 0] * 255, test_images, atol=1e-4)
    # train + val together are exactly the official training set, each image still with its own label
    train_images, train_labels = arrays["train"]
    pooled_x = np.concatenate([data.train.x, data.val.x])[:, 0]
    pooled_y = np.concatenate([data.train.y, data.val.y])
    order = np.lexsort(pooled_x.reshape(len(pooled_x), -1).T)
    official_order = np.lexsort(train_images.reshape(50, -1).T)
    np.testing.assert_allclose(pooled_x[order] * 255, train_images[official_order], atol=1e-4)
    np.testing.assert_array_equal(pooled_y[order], train_labels[official_order])
    # same seed, same split; another seed, another split
    np.testing.assert_array_equal(fmnist.load_fmnist(val_fraction=0.2, seed=3).val.x, data.val.x)
    assert not np.array_equal(fmnist.load_fmnist(val_fraction=0.2, seed=4).val.x, data.val.x)


def test_load_fmnist_insists_on_the_official_counts(nowhere):
    write_synthetic_fmnist(nowhere / "minimal_data", n_train=50, n_test=20)
    with pytest.raises(DataNotFoundError, match=r"train images have shape \(50, 28, 28\), expected \(60000"):
        fmnist.load_fmnist()


# ---------------------------------------------------------------------------------------------------------------
# The real data
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_data():
    return fmnist.load_fmnist(data_dir=REAL_DIR)


@needs_real_data
def test_real_fmnist_sizes_types_and_ranges(real_data):
    assert (len(real_data.train), len(real_data.val), len(real_data.test)) == (48000, 12000, 10000)
    assert real_data.info["n_train"] == 48000 and real_data.info["n_test"] == 10000
    assert len(real_data.classes) == 10
    for split in (real_data.train, real_data.val, real_data.test):
        assert split.x.shape[1:] == (1, 28, 28) and split.x.dtype == np.float32
        assert split.y.dtype == np.int64
        assert split.x.min() == 0.0 and split.x.max() == 1.0
        assert set(np.unique(split.y)) == set(range(10))


@needs_real_data
def test_real_fmnist_split_depends_on_the_seed_only(real_data):
    again = fmnist.load_fmnist(data_dir=REAL_DIR, seed=0)
    np.testing.assert_array_equal(again.val.y, real_data.val.y)
    np.testing.assert_array_equal(again.val.x[:100], real_data.val.x[:100])
    other = fmnist.load_fmnist(data_dir=REAL_DIR, seed=1)
    assert not np.array_equal(other.val.y, real_data.val.y)
    np.testing.assert_array_equal(other.test.y, real_data.test.y)  # the test set never moves


# ---------------------------------------------------------------------------------------------------------------
# The download script's verification (no network needed)
# ---------------------------------------------------------------------------------------------------------------

def test_data_script_help_works(capsys):
    script = load_data_script()
    with pytest.raises(SystemExit) as caught:
        script.parse_args(["--help"])
    assert caught.value.code == 0
    assert "--out" in capsys.readouterr().out


@needs_real_data
def test_data_script_accepts_the_real_files(tmp_path):
    script = load_data_script()
    payloads = {name: (REAL_DIR / name).read_bytes() for name in script.CONTENT_SHA256}
    paths = script.verify_and_save(payloads, tmp_path)
    assert sorted(os.listdir(tmp_path)) == sorted(payloads)
    for path in paths:
        assert Path(path).read_bytes() == payloads[Path(path).name]


def test_data_script_rejects_altered_bytes_and_writes_nothing(tmp_path):
    script = load_data_script()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    existing = out_dir / "t10k-labels-idx1-ubyte.gz"
    existing.write_bytes(b"an older copy that must survive")
    name = "t10k-labels-idx1-ubyte.gz"
    if HAS_REAL_DATA:
        content = bytearray(gzip.decompress((REAL_DIR / name).read_bytes()))
        content[100] ^= 1   # one flipped bit in one label
    else:
        content = bytearray(idx_bytes(np.zeros(10000)))
    with pytest.raises(script.ChecksumError, match=f"{name}: SHA-256 of its content is"):
        script.verify_and_save({name: gzip.compress(bytes(content))}, out_dir)
    with pytest.raises(script.ChecksumError, match="not a valid gzip file"):
        script.verify_and_save({name: b"<html>404 Not Found</html>"}, out_dir)
    assert os.listdir(out_dir) == [existing.name]
    assert existing.read_bytes() == b"an older copy that must survive"


@needs_real_data
def test_data_script_writes_nothing_if_any_one_file_is_bad(tmp_path):
    script = load_data_script()
    payloads = {name: (REAL_DIR / name).read_bytes() for name in script.CONTENT_SHA256}
    payloads["t10k-images-idx3-ubyte.gz"] = payloads["t10k-images-idx3-ubyte.gz"][:-100]   # truncated download
    with pytest.raises(script.ChecksumError):
        script.verify_and_save(payloads, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_data_script_main_exits_non_zero_with_one_line(tmp_path, monkeypatch, capsys):
    script = load_data_script()
    monkeypatch.setattr(script, "download", lambda name: gzip.compress(b"not the real file"))
    assert script.main(["--out", str(tmp_path / "out")]) == 1
    error_lines = capsys.readouterr().err.strip().splitlines()
    assert len(error_lines) == 1 and "SHA-256" in error_lines[0] and "nothing was written" in error_lines[0]
    assert not (tmp_path / "out").exists()
