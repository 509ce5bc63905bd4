"""Verification by interval bound propagation (minimal/robust/ibp.py): the verified-sample rule, verified accuracy
against the clean accuracy, and the command line on a small checkpoint."""
import csv
import json
import os

import numpy as np
import pytest

from minimal import evaluate
from minimal.autodiff import no_grad
from minimal.data.common import Split
from minimal.nn.lsnn import LSNN
from minimal.nn.module import save_checkpoint
from minimal.data.common import fixed_subset
from minimal.robust.ibp import verified_accuracy, verified_mask
from minimal.tasks import TASKS


def test_a_sample_is_verified_only_when_its_lowest_logit_beats_every_other_highest():
    lower = np.array([[2.0, 0.0, 0.0], [2.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    upper = np.array([[3.0, 1.9, 1.0], [3.0, 2.5, 1.0], [3.0, 2.0, 1.0], [1.0, 3.0, 2.5]])
    labels = np.array([0, 0, 0, 1])
    # disjoint: verified; overlapping: not; touching (a tie is possible): not; correct lower 2 < other upper 2.5: not
    assert verified_mask(lower, upper, labels).tolist() == [True, False, False, False]


def test_a_wide_correct_interval_above_all_others_is_verified():
    assert verified_mask(np.array([[5.0, 0.0]]), np.array([[50.0, 4.0]]), np.array([0])).tolist() == [True]


def small_lsnn_and_data(n_samples=12):
    rng = np.random.default_rng(0)
    model = LSNN(rng, 2, 3, num_hidden=12, dtype=np.float64)
    x = 2 * rng.standard_normal((n_samples, 15, 2))
    with no_grad():
        labels = model(x, path="reference").data.argmax(axis=1)  # the model is right on every sample
    labels[:3] = (labels[:3] + 1) % 3                             # … but three
    return model, Split(x, labels)


def test_verified_accuracy_at_zeta_zero_is_the_accuracy_and_falls_with_zeta():
    model, split = small_lsnn_and_data()
    accuracies = [verified_accuracy(model, split, zeta, batch_size=5) for zeta in (0.0, 1e-3, 1e-2, 0.1)]
    assert accuracies[0] == 9 / 12
    assert all(later <= earlier for earlier, later in zip(accuracies, accuracies[1:]))
    assert accuracies[-1] < accuracies[0]


def test_random_subset_is_fixed_ordered_and_balanced_enough():
    split = Split(np.arange(100.0), np.repeat(np.arange(4), 25))  # ordered by class, like the ECG test split
    subset = fixed_subset(split, 20)
    assert len(subset) == 20 and np.all(np.diff(subset.x) > 0)
    assert np.array_equal(subset.x, fixed_subset(split, 20).x)
    assert len(np.unique(subset.y)) == 4
    assert fixed_subset(split, None) is split and fixed_subset(split, 500) is split


@pytest.fixture(scope="module")
def ecg_checkpoint(tmp_path_factory):
    """An ECG LSNN checkpoint: the task's own model at its initial weights (the CLI does not care how good)."""
    folder = str(tmp_path_factory.mktemp("ckpt") / "ecg-tiny")
    model = TASKS["ecg"].build_model(np.random.default_rng(0))
    save_checkpoint(folder, model, {"task": "ecg", "method": "standard", "seed": 0})
    return folder


def test_command_line_prints_the_table_and_writes_csv_json_png(ecg_checkpoint, tmp_path, capsys):
    out = str(tmp_path / "out")
    code = evaluate.main(["ibp", "--checkpoint", ecg_checkpoint, "--zetas", "0", "1e-4", "--max-samples", "30",
                          "--label", "tiny", "--out", out])
    assert code == 0
    printed = capsys.readouterr().out
    assert "tiny" in printed and "ζ = 0.0001" in printed
    with open(os.path.join(out, "ibp.json")) as f:
        record = json.load(f)
    cells = record["verified_accuracy"]["tiny"]
    assert [cell["zeta"] for cell in cells] == [0.0, 1e-4]
    assert cells[1]["verified_accuracy"] <= cells[0]["verified_accuracy"]
    assert os.path.getsize(os.path.join(out, "ibp.png")) > 1000
    assert record["figure"] == "Fig. S9"
    with open(os.path.join(out, "ibp.csv")) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["checkpoint", "ζ = 0", "ζ = 0.0001"]
    assert rows[1] == ["tiny"] + [f"{100 * cell['verified_accuracy']:.1f}" for cell in cells]


def test_ibp_accepts_comma_separated_zetas(ecg_checkpoint, tmp_path):
    assert evaluate.main(["ibp", "--checkpoint", ecg_checkpoint, "--zetas", "0,1e-4", "--max-samples", "5",
                          "--out", str(tmp_path)]) == 0
    with open(os.path.join(tmp_path, "ibp.json")) as f:
        assert json.load(f)["settings"]["zetas"] == [0.0, 1e-4]


def test_missing_checkpoint_is_one_line_and_exit_code_1(tmp_path, capsys):
    assert evaluate.main(["ibp", "--checkpoint", str(tmp_path / "nothing"), "--out", str(tmp_path)]) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "nothing" in error and "not found" in error


def test_bad_arguments_exit_with_code_2(ecg_checkpoint, capsys):
    for argv in (["--checkpoint", ecg_checkpoint, "--zetas", "-1"],
                 ["--checkpoint", ecg_checkpoint, "--label", "a", "--label", "b"],
                 ["--checkpoint", ecg_checkpoint, "--split", "holdout"]):
        with pytest.raises(SystemExit) as exit_info:
            evaluate.main(["ibp", *argv])
        assert exit_info.value.code == 2
