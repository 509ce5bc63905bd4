"""Warm-up epochs (AWP, ABCD): the first epochs take the standard step, and a warm-up network is never saved as
the method's."""
import json
import os

import pytest

from minimal import train as train_module
from minimal.robust.methods import METHODS
from minimal.tasks import TASKS
from synthetic import TINY_TASK


@pytest.fixture(autouse=True)
def tiny_task(monkeypatch):
    monkeypatch.setitem(TASKS, "tiny", TINY_TASK)


def main(capsys, *argv):
    capsys.readouterr()
    code = train_module.main(["--task", "tiny", *argv])
    return code, capsys.readouterr()


def counting(monkeypatch, method):
    """Replace METHODS[method] by a wrapper that counts its calls."""
    calls = []
    original = METHODS[method]

    def counted(*args):
        calls.append(1)
        return original(*args)
    monkeypatch.setitem(METHODS, method, counted)
    return calls


@pytest.mark.parametrize("method", ["awp", "abcd"])
def test_warm_up_epochs_take_the_standard_step_and_are_not_saved(method, tmp_path, capsys, monkeypatch):
    standard_calls, method_calls = counting(monkeypatch, "standard"), counting(monkeypatch, method)
    out = str(tmp_path / "run")
    code, output = main(capsys, "--method", method, "--warmup-epochs", "1", "--out", out)
    assert code == 0, output.err
    steps_per_epoch = 300 // 30
    assert len(standard_calls) == steps_per_epoch and len(method_calls) == 2 * steps_per_epoch
    assert "epoch 1 (warm-up: standard steps):" in output.out and "epoch 2:" in output.out
    meta = json.load(open(os.path.join(out, "meta.json")))
    assert meta["best_epoch"] >= 2 and meta["settings"]["warmup_epochs"] == 1


def test_no_warm_up_by_default(tmp_path, capsys):
    code, output = main(capsys, "--method", "awp", "--out", str(tmp_path / "run"))
    assert code == 0, output.err
    assert "warm-up" not in output.out


def test_a_warm_up_as_long_as_training_is_a_usage_error(tmp_path, capsys):
    code, output = main(capsys, "--method", "awp", "--warmup-epochs", "3", "--out", str(tmp_path / "run"))
    assert code == 2 and output.err.startswith("error: ") and len(output.err.strip().splitlines()) == 1
    assert "leaves none of the 3 epochs" in output.err
    assert not os.path.exists(tmp_path / "run")


def test_a_step_budget_that_ends_in_the_warm_up_saves_nothing_and_says_why(tmp_path, capsys):
    code, output = main(capsys, "--method", "awp", "--max-steps", "3", "--warmup-epochs", "1",
                        "--out", str(tmp_path / "run"))
    assert code == 1 and len(output.err.strip().splitlines()) == 1
    assert "during the 1 warm-up epoch(s)" in output.err and "--warmup-epochs 0" in output.err
    code, output = main(capsys, "--method", "awp", "--max-steps", "3", "--warmup-epochs", "0",
                        "--out", str(tmp_path / "other"))
    assert code == 0, output.err
