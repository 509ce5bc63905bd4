"""The evaluation CLI: Table 1 formatting, the mismatch/attack/landscape/membrane numbers on tiny trained models,
every subcommand end to end on checkpoints trained here, and the error paths (exit codes 1 and 2)."""
import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from minimal import evaluate, train as train_module
from minimal.cli import EXIT_ERROR
from minimal.evaluate import attack as evaluation_attack
from minimal.evaluate import cells as evaluation_cells
from minimal.evaluate import landscape as evaluation_landscape
from minimal.evaluate.common import format_cell
from minimal.evaluate.mismatch import table1_rows
from minimal.io import format_table, load_npz
from minimal.robust import attack as robust_attack
from minimal.robust import landscape as robust_landscape
from minimal.robust import mismatch as robust_mismatch
from minimal.data.common import DataNotFoundError, Split, TaskData, fixed_subset
from minimal.metrics import accuracy, mean_cross_entropy
from minimal.nn.cnn import CNN
from minimal.nn.lsnn import LSNN
from minimal.optim import Adam
from minimal.robust.methods import standard
from minimal.tasks import TASKS, Task


# ---------------------------------------------------------------------------------------------------- tiny tasks
def bars(seed, n):
    """Three classes of 10×10 images, told apart by the row of a bright bar."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 0.3, (n, 1, 10, 10)).astype(np.float32)
    for i, label in enumerate(y):
        x[i, 0, 3 * label:3 * label + 3, 2:8] += 2
    return Split(x, y)


def bar_data(data_dir, seed):
    return TaskData(bars(seed, 240), bars(seed + 100, 60), bars(seed + 200, 90), ("a", "b", "c"), "synthetic bars")


def tiny_cnn(rng):
    """The paper's CNN, shrunk to 10×10 images, 3 channels and 3 classes."""
    return CNN(rng, channels=3, kernel_size=3, hidden=(8, 6), num_classes=3, image_size=10)


def pulse_data(data_dir, seed):
    """Two-channel sequences of 20 steps whose class sets the channels' mean."""
    rng = np.random.default_rng(seed)

    def split(n):
        y = rng.integers(0, 3, n)
        means = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.float32)[y]
        return Split((means[:, None, :] + rng.normal(0, 0.5, (n, 20, 2))).astype(np.float32), y)
    return TaskData(split(60), split(30), split(40), ("a", "b", "c"), "synthetic pulses")


def tiny_lsnn(rng):
    return LSNN(rng, num_inputs=2, num_classes=3, num_hidden=16)


def missing_data(data_dir, seed):
    raise DataNotFoundError("tiny data not found in nowhere; run `make-data`")


TINY_TASKS = {
    "tiny-cnn": Task("tiny-cnn", "bars", bar_data, tiny_cnn, epochs=3, lr=0.01, lr_drop_epoch=None, batch_size=30),
    "tiny-lsnn": Task("tiny-lsnn", "pulses", pulse_data, tiny_lsnn, epochs=1, lr=0.01, lr_drop_epoch=None,
                      batch_size=20),
    "no-data": Task("no-data", "missing", missing_data, tiny_cnn, epochs=1, lr=0.01, lr_drop_epoch=None),
}


@pytest.fixture(scope="module", autouse=True)
def tiny_tasks():
    with pytest.MonkeyPatch.context() as patch:
        for name, task in TINY_TASKS.items():
            patch.setitem(TASKS, name, task)
        yield


def train_checkpoint(folder, task, method="standard", seed=0):
    args = train_module.build_parser().parse_args(["--task", task, "--method", method, "--seed", str(seed),
                                                   "--out", str(folder)])
    return train_module.train(train_module.resolve_settings(args), log=lambda *_: None)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Folders of a tiny CNN (two seeds) and a tiny LSNN, trained once for the whole module."""
    root = tmp_path_factory.mktemp("checkpoints")
    for name, task, seed in [("cnn0", "tiny-cnn", 0), ("cnn1", "tiny-cnn", 1), ("lsnn", "tiny-lsnn", 0)]:
        train_checkpoint(root / name, task, seed=seed)
    return root


def trained_cnn():
    model, data = tiny_cnn(np.random.default_rng(0)), bar_data(None, 0)
    optimizer = Adam(model.parameters(), lr=0.01)
    for _ in range(30):
        standard(model, data.train.x, data.train.y, None, {})
        optimizer.step()
    return model.eval(), data


# ---------------------------------------------------------------------------------------------------- Table 1
def test_table1_cells_and_layout():
    summarise = robust_mismatch.summarise
    summaries = {"standard seed 0": {0.0: summarise([0.9188]), 0.1: summarise([0.9, 0.92, 0.94])},
                 "beta": {0.0: summarise([0.5]), 0.1: summarise([0.25, 0.75])}}
    rows = table1_rows(summaries, [0.0, 0.1])
    assert rows == [["checkpoint", "ζ = 0", "ζ = 0.1"],
                    ["standard seed 0", "91.88 ± 0.00 (91.88)", "92.00 ± 1.63 (90.00)"],
                    ["beta", "50.00 ± 0.00 (50.00)", "50.00 ± 25.00 (25.00)"]]
    assert format_table(rows) == (
        "checkpoint       ζ = 0                 ζ = 0.1\n"
        "standard seed 0  91.88 ± 0.00 (91.88)  92.00 ± 1.63 (90.00)\n"
        "beta             50.00 ± 0.00 (50.00)  50.00 ± 25.00 (25.00)")


def test_mismatch_statistics_of_stubbed_draws(monkeypatch):
    model, data = trained_cnn()
    scores, seen = iter([0.5, 0.7, 0.9, 0.6]), []

    def stub_accuracy(model, split, batch_size, params):
        seen.append(params)
        return next(scores)
    monkeypatch.setattr(robust_mismatch, "accuracy", stub_accuracy)
    accuracies = robust_mismatch.mismatch_accuracies(model, data.test, 0.3, 4, np.random.default_rng(0))
    np.testing.assert_array_equal(accuracies, [0.5, 0.7, 0.9, 0.6])
    assert format_cell(robust_mismatch.summarise(accuracies)) == "67.50 ± 14.79 (50.00)"  # std with ddof 0
    assert len(seen) == 4 and not np.array_equal(seen[0]["fc1.weight"], seen[1]["fc1.weight"])  # 4 distinct chips


def test_mismatch_at_zeta_zero_is_one_draw_with_the_clean_accuracy():
    model, data = trained_cnn()
    accuracies = robust_mismatch.mismatch_accuracies(model, data.test, 0.0, 100, np.random.default_rng(0), batch_size=7)
    assert accuracies.tolist() == [accuracy(model, data.test)]
    noisy = robust_mismatch.mismatch_accuracies(model, data.test, 0.5, 5, np.random.default_rng(0))
    assert noisy.shape == (5,) and len(set(noisy.tolist())) > 1


def test_max_samples_takes_the_same_subset_of_every_class():
    sorted_split = Split(np.arange(100, dtype=np.float32), np.repeat(np.arange(4), 25))  # sorted by class, as ECG
    subset = fixed_subset(sorted_split, 20)
    assert len(subset) == 20 and set(subset.y) == {0, 1, 2, 3} and np.all(np.diff(subset.x) > 0)
    np.testing.assert_array_equal(subset.x, fixed_subset(sorted_split, 20).x)
    assert fixed_subset(sorted_split, None) is sorted_split


# ---------------------------------------------------------------------------------------------------- attack
def test_pga_attack_lowers_accuracy_more_than_a_random_perturbation():
    model, data = trained_cnn()
    clean = accuracy(model, data.test)
    attacked = {attack: robust_attack.attacked_accuracy(model, data.test, attack, 0.2, np.random.default_rng(0), 30)
                for attack in robust_attack.ATTACKS}
    assert clean > 0.95
    assert attacked["pga-ce"] < attacked["random"] - 0.2
    assert attacked["pga-kl"] < attacked["random"] - 0.1
    assert robust_attack.attacked_accuracy(model, data.test, "pga-ce", 0.0, np.random.default_rng(0)) == clean


# ---------------------------------------------------------------------------------------------------- landscape
def test_landscape_at_alpha_zero_is_the_clean_loss():
    model, data = trained_cnn()
    direction = robust_landscape.random_direction(model, 0.2, np.random.default_rng(0))
    losses = robust_landscape.loss_along(model, data.test, direction, np.array([-1.0, 0.0, 1.0]))
    assert losses[1] == pytest.approx(mean_cross_entropy(model, data.test), rel=1e-6)
    assert losses[0] > losses[1] and losses[2] > losses[1]


def test_landscape_slope_is_mean_absolute_difference_over_spacing():
    alphas = np.linspace(-2, 2, 5)
    assert robust_landscape.landscape_slope(alphas, alphas ** 2) == pytest.approx(2.0)  # |Δ| = 3, 1, 1, 3; Δα = 1
    slope = robust_landscape.landscape_slope(np.array([0, 0.5, 1, 1.5]), np.array([1, 2, 1.5, 1.5]))
    assert slope == pytest.approx(1.0)
    assert robust_landscape.landscape_slope(alphas, np.full(5, 0.3)) == 0.0


# ---------------------------------------------------------------------------------------------------- CLI
def read_json(path):
    return json.loads(path.read_text())


def assert_outputs(folder, name):
    for suffix in (".csv", ".json", ".png"):
        assert (folder / (name + suffix)).stat().st_size > 0
    assert (folder / (name + ".png")).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_mismatch_two_checkpoints(checkpoints, tmp_path, capsys):
    out = tmp_path / "mismatch"
    code = evaluate.main(["mismatch", "--checkpoint", str(checkpoints / "cnn0"), "--checkpoint",
                          str(checkpoints / "cnn1"), "--zetas", "0.3", "0", "--draws", "3", "--out", str(out)])
    assert code == 0
    assert_outputs(out, "mismatch")
    printed = capsys.readouterr().out
    assert "standard seed 0" in printed and "standard seed 1" in printed and "s per draw" in printed
    record = read_json(out / "mismatch.json")
    assert record["zetas"] == [0.0, 0.3]
    for entry in record["checkpoints"]:
        clean, noisy = entry["results"]
        meta = read_json(checkpoints / ("cnn" + str(entry["seed"])) / "meta.json")
        assert clean["accuracies"] == [meta["test_acc"]] and clean["std"] == 0  # ζ = 0: Θ itself
        assert len(noisy["accuracies"]) == 3
    header, *rows = list(csv.reader((out / "mismatch.csv").read_text().splitlines()))
    assert header == ["checkpoint", "draws", "mean ζ = 0", "std ζ = 0", "min ζ = 0", "mean ζ = 0.3", "std ζ = 0.3",
                      "min ζ = 0.3"]
    for row, entry in zip(rows, record["checkpoints"]):               # numbers, one per column, as in the JSON
        assert row[0] == entry["label"] and int(row[1]) == 3
        noisy = entry["results"][1]
        np.testing.assert_allclose([float(cell) for cell in row[5:]], [noisy["mean"], noisy["std"], noisy["min"]],
                                   atol=1e-4)
    markdown = (out / "mismatch.md").read_text().splitlines()       # the printed table, for docs/results.md
    assert markdown[0] == "| checkpoint | ζ = 0 | ζ = 0.3 |" and " ± " in markdown[2]
    u_test = (out / "mismatch_u_test.csv").read_text().splitlines()
    assert u_test[0] == "pair,ζ = 0.3" and u_test[1].startswith("standard seed 0 vs standard seed 1,")
    assert "Mann–Whitney U test" in printed


def test_cli_mismatch_pool_puts_the_draws_of_model_instances_together(checkpoints, tmp_path, capsys):
    """--pool: checkpoints sharing a label (two seeds of one method) are one row of Table 1 whose draws are
    both instances' draws; without --pool the same labels are refused."""
    common = ["mismatch", "--checkpoint", str(checkpoints / "cnn0"), "--checkpoint", str(checkpoints / "cnn1"),
              "--zetas", "0", "0.3", "--draws", "3"]
    assert evaluate.main(common + ["--out", str(tmp_path / "apart")]) == 0
    assert evaluate.main(common + ["--pool", "--out", str(tmp_path / "pooled")]) == 0
    apart = read_json(tmp_path / "apart" / "mismatch.json")
    pooled = read_json(tmp_path / "pooled" / "mismatch.json")
    assert [row["label"] for row in pooled["table"]] == ["standard"]            # the default label: the method
    assert pooled["table"][0]["folders"] == [str(checkpoints / "cnn0"), str(checkpoints / "cnn1")]
    for zeta_index, zeta in enumerate([0.0, 0.3]):
        draws = np.concatenate([entry["results"][zeta_index]["accuracies"] for entry in apart["checkpoints"]])
        row = pooled["table"][0]["results"][zeta_index]
        assert row["zeta"] == zeta and row["draws"] == len(draws) == (2 if zeta == 0 else 6)
        assert row["mean"] == pytest.approx(100 * draws.mean()) and row["std"] == pytest.approx(100 * draws.std())
        assert row["min"] == pytest.approx(100 * draws.min())
    assert (tmp_path / "pooled" / "mismatch.csv").read_text().splitlines()[1].startswith("standard,")
    capsys.readouterr()
    same_labels = ["--label", "net", "--label", "net", "--out", str(tmp_path / "refused")]
    assert evaluate.main(common + same_labels) == EXIT_ERROR
    assert "labelled 'net'" in capsys.readouterr().err


def test_u_test_of_the_draws():
    rng = np.random.default_rng(0)
    low, high = rng.uniform(0.5, 0.6, 100), rng.uniform(0.7, 0.8, 100)
    accuracies = {"a": {0.0: np.array([0.9]), 0.5: low}, "b": {0.0: np.array([0.9]), 0.5: high},
                  "c": {0.0: np.array([0.9]), 0.5: low.copy()}}
    tests = robust_mismatch.u_test_p_values(accuracies, [0.0, 0.5])
    assert [(first, second, zeta) for first, second, zeta, _ in tests] == [("a", "b", 0.5), ("a", "c", 0.5),
                                                                           ("b", "c", 0.5)]
    p = {(first, second): p_value for first, second, _, p_value in tests}
    assert p["a", "b"] < 1e-30 and p["b", "c"] == p["a", "b"]     # no overlap at all: far below the paper's 2e-8
    assert p["a", "c"] == pytest.approx(1.0)                       # the same draws
    shifted = {"a": {0.5: low}, "b": {0.5: low + 0.002}}            # overlapping: not significant
    assert robust_mismatch.u_test_p_values(shifted, [0.5])[0][3] > 0.05


def test_cli_mismatch_jobs_give_the_same_table(checkpoints, tmp_path):
    """--jobs 2 evaluates the cells in two single-threaded processes: every draw's accuracy is the same."""
    common = ["mismatch", "--checkpoint", str(checkpoints / "cnn0"), "--checkpoint", str(checkpoints / "cnn1"),
              "--zetas", "0", "0.3", "0.5", "--draws", "2"]
    environment = dict(os.environ)
    assert evaluate.main(common + ["--out", str(tmp_path / "one")]) == 0
    assert evaluate.main(common + ["--jobs", "2", "--out", str(tmp_path / "two")]) == 0
    assert dict(os.environ) == environment                  # the children's thread settings are not left behind
    one, two = (read_json(tmp_path / name / "mismatch.json")["checkpoints"] for name in ("one", "two"))
    assert [[r["accuracies"] for r in c["results"]] for c in one] == [[r["accuracies"] for r in c["results"]]
                                                                     for c in two]


def counting_timed_mismatch(monkeypatch):
    """Replace cells.timed_mismatch by itself plus a list of the (label, ζ) cells it computes."""
    computed, original = [], evaluation_cells.timed_mismatch

    def counted(checkpoint, zeta, args):
        computed.append((checkpoint.label, zeta))
        return original(checkpoint, zeta, args)
    monkeypatch.setattr(evaluation_cells, "timed_mismatch", counted)
    return computed


def noisy_accuracies(out):
    """ζ -> the accuracies of every draw, for the first checkpoint of a mismatch.json."""
    return {r["zeta"]: r["accuracies"] for r in read_json(out / "mismatch.json")["checkpoints"][0]["results"]}


def test_cli_mismatch_computes_each_cell_once(checkpoints, tmp_path, monkeypatch, capsys):
    """Finished cells are kept in mismatch_cells.json: a second run with one more ζ computes only that column,
    other draws or a retrained checkpoint (other weights in model.npz) are computed again, the same weights with
    a new modification time (a fresh clone) are not."""
    out, folder = tmp_path / "mismatch", tmp_path / "cnn0"
    shutil.copytree(checkpoints / "cnn0", folder)
    common = ["mismatch", "--checkpoint", str(folder), "--out", str(out)]
    computed = counting_timed_mismatch(monkeypatch)
    assert evaluate.main(common + ["--zetas", "0", "0.3", "--draws", "3"]) == 0
    first = noisy_accuracies(out)
    assert evaluate.main(common + ["--zetas", "0", "0.3", "0.5", "--draws", "3"]) == 0
    assert "2 of 3 cells already computed" in capsys.readouterr().out
    assert noisy_accuracies(out)[0.3] == first[0.3] and len(noisy_accuracies(out)[0.5]) == 3
    record = read_json(out / "mismatch.json")
    assert record["cell_seconds"] == pytest.approx(sum(r["seconds_per_draw"] * len(r["accuracies"])
                                                       for r in record["checkpoints"][0]["results"]), abs=0.1)
    assert computed == [("standard seed 0", 0.0), ("standard seed 0", 0.3), ("standard seed 0", 0.5)]
    computed.clear()
    assert evaluate.main(common + ["--zetas", "0.3", "--draws", "4"]) == 0        # other draws: a new cell
    weights = folder / "model.npz"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))   # a fresh clone
    assert evaluate.main(common + ["--zetas", "0.3", "--draws", "4"]) == 0
    assert computed == [("standard seed 0", 0.3)]
    arrays = load_npz(weights)
    arrays[next(iter(arrays))] *= 1.01
    np.savez(weights, **arrays)                                                           # retrained
    assert evaluate.main(common + ["--zetas", "0.3", "--draws", "4"]) == 0
    assert computed == [("standard seed 0", 0.3)] * 2


def test_cli_mismatch_sets_aside_an_unreadable_cell_file(checkpoints, tmp_path, capsys):
    out = tmp_path / "mismatch"
    out.mkdir()
    (out / "mismatch_cells.json").write_text('{"truncated')
    code = evaluate.main(["mismatch", "--checkpoint", str(checkpoints / "cnn0"), "--zetas", "0.3", "--draws", "2",
                          "--out", str(out)])
    assert code == 0 and len(noisy_accuracies(out)[0.3]) == 2
    assert "could not read" in capsys.readouterr().err
    assert (out / "mismatch_cells.json.unreadable").read_text() == '{"truncated'
    assert len(read_json(out / "mismatch_cells.json")) == 1


def test_cli_attack(checkpoints, tmp_path):
    out = tmp_path / "attack"
    code = evaluate.main(["attack", "--checkpoint", str(checkpoints / "cnn0"), "--label", "Standard", "--zetas", "0",
                          "0.3", "--attack-steps", "3", "--batch-size", "45", "--out", str(out)])
    assert code == 0
    assert_outputs(out, "attack")
    results = read_json(out / "attack.json")["checkpoints"][0]["results"]
    assert [(r["attack"], r["zeta"]) for r in results] == [(a, z) for a in robust_attack.ATTACKS for z in (0.0, 0.3)]
    assert len({r["mean"] for r in results if r["zeta"] == 0}) == 1  # no attack at ζ = 0: the clean accuracy


def attack_means(out):
    """(attack, ζ) -> mean accuracy, for the first checkpoint of an attack.json."""
    return {(r["attack"], r["zeta"]): r["mean"] for r in read_json(out / "attack.json")["checkpoints"][0]["results"]}


def test_cli_attack_computes_each_cell_once(checkpoints, tmp_path, monkeypatch, capsys):
    """Finished cells are kept in attack_cells.json: a second run with one more ζ attacks only that column, and
    gives what a run of that column alone gives; other attack settings are computed again."""
    computed, original = [], evaluation_attack.attacked_accuracy

    def counted(model, split, attack, zeta, *rest):
        computed.append((attack, zeta))
        return original(model, split, attack, zeta, *rest)
    monkeypatch.setattr(evaluation_attack, "attacked_accuracy", counted)
    common = ["attack", "--checkpoint", str(checkpoints / "cnn0"), "--attacks", "pga-ce", "random",
              "--attack-steps", "2", "--batch-size", "45"]
    out = tmp_path / "attack"
    assert evaluate.main(common + ["--zetas", "0", "0.3", "--out", str(out)]) == 0
    first = attack_means(out)
    assert evaluate.main(common + ["--zetas", "0", "0.3", "0.5", "--out", str(out)]) == 0
    assert "4 of 6 cells already computed" in capsys.readouterr().out
    assert computed[4:] == [("pga-ce", 0.5), ("random", 0.5)]
    record = read_json(out / "attack.json")
    assert (record["cells"], record["cells_computed_here"]) == (6, 2)      # what the report's wall time covers
    assert all(attack_means(out)[cell] == mean for cell, mean in first.items())
    assert evaluate.main(common + ["--zetas", "0.5", "--out", str(tmp_path / "alone")]) == 0
    assert attack_means(tmp_path / "alone") == {cell: mean for cell, mean in attack_means(out).items()
                                                if cell[1] == 0.5}
    computed.clear()
    assert evaluate.main(common[:-3] + ["3", "--batch-size", "45", "--zetas", "0.5", "--out", str(out)]) == 0
    assert computed == [("pga-ce", 0.5), ("random", 0.5)]                 # 3 PGA steps: new cells


def test_cli_attack_figure_by_checkpoint(checkpoints, tmp_path):
    """Fig. S5c/d, S8: the same results drawn as a panel per checkpoint, a line per attack."""
    out = tmp_path / "attack"
    cnn = str(checkpoints / "cnn0")
    code = evaluate.main(["attack", "--checkpoint", cnn, "--checkpoint", cnn, "--label", "a", "--label", "b",
                          "--zetas", "0", "0.3", "--attacks", "pga-kl", "random", "--attack-steps", "2",
                          "--max-samples", "45", "--figure", "by-checkpoint", "--out", str(out)])
    assert code == 0
    assert_outputs(out, "attack")
    assert read_json(out / "attack.json")["figure"] == "Fig. S5c/d, S8"


def test_cli_landscape(checkpoints, tmp_path, capsys):
    out = tmp_path / "landscape"
    code = evaluate.main(["landscape", "--checkpoint", str(checkpoints / "cnn0"), "--repeats", "2", "--num-alphas",
                          "5", "--out", str(out)])
    assert code == 0
    assert_outputs(out, "landscape")
    entry = read_json(out / "landscape.json")["checkpoints"][0]
    assert np.array(entry["losses"]).shape == (2, 5) and len(entry["slopes"]) == 2
    assert "Table S1" in capsys.readouterr().out
    table = (out / "landscape.csv").read_text().splitlines()
    assert table[0] == "checkpoint,slope (mean ± std),loss at α = 0"
    assert table[1].startswith(f"standard seed 0,{entry['slope_mean']:.4f} ± ")
    curves = (out / "landscape_curves.csv").read_text().splitlines()
    assert len(curves) == 3 and curves[0].startswith("checkpoint,direction,α = -2")


def test_cli_landscape_computes_each_curve_once(checkpoints, tmp_path, monkeypatch, capsys):
    """Finished curves are kept in landscape_cells.json: a third direction computes only itself, and its curve is
    the one a fresh run gives; another α grid is computed again."""
    computed, original = [], evaluation_landscape.loss_along

    def counted(*arguments, **options):
        computed.append(options["desc"])
        return original(*arguments, **options)
    monkeypatch.setattr(evaluation_landscape, "loss_along", counted)
    common = ["landscape", "--checkpoint", str(checkpoints / "cnn0"), "--max-samples", "40", "--num-alphas", "3"]
    out = tmp_path / "landscape"
    assert evaluate.main(common + ["--repeats", "2", "--out", str(out)]) == 0
    assert evaluate.main(common + ["--repeats", "3", "--out", str(out)]) == 0
    assert "2 of 3 cells already computed" in capsys.readouterr().out
    assert computed == ["standard seed 0, direction 1/2", "standard seed 0, direction 2/2",
                        "standard seed 0, direction 3/3"]
    record = read_json(out / "landscape.json")
    assert (record["cells"], record["cells_computed_here"]) == (3, 1)
    assert evaluate.main(common + ["--repeats", "3", "--out", str(tmp_path / "fresh")]) == 0
    losses = [read_json(folder / "landscape.json")["checkpoints"][0]["losses"] for folder in (out, tmp_path / "fresh")]
    assert losses[0] == losses[1]
    computed.clear()
    assert evaluate.main(common[:-1] + ["5", "--repeats", "1", "--out", str(out)]) == 0
    assert computed == ["standard seed 0, direction 1/1"]


def test_cli_membrane_needs_an_lsnn(checkpoints, tmp_path, capsys):
    out = tmp_path / "membrane"
    assert evaluate.main(["membrane", "--checkpoint", str(checkpoints / "lsnn"), "--out", str(out)]) == 0
    assert_outputs(out, "membrane")
    record = read_json(out / "membrane.json")
    entry, edges = record["checkpoints"][0], np.array(record["bin_edges"])
    assert sum(entry["density"] * np.diff(edges)) == pytest.approx(1 - entry["outside"])
    # the default range comes from the data: it keeps all but about 1 % of the values in view (it hid 78 % once)
    assert entry["outside"] < 0.03 and edges[0] <= -1 and edges[-1] >= 1
    assert evaluate.main(["membrane", "--checkpoint", str(checkpoints / "lsnn"), "--range", "-6", "6", "--out",
                          str(out)]) == 0
    assert read_json(out / "membrane.json")["bin_edges"][0] == -6
    capsys.readouterr()
    assert evaluate.main(["membrane", "--checkpoint", str(checkpoints / "cnn0"), "--out", str(out)]) == 1
    assert "need an LSNN" in capsys.readouterr().err


def test_every_subcommand_is_registered_alike():
    """ibp is a subcommand like the others (it was handed over to a parser of its own)."""
    subcommands = evaluate.build_parser()._subparsers._group_actions[0].choices
    assert list(subcommands) == ["mismatch", "attack", "landscape", "membrane", "pcm", "ibp", "history"]
    for name, parser in subcommands.items():
        if name == "history":                       # reads meta.json only: no data, no split, no batches
            continue
        options = {option for action in parser._actions for option in action.option_strings}
        assert {"--checkpoint", "--label", "--split", "--out", "--max-samples", "--batch-size"} <= options, name


def broken_checkpoints(folder, checkpoints):
    """name -> a checkpoint folder that cannot be evaluated."""
    cases = {"missing": folder / "nothing-here"}
    for name in ("corrupt", "unknown-task", "no-data"):
        cases[name] = folder / name
        cases[name].mkdir()
        (cases[name] / "model.npz").write_bytes((checkpoints / "cnn0" / "model.npz").read_bytes())
        (cases[name] / "meta.json").write_text((checkpoints / "cnn0" / "meta.json").read_text())
    (cases["corrupt"] / "model.npz").write_bytes(b"PK\x03\x04 not really a zip file")
    for name, task in (("unknown-task", "chess"), ("no-data", "no-data")):
        meta = read_json(cases[name] / "meta.json")
        (cases[name] / "meta.json").write_text(json.dumps({**meta, "task": task}))
    return cases


@pytest.mark.parametrize("case, message", [("missing", "cannot read checkpoint"), ("corrupt", "cannot read checkpoint"),
                                           ("unknown-task", "task 'chess'"), ("no-data", "tiny data not found")])
def test_unusable_checkpoint_or_data_is_one_line_and_exit_1(case, message, checkpoints, tmp_path, capsys):
    folder = broken_checkpoints(tmp_path, checkpoints)[case]
    code = evaluate.main(["mismatch", "--checkpoint", str(folder), "--out", str(tmp_path / "out")])
    error = capsys.readouterr().err
    assert code == 1 and error.startswith("error:") and message in error and len(error.splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["mismatch", "--checkpoint", "a", "--zetas", "-1"], "must be a number ≥ 0"),
    (["mismatch", "--checkpoint", "a", "--draws", "0"], "must be a positive integer"),
    (["attack", "--checkpoint", "a", "--attacks", "magic"], "invalid choice: 'magic'"),
    (["landscape", "--checkpoint", "a", "--checkpoint", "b", "--label", "x"], "one --label per --checkpoint"),
    (["membrane", "--checkpoint", "a", "--range", "3", "1"], "LOW < HIGH"),
    (["landscape", "--checkpoint", "a", "--num-alphas", "1"], "at least 2"),
    (["mismatch", "--checkpoint", "a", "--bogus"], "unrecognized arguments: --bogus"),
    (["mismatch"], "--checkpoint"),
    (["mismatch", "--checkpoint", "a", "--noise", "pink"], "invalid choice: 'pink'"),
    (["pcm", "--checkpoint", "a", "--times", "25,soon"], "invalid value 'soon'"),
    (["pcm", "--checkpoint", "a", "--times=-5,25"], "≥ 0"),
    (["transmogrify"], "invalid choice"),
])
def test_bad_arguments_exit_2_with_one_line(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(args)
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in error and len(error.strip().splitlines()) == 1


def test_command_line_exit_codes(tmp_path):
    run = [sys.executable, "-m", "minimal.evaluate", "mismatch", "--checkpoint", str(tmp_path / "none")]
    missing = subprocess.run(run, capture_output=True, text=True, timeout=120)
    bad = subprocess.run(run + ["--split", "holdout"], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and len(missing.stderr.strip().splitlines()) == 1
    assert bad.returncode == 2 and "invalid choice: 'holdout'" in bad.stderr


def test_cli_pcm_over_time(checkpoints, tmp_path, capsys):
    out = tmp_path / "pcm"
    code = evaluate.main(["pcm", "--checkpoint", str(checkpoints / "cnn0"), "--times", "3600,25", "--repeats", "2",
                          "--out", str(out)])
    assert code == 0
    assert_outputs(out, "pcm")
    record = read_json(out / "pcm.json")
    assert record["times"] == [25.0, 3600.0]
    entry = record["checkpoints"][0]
    meta = read_json(checkpoints / "cnn0" / "meta.json")
    assert entry["float_accuracy"] == pytest.approx(meta["test_acc"])
    assert [len(r["accuracies"]) for r in entry["results"]] == [2, 2]
    header, row = list(csv.reader((out / "pcm.csv").read_text().splitlines()))
    assert header[:5] == ["checkpoint", "floating point", "mean t = 25 s", "std t = 25 s", "min t = 25 s"]
    np.testing.assert_allclose([float(cell) for cell in row[2:5]], [entry["results"][0][stat] for stat in
                                                                   ("mean", "std", "min")], atol=1e-4)
    assert (out / "pcm.md").read_text().startswith("| checkpoint | floating point | t = 25 s | t = 1 h |")
    same = tmp_path / "pcm-spaces"                                  # the times written with spaces: same result
    assert evaluate.main(["pcm", "--checkpoint", str(checkpoints / "cnn0"), "--times", "3600", "25", "--repeats",
                          "2", "--out", str(same)]) == 0
    again = read_json(same / "pcm.json")["checkpoints"][0]["results"]
    assert [r["accuracies"] for r in again] == [r["accuracies"] for r in entry["results"]]
    assert "Fig. 4" in capsys.readouterr().out
    assert evaluate.main(["pcm", "--checkpoint", str(checkpoints / "lsnn"), "--out", str(out)]) == 1
    assert "is an LSNN" in capsys.readouterr().err


def test_cli_mismatch_with_layer_max_noise(checkpoints, tmp_path, capsys):
    out = tmp_path / "joshi"
    code = evaluate.main(["mismatch", "--checkpoint", str(checkpoints / "cnn0"), "--noise", "layer_max", "--zetas",
                          "0.05", "--draws", "2", "--out", str(out)])
    assert code == 0 and read_json(out / "mismatch.json")["noise"] == "layer_max"
    assert "max|Θ|" in capsys.readouterr().out


def test_the_landscape_on_the_training_split(checkpoints, tmp_path):
    """Fig. S7: the loss landscape on the training set (--split train), beside the test set's (Fig. S6)."""
    out = {split: tmp_path / split for split in ("train", "test")}
    for split, folder in out.items():
        assert evaluate.main(["landscape", "--checkpoint", str(checkpoints / "cnn0"), "--split", split,
                              "--repeats", "1", "--num-alphas", "3", "--out", str(folder)]) == 0
    records = {split: read_json(folder / "landscape.json") for split, folder in out.items()}
    assert records["train"]["split"] == "train" and records["train"]["figure"] == "Fig. S7"
    train_size, test_size = (records[split]["checkpoints"][0]["num_samples"] for split in ("train", "test"))
    assert train_size > test_size


def test_history_shows_what_training_recorded_per_epoch(tmp_path, capsys):
    """Fig. S4 / S5a/b: the per-epoch records of meta.json as a table and a figure; only recorded quantities."""
    for name, history in (("a", [{"epoch": 1, "val_acc": 0.5, "mean_abs_weight": 0.1, "val_acc_attacked": 0.25},
                                 {"epoch": 2, "val_acc": 0.75, "mean_abs_weight": 0.3, "val_acc_attacked": 0.5}]),
                          ("b", [{"epoch": 1, "val_acc": 0.5, "mean_abs_weight": 0.2}])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "meta.json").write_text(json.dumps({"method": name, "seed": 0, "history": history}))
    out = tmp_path / "out"
    assert evaluate.main(["history", "--checkpoint", str(tmp_path / "a"), "--checkpoint", str(tmp_path / "b"),
                          "--out", str(out)]) == 0
    rows = list(csv.reader((out / "history.csv").read_text().splitlines()))
    assert rows[0] == ["checkpoint", "quantity", "epoch 1", "epoch 2"]
    assert ["a seed 0", "val_acc", "50.0000", "75.0000"] in rows and ["b seed 0", "val_acc", "50.0000", ""] in rows
    assert ["a seed 0", "mean_abs_weight", "0.1000", "0.3000"] in rows
    assert not any(row[:2] == ["b seed 0", "val_acc_attacked"] for row in rows)     # b did not record it
    assert (out / "history.png").read_bytes()[:4] == b"\x89PNG"
    assert evaluate.main(["history", "--checkpoint", str(tmp_path / "a"), "--checkpoint", str(tmp_path / "b"),
                          "--figure", "by-checkpoint", "--out", str(out)]) == 0      # Fig. S5a/b: a panel each
    assert (out / "history.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    assert evaluate.main(["history", "--checkpoint", str(tmp_path / "nothing"), "--out", str(out)]) == 1
    assert "no training history" in capsys.readouterr().err
