"""Tests of the CIFAR-10 loader (minimal/data/cifar10.py) and its download script (data_scripts/cifar10.py).

There is no real CIFAR-10 here: tiny batch files written record by record in the official binary format test the
parser, the loader and the error messages, and a tiny tar.gz laid out like the official archive tests the script.
"""
import hashlib
import importlib.util
import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest

from minimal.data import cifar10
from minimal.data.common import DataNotFoundError

REPO_ROOT = Path(__file__).resolve().parent.parent
PER_FILE = 6   # images per synthetic batch file (the real files have 10 000)


def load_data_script():
    """Import data_scripts/cifar10.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("data_script_cifar10", REPO_ROOT / "data_scripts" / "cifar10.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record(label, image):
    """One record exactly as the CIFAR-10 page describes it: the label byte, then the 1024 red pixels (32 rows
    of 32, row-major), the 1024 green ones, the 1024 blue ones."""
    red, green, blue = image
    return bytes([label]) + red.tobytes() + green.tobytes() + blue.tobytes()


def synthetic_images(n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), (np.arange(n) + seed) % 10


def write_synthetic_cifar10(folder, per_file=PER_FILE):
    """All six batch files; returns {file name: (images, labels)} that were written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for seed, name in enumerate(cifar10.TRAIN_FILES + (cifar10.TEST_FILE,)):
        images, labels = synthetic_images(per_file, seed)
        (folder / name).write_bytes(b"".join(record(int(y), image) for y, image in zip(labels, images)))
        written[name] = (images, labels)
    return written


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    """Point every search location at empty folders, so no real CIFAR-10 can be found."""
    monkeypatch.setenv("MINIMAL_DATA", str(tmp_path / "minimal_data"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


# ---------------------------------------------------------------------------------------------------------------
# Parsing records
# ---------------------------------------------------------------------------------------------------------------

def test_parse_records_reads_label_and_channel_planes():
    image = np.zeros((3, 32, 32), np.uint8)
    image[0, 0, 1] = 10     # red, row 0, column 1
    image[1, 31, 0] = 20    # green, last row, first column
    image[2, 2, 30] = 30    # blue
    raw = record(7, image) + record(2, 255 - image)
    assert len(raw) == 2 * 3073
    images, labels = cifar10.parse_records(raw)
    assert images.dtype == np.uint8 and images.shape == (2, 3, 32, 32) and images.flags.writeable
    assert labels.dtype == np.int64 and labels.tolist() == [7, 2]
    np.testing.assert_array_equal(images[0], image)
    np.testing.assert_array_equal(images[1], 255 - image)
    assert (images[0, 0, 0, 1], images[0, 1, 31, 0], images[0, 2, 2, 30]) == (10, 20, 30)


def test_parse_records_rejects_partial_records_and_bad_labels():
    good = record(1, np.zeros((3, 32, 32), np.uint8))
    with pytest.raises(DataNotFoundError, match="x.bin is corrupt: 3072 bytes is not a whole number of 3073-byte"):
        cifar10.parse_records(good[:-1], name="x.bin")
    with pytest.raises(DataNotFoundError, match="labels go up to 10, expected 0..9"):
        cifar10.parse_records(good + bytes([10]) + good[1:])


def test_read_batch_file_insists_on_10000_images(tmp_path):
    write_synthetic_cifar10(tmp_path)
    with pytest.raises(DataNotFoundError, match=r"data_batch_1.bin holds 6 images, expected 10000"):
        cifar10.read_batch_file(tmp_path / "data_batch_1.bin")


# ---------------------------------------------------------------------------------------------------------------
# Finding the folder
# ---------------------------------------------------------------------------------------------------------------

def test_missing_data_gives_one_line_saying_where_we_looked_and_what_to_do(nowhere):
    with pytest.raises(DataNotFoundError) as caught:
        cifar10.load_cifar10()
    message = str(caught.value)
    assert "\n" not in message and message.startswith("CIFAR-10 not found")
    assert "python data_scripts/cifar10.py" in message and "test_batch.bin" in message
    for place in ("minimal_data", "home"):
        assert str(nowhere / place) in message


def test_search_order_and_incomplete_folders(nowhere):
    in_cache = nowhere / "home" / ".cache" / "minimal" / "cifar-10-batches-bin"
    in_env = nowhere / "minimal_data" / "cifar-10-batches-bin"
    explicit = nowhere / "explicit"
    write_synthetic_cifar10(in_cache)
    assert cifar10.find_cifar10_dir() == str(in_cache)
    write_synthetic_cifar10(in_env)
    assert cifar10.find_cifar10_dir() == str(in_env)
    write_synthetic_cifar10(explicit)
    assert cifar10.find_cifar10_dir(explicit) == str(explicit)
    os.remove(in_env / "test_batch.bin")
    assert cifar10.find_cifar10_dir() == str(in_cache)  # a folder with only some of the files is skipped


# ---------------------------------------------------------------------------------------------------------------
# The loader on a tiny synthetic folder (IMAGES_PER_FILE patched down from 10 000)
# ---------------------------------------------------------------------------------------------------------------

def test_load_cifar10_splits_and_normalises(nowhere, monkeypatch):
    written = write_synthetic_cifar10(nowhere / "minimal_data")
    monkeypatch.setattr(cifar10, "IMAGES_PER_FILE", PER_FILE)
    data = cifar10.load_cifar10(val_fraction=0.1, seed=3)
    assert (len(data.train), len(data.val), len(data.test)) == (27, 3, 6)
    assert data.classes == cifar10.CLASS_NAMES and data.source == str(nowhere / "minimal_data")
    assert data.train.x.dtype == np.float32 and data.train.x.shape == (27, 3, 32, 32)
    assert data.train.y.dtype == np.int64
    # each channel of the training part has mean 0 and std 1; the same transform is applied to val and test
    np.testing.assert_allclose(data.train.x.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(data.train.x.std(axis=(0, 2, 3)), 1, atol=1e-4)
    mean, std = np.array(data.info["channel_mean"]) * 255, np.array(data.info["channel_std"]) * 255
    test_images, test_labels = written["test_batch.bin"]
    np.testing.assert_allclose(data.test.x, (test_images - mean[:, None, None]) / std[:, None, None], atol=1e-4)
    np.testing.assert_array_equal(data.test.y, test_labels)
    # train + val are exactly the 30 training images, each with its own label
    train_images = np.concatenate([written[name][0] for name in cifar10.TRAIN_FILES])
    train_labels = np.concatenate([written[name][1] for name in cifar10.TRAIN_FILES])
    pooled = np.rint(np.concatenate([data.train.x, data.val.x]) * std[:, None, None] + mean[:, None, None])
    pooled_labels = np.concatenate([data.train.y, data.val.y])
    order = np.lexsort(pooled.reshape(30, -1).T)
    official = np.lexsort(train_images.reshape(30, -1).T)
    np.testing.assert_array_equal(pooled[order], train_images[official])
    np.testing.assert_array_equal(pooled_labels[order], train_labels[official])
    # same seed, same split; another seed, another split
    np.testing.assert_array_equal(cifar10.load_cifar10(val_fraction=0.1, seed=3).val.y, data.val.y)
    assert not np.array_equal(cifar10.load_cifar10(val_fraction=0.1, seed=4).val.x, data.val.x)


def test_channel_mean_std_is_exact():
    images = np.random.default_rng(0).integers(0, 256, (7, 3, 5, 4), dtype=np.uint8)
    mean, std = cifar10.channel_mean_std(images)
    np.testing.assert_allclose(mean, images.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, images.std(axis=(0, 2, 3)), rtol=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# The download script (no network: a synthetic archive laid out like cifar-10-binary.tar.gz)
# ---------------------------------------------------------------------------------------------------------------

def write_archive(path, payloads):
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in payloads.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


@pytest.fixture
def synthetic_archive(tmp_path, monkeypatch):
    """A tiny archive; the script's expected size, MD5 and SHA-256 patched to match it."""
    script = load_data_script()
    folder = tmp_path / "batches"
    write_synthetic_cifar10(folder)
    payloads = {name: (folder / name).read_bytes() for name in script.BATCH_FILES}
    payloads["readme.html"] = b"<html>not needed</html>"
    archive = write_archive(tmp_path / "cifar-10-binary.tar.gz", payloads)
    raw = archive.read_bytes()
    monkeypatch.setattr(script, "ARCHIVE_SIZE", len(raw))
    monkeypatch.setattr(script, "ARCHIVE_MD5", hashlib.md5(raw).hexdigest())
    monkeypatch.setattr(script, "ARCHIVE_SHA256", hashlib.sha256(raw).hexdigest())
    monkeypatch.setattr(script, "IMAGES_PER_FILE", PER_FILE)
    return script, archive, payloads


def test_data_script_help_works(capsys):
    with pytest.raises(SystemExit) as caught:
        load_data_script().parse_args(["--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert "--out" in out and "--archive" in out


def test_data_script_checks_the_published_md5():
    assert load_data_script().ARCHIVE_MD5 == "c32a1d4ab5d03f1284b67883e8d87530"


def test_data_script_saves_the_six_files_and_their_sums(synthetic_archive, tmp_path, nowhere, monkeypatch):
    script, archive, payloads = synthetic_archive
    out = tmp_path / "out"
    assert script.main(["--archive", str(archive), "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == sorted(script.BATCH_FILES + (script.SUMS_FILE,))  # no readme, no temp files
    sums = json.loads((out / script.SUMS_FILE).read_text())
    for name in script.BATCH_FILES:
        assert (out / name).read_bytes() == payloads[name]
        assert sums["sha256"][name] == hashlib.sha256(payloads[name]).hexdigest()
    monkeypatch.setattr(cifar10, "IMAGES_PER_FILE", PER_FILE)
    assert len(cifar10.load_cifar10(out).test) == PER_FILE  # the loader reads what the script wrote


def test_data_script_rejects_a_wrong_archive_and_writes_nothing(synthetic_archive, tmp_path, capsys):
    script, archive, payloads = synthetic_archive
    out = tmp_path / "out"
    raw = bytearray(archive.read_bytes())
    raw[-20] ^= 1   # one flipped bit: same size, other checksums
    altered = tmp_path / "altered.tar.gz"
    altered.write_bytes(bytes(raw))
    assert script.main(["--archive", str(altered), "--out", str(out)]) == 1
    error_lines = capsys.readouterr().err.strip().splitlines()
    assert len(error_lines) == 1 and "MD5 is" in error_lines[0] and "nothing was written" in error_lines[0]
    assert not out.exists()


def test_data_script_rejects_an_archive_without_a_batch_or_with_a_short_one(synthetic_archive, tmp_path,
                                                                            monkeypatch):
    script, _, payloads = synthetic_archive
    monkeypatch.setattr(script, "verify_archive", lambda path: None)   # only the content checks here
    without_test = {name: p for name, p in payloads.items() if name != "test_batch.bin"}
    archive = write_archive(tmp_path / "a.tar.gz", without_test)
    with pytest.raises(script.ChecksumError, match="has no cifar-10-batches-bin/test_batch.bin"):
        script.fetch_and_verify(archive)
    short = dict(payloads, **{"data_batch_3.bin": payloads["data_batch_3.bin"][:3073]})
    with pytest.raises(script.ChecksumError, match="data_batch_3.bin holds 1 images, expected 6"):
        script.fetch_and_verify(write_archive(tmp_path / "b.tar.gz", short))
