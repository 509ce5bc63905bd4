"""Tests of the ECG loader (embedded beat set, both splits, checksums) and of the script that builds the beat set."""
import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from minimal.data.common import DataNotFoundError
from minimal.data.ecg import (CLASSES, DELAY_SPACING, DELAY_TAPS, EMBEDDED_PATH, ENCODED_CHANNELS, SAME_SUBJECT,
                              delay_line, load_ecg, split_by_beat, split_by_record)
from minimal.io import load_npz, sha256_of_file

REPO_ROOT = Path(__file__).resolve().parent.parent
MITDB = Path(os.environ.get("MINIMAL_MITDB", REPO_ROOT / ".." / "shared" / "data" / "mitdb"))
needs_mitdb = pytest.mark.skipif(not (MITDB / "100.hea").is_file(), reason=f"MIT-BIH records not found in {MITDB}")


def load_build_script():
    """Import data_scripts/ecg_mitbih.py as a module (data_scripts is not a package)."""
    spec = importlib.util.spec_from_file_location("ecg_mitbih", REPO_ROOT / "data_scripts" / "ecg_mitbih.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def beat_split():
    return load_ecg(split="beat", seed=0)


@pytest.fixture(scope="module")
def record_split():
    return load_ecg(split="record", seed=0)


def row_fingerprints(x: np.ndarray) -> set:
    """One bytes object per sample, to compare samples across splits."""
    return {row.tobytes() for row in x}


def test_embedded_file_matches_its_json():
    description = json.loads(EMBEDDED_PATH.with_suffix(".json").read_text())
    assert sha256_of_file(EMBEDDED_PATH) == description["sha256"]
    assert EMBEDDED_PATH.stat().st_size < 10_000_000
    assert description["classes"] == list(CLASSES)


def test_shapes_dtypes_and_classes(beat_split):
    for split in (beat_split.train, beat_split.val, beat_split.test):
        assert split.x.dtype == np.float32 and split.x.shape[1:] == (100, 2)
        assert split.y.dtype == np.int64 and set(np.unique(split.y)) == {0, 1, 2, 3}
    assert beat_split.classes == ("N", "L", "R", "V")
    assert "MIT-BIH" in beat_split.source


def test_beat_split_is_balanced_disjoint_and_80_10_10(beat_split):
    sizes = [len(beat_split.train), len(beat_split.val), len(beat_split.test)]
    for split in (beat_split.train, beat_split.val, beat_split.test):
        assert len(set(np.bincount(split.y).tolist())) == 1
    np.testing.assert_allclose(np.array(sizes) / sum(sizes), [0.8, 0.1, 0.1], atol=0.002)
    train, val, test = (row_fingerprints(split.x) for split in (beat_split.train, beat_split.val, beat_split.test))
    assert len(train) == sizes[0] and not (train & val or train & test or val & test)
    assert beat_split.info["split"] == "beat"
    assert beat_split.info["counts"]["val"] == dict.fromkeys(CLASSES, sizes[1] // 4)


def test_beat_split_indices_partition_the_set():
    y = load_npz(EMBEDDED_PATH)["y"]
    parts = split_by_beat(y, np.random.default_rng(3))
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(len(y)))


def test_record_split_keeps_each_subject_in_one_split(record_split):
    records = [set(record_split.info["records"][name]) for name in ("train", "val", "test")]
    assert not (records[0] & records[1] or records[0] & records[2] or records[1] & records[2])
    for record, same_subject in SAME_SUBJECT.items():
        assert [record in group for group in records] == [same_subject in group for group in records]
    for split in (record_split.train, record_split.val, record_split.test):
        assert len(set(np.bincount(split.y, minlength=4).tolist())) == 1


def test_record_split_indices_come_from_disjoint_records():
    arrays = load_npz(EMBEDDED_PATH)
    parts = split_by_record(arrays["y"].astype(np.int64), arrays["record"].astype(np.int64), np.random.default_rng(5))
    train, val, test = (set(arrays["record"][part].tolist()) for part in parts)
    assert not (train & val or train & test or val & test)


def test_same_seed_same_split_other_seed_other_split(beat_split):
    again = load_ecg(split="beat", seed=0)
    np.testing.assert_array_equal(again.test.x, beat_split.test.x)
    other = load_ecg(split="beat", seed=1)
    assert row_fingerprints(other.test.x) != row_fingerprints(beat_split.test.x)
    assert load_ecg(split="record", seed=0).info["records"] == load_ecg(split="record", seed=0).info["records"]


def test_delay_line_shifts_each_tap_and_pads_with_zeros():
    x = np.arange(12.0).reshape(1, 6, 2)             # 6 steps, 2 leads: x[0, t] = (2t, 2t + 1)
    delayed = delay_line(x, taps=3, spacing=2)
    assert delayed.shape == (1, 6, 6)
    np.testing.assert_array_equal(delayed[0, :, 0:2], x[0])
    np.testing.assert_array_equal(delayed[0, :, 2:4], [[0, 0], [0, 0], [0, 1], [2, 3], [4, 5], [6, 7]])
    np.testing.assert_array_equal(delayed[0, :, 4:6], [[0, 0]] * 4 + [[0, 1], [2, 3]])
    np.testing.assert_array_equal(delay_line(x, taps=1, spacing=2), x)
    with pytest.raises(ValueError, match="does not fit 6 steps"):
        delay_line(x, taps=4, spacing=2)


def test_ecg_task_feeds_the_delay_line_to_a_network_with_as_many_inputs(beat_split):
    from minimal.tasks import TASKS
    data = TASKS["ecg"].load_data(None, 0)
    assert DELAY_TAPS > 1 and data.train.x.shape[1:] == (100, ENCODED_CHANNELS) == (100, 2 * DELAY_TAPS)
    for k in range(DELAY_TAPS):
        shift = k * DELAY_SPACING
        np.testing.assert_array_equal(data.test.x[:, shift:, 2 * k:2 * k + 2], beat_split.test.x[:, :100 - shift])
        assert np.all(data.test.x[:, :shift, 2 * k:2 * k + 2] == 0)
    np.testing.assert_array_equal(data.test.y, beat_split.test.y)
    assert TASKS["ecg"].build_model(np.random.default_rng(0)).w_in.shape == (ENCODED_CHANNELS, 256)


def test_unknown_split_kind():
    with pytest.raises(ValueError, match="beat, record"):
        load_ecg(split="patient")


def test_corrupt_or_missing_file(tmp_path):
    copy = tmp_path / "ecg.npz"
    shutil.copy(EMBEDDED_PATH, copy)
    shutil.copy(EMBEDDED_PATH.with_suffix(".json"), copy.with_suffix(".json"))
    payload = bytearray(copy.read_bytes())
    payload[len(payload) // 2] ^= 0xFF
    copy.write_bytes(bytes(payload))
    with pytest.raises(DataNotFoundError, match="corrupt \\(checksum mismatch\\); rebuild with"):
        load_ecg(copy)
    with pytest.raises(DataNotFoundError, match="not found"):
        load_ecg(tmp_path / "nothing.npz")


@needs_mitdb
def test_build_script_on_three_records(tmp_path):
    script = load_build_script()
    beats = script.extract_all_beats(MITDB, records=(100, 109, 118))
    x, y = beats["x"], beats["y"]
    assert x.dtype == np.float32 and x.shape == (len(y), 100, 2)
    assert np.bincount(y, minlength=4).tolist() == [2237, 2491, 2165, 55]  # N 2239, L 2492, R 2166 minus edge beats
    np.testing.assert_allclose(x.mean(axis=1), 0, atol=1e-5)  # every window has zero mean per channel
    mean_normal_beat = x[(y == 0), :, 0].mean(axis=0)
    assert abs(int(np.argmax(np.abs(mean_normal_beat))) - 50) <= 3  # the R peak sits in the middle

    balanced = script.balance_beats(beats, seed=0)
    assert np.bincount(balanced["y"]).tolist() == [55, 55, 55, 55]
    out = tmp_path / "small.npz"
    script.save_beat_set(balanced, {}, seed=0, out_path=out)
    data = load_ecg(out, split="beat")
    assert data.info["counts"]["train"] == dict.fromkeys(CLASSES, 44)
    restored = np.concatenate([data.train.x, data.val.x, data.test.x])
    assert np.abs(np.sort(restored, axis=None) - np.sort(balanced["x"], axis=None)).max() <= script.X_SCALE / 2


@needs_mitdb
def test_build_script_checksums_accept_the_shared_records():
    script = load_build_script()
    assert len(script.RECORDS) == 48 and len(script.RAW_SHA256) == 144
    script.verify_raw_files(MITDB)


@needs_mitdb
def test_build_script_hashes_headers_with_either_line_ending(tmp_path):
    script = load_build_script()
    crlf_header = tmp_path / "100.hea"
    crlf_header.write_bytes((MITDB / "100.hea").read_bytes().replace(b"\n", b"\r\n"))
    assert script.raw_file_sha256(crlf_header) == script.RAW_SHA256["100.hea"]
