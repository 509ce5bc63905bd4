"""The training CLI: argument errors, a full run on a tiny synthetic task, NaN handling, and the real F-MNIST
run on a two-step budget when the data is installed."""
import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from minimal import run_folder
from minimal import train as train_module
from minimal.cli import EXIT_USAGE
from minimal.nn.module import load_checkpoint
from minimal.optim import SGD
from minimal.tasks import TASKS, sgd_nesterov
from synthetic import TINY_TASK, TinyNet


@pytest.fixture
def tiny_task(monkeypatch):
    monkeypatch.setitem(TASKS, "tiny", TINY_TASK)
    return TINY_TASK


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "minimal.train", *args], capture_output=True, text=True,
                          timeout=600)


@pytest.mark.parametrize("args, message", [
    (["--task", "nope"], "invalid choice: 'nope'"),
    (["--task", "fmnist", "--method", "magic"], "invalid choice: 'magic'"),
    (["--task", "fmnist", "--epochs", "0"], "must be a positive integer"),
    (["--task", "fmnist", "--lr", "nan"], "must be a positive number"),
])
def test_bad_arguments_give_one_line_and_exit_2(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_help_lists_every_option():
    result = run_cli("--help")
    assert result.returncode == 0
    for option in ["--task", "--method", "--epochs", "--max-steps", "--batch-size", "--lr", "--seed", "--out",
                   "fmnist", "standard"]:
        assert option in result.stdout


def test_training_run_learns_and_writes_checkpoint(tiny_task, tmp_path):
    args = train_module.build_parser().parse_args(["--task", "tiny", "--out", str(tmp_path / "run")])
    meta = train_module.train(train_module.resolve_settings(args), log=lambda *_: None)
    assert meta["test_acc"] > 0.9
    assert [h["lr"] for h in meta["history"]] == [0.05, 0.05, 0.005]
    state, saved = load_checkpoint(tmp_path / "run")
    assert saved["test_acc"] == meta["test_acc"] and saved["best_epoch"] in (1, 2, 3)
    assert set(state) == {"fc.weight", "fc.bias"}


def test_same_seed_same_model(tiny_task, tmp_path):
    metas = []
    for name in ["a", "b"]:
        args = train_module.build_parser().parse_args(["--task", "tiny", "--out", str(tmp_path / name)])
        metas.append(train_module.train(train_module.resolve_settings(args), log=lambda *_: None))
    a, _ = load_checkpoint(tmp_path / "a")
    b, _ = load_checkpoint(tmp_path / "b")
    np.testing.assert_array_equal(a["fc.weight"], b["fc.weight"])


def test_max_steps_budget(tiny_task, tmp_path):
    args = train_module.build_parser().parse_args(["--task", "tiny", "--max-steps", "4", "--out",
                                                   str(tmp_path / "run")])
    meta = train_module.train(train_module.resolve_settings(args), log=lambda *_: None)
    assert [h["steps"] for h in meta["history"]] == [4]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_task, tmp_path, monkeypatch, capsys):
    calls = {"n": 0}
    standard = train_module.METHODS["standard"]

    def explodes_in_epoch_two(model, x, y, rng, config):
        calls["n"] += 1
        return standard(model, x, y, rng, config) if calls["n"] <= 10 else float("nan")

    monkeypatch.setitem(train_module.METHODS, "standard", explodes_in_epoch_two)
    out = tmp_path / "run"
    code = train_module.main(["--task", "tiny", "--out", str(out)])
    assert code == train_module.EXIT_DIVERGED
    error = capsys.readouterr().err
    assert "loss became nan at epoch 2" in error and "last good checkpoint (epoch 1" in error
    state, meta = load_checkpoint(out)
    assert meta["best_epoch"] == 1 and np.all(np.isfinite(state["fc.weight"]))


def test_missing_data_is_one_clear_line(tmp_path, monkeypatch, capsys):
    from minimal.data import fmnist
    monkeypatch.setenv("MINIMAL_DATA", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(fmnist, "DEBIAN_DIR", str(tmp_path / "no-debian-package"))
    code = train_module.main(["--task", "fmnist", "--out", str(tmp_path / "out")])
    error = capsys.readouterr().err
    assert code == train_module.EXIT_DATA
    assert error.startswith("error:") and "dataset-fashion-mnist" in error and len(error.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_missing_cifar10_is_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MINIMAL_DATA", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    code = train_module.main(["--task", "cifar10", "--out", str(tmp_path / "out")])
    error = capsys.readouterr().err
    assert code == train_module.EXIT_DATA
    assert error.startswith("error: CIFAR-10 not found") and "data_scripts/cifar10.py" in error
    assert len(error.splitlines()) == 1 and not (tmp_path / "out").exists()


def test_cifar10_task_has_the_papers_optimiser_and_schedule():
    """Supplementary "Training of CNN used for PCM-based CiM simulation": SGD, Nesterov momentum 0.9, weight
    decay 5e-4, batch 256, 300 epochs, lr 0.001 multiplied by 0.2 after epochs 60, 120 and 160."""
    task = TASKS["cifar10"]
    optimizer = task.optimizer([], task.lr)
    assert isinstance(optimizer, SGD) and optimizer.nesterov
    assert (optimizer.lr, optimizer.momentum, optimizer.weight_decay) == (1e-3, 0.9, 5e-4)
    assert (task.epochs, task.batch_size) == (300, 256)
    settings = train_module.resolve_settings(train_module.build_parser().parse_args(["--task", "cifar10"]))
    schedule = train_module.learning_rate_schedule(settings)
    rates = [schedule(epoch) for epoch in (0, 59, 60, 119, 120, 159, 160, 299)]
    np.testing.assert_allclose(rates, [1e-3, 1e-3, 2e-4, 2e-4, 4e-5, 4e-5, 8e-6, 8e-6])
    later = train_module.learning_rate_schedule({**settings, "lr_drop_epoch": 130})  # drops before it are skipped
    np.testing.assert_allclose([later(129), later(130), later(160)], [1e-3, 2e-4, 4e-5])
    fmnist = train_module.resolve_settings(train_module.build_parser().parse_args(["--task", "fmnist"]))
    assert [train_module.learning_rate_schedule(fmnist)(epoch) for epoch in (5, 6, 7)] == [1e-3, 1e-4, 1e-4]


def test_a_task_with_sgd_and_several_drops_trains(monkeypatch, tmp_path):
    task = replace(TINY_TASK, name="tiny-sgd", epochs=4, later_lr_drops=(3,), lr_divisor=5, optimizer=sgd_nesterov)
    monkeypatch.setitem(TASKS, "tiny-sgd", task)
    args = train_module.build_parser().parse_args(["--task", "tiny-sgd", "--out", str(tmp_path / "run")])
    meta = train_module.train(train_module.resolve_settings(args), log=lambda *_: None)
    np.testing.assert_allclose([h["lr"] for h in meta["history"]], [0.05, 0.05, 0.01, 0.002])
    assert meta["test_acc"] > 0.9


FMNIST_INSTALLED = os.path.isdir("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not FMNIST_INSTALLED, reason="Debian package dataset-fashion-mnist not installed")
def test_real_fmnist_two_steps_end_to_end(tmp_path):
    result = run_cli("--task", "fmnist", "--max-steps", "2", "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["task"] == "fmnist" and meta["history"][0]["steps"] == 2
    assert meta["data_source"].endswith("fashion-mnist") and 0 <= meta["test_acc"] <= 1


def run_tiny(out, *extra):
    args = train_module.build_parser().parse_args(["--task", "tiny", "--out", str(out), *extra])
    return train_module.train(train_module.resolve_settings(args), log=lambda *_: None)


def test_resume_continues_exactly_where_it_stopped(tiny_task, tmp_path):
    unbroken = run_tiny(tmp_path / "unbroken")
    run_tiny(tmp_path / "split", "--epochs", "2")  # as if stopped after epoch 2
    resumed = run_tiny(tmp_path / "split", "--resume")
    assert [h["val_acc"] for h in resumed["history"]] == [h["val_acc"] for h in unbroken["history"]]
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in unbroken["history"]]
    a, _ = load_checkpoint(tmp_path / "unbroken")
    b, _ = load_checkpoint(tmp_path / "split")
    np.testing.assert_array_equal(a["fc.weight"], b["fc.weight"])
    assert sorted(os.listdir(tmp_path / "split" / "resume")) == ["epoch-0003.npz", "state.json"]


def standard_step_failing_at(monkeypatch, call, failure):
    """Replace the standard method by one that does `failure(model)` after its `call`-th gradient (before the
    optimiser's step; the tiny task has 10 steps per epoch) and is the standard step otherwise."""
    standard, calls = train_module.METHODS["standard"], {"n": 0}

    def step(model, x, y, rng, config):
        loss = standard(model, x, y, rng, config)
        calls["n"] += 1
        if calls["n"] == call:
            failure(model)
        return loss
    monkeypatch.setitem(train_module.METHODS, "standard", step)
    return standard


def test_a_run_stopped_inside_an_epoch_resumes_bit_for_bit(tiny_task, tmp_path, monkeypatch):
    """State saved within the epoch (here after every step), Ctrl-C at step 4 of epoch 2, then --resume: the same
    losses, accuracies and weights as a run that was never stopped."""
    unbroken = run_tiny(tmp_path / "unbroken")
    monkeypatch.setattr(train_module, "SAVE_WITHIN_EPOCH_SECONDS", 0)

    def ctrl_c(model):
        raise KeyboardInterrupt
    standard = standard_step_failing_at(monkeypatch, 14, ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        run_tiny(tmp_path / "split")
    state = json.loads((tmp_path / "split" / "resume" / "state.json").read_text())
    assert state["arrays"] == "epoch-0002-step-000003.npz" and state["partial_epoch"]["steps"] == 3
    assert run_folder.resume_point_description(str(tmp_path / "split")) == "in epoch 2, after step 3"
    monkeypatch.setitem(train_module.METHODS, "standard", standard)
    resumed = run_tiny(tmp_path / "split", "--resume")
    for field in ("train_loss", "val_acc", "steps"):
        assert [h[field] for h in resumed["history"]] == [h[field] for h in unbroken["history"]]
    a, _ = load_checkpoint(tmp_path / "unbroken")
    b, _ = load_checkpoint(tmp_path / "split")
    np.testing.assert_array_equal(a["fc.weight"], b["fc.weight"])
    assert sorted(os.listdir(tmp_path / "split" / "resume")) == ["epoch-0003.npz", "state.json"]


def test_weights_broken_by_a_step_are_not_saved_as_a_resume_point(tiny_task, tmp_path, monkeypatch):
    """A step that leaves NaN weights: the save within the epoch after it is skipped, the next loss stops the run,
    and the resume state is the one from the step before, with finite weights."""
    monkeypatch.setattr(train_module, "SAVE_WITHIN_EPOCH_SECONDS", 0)

    def break_the_weights(model):
        model.fc.weight.grad[0, 0] = np.nan
    standard_step_failing_at(monkeypatch, 5, break_the_weights)
    with pytest.raises(train_module.TrainingDiverged):
        run_tiny(tmp_path / "run")
    state = json.loads((tmp_path / "run" / "resume" / "state.json").read_text())
    assert state["partial_epoch"]["steps"] == 4
    arrays = np.load(tmp_path / "run" / "resume" / state["arrays"])
    assert all(np.isfinite(arrays[name]).all() for name in arrays.files)


def test_resume_of_a_finished_run_leaves_its_checkpoint_untouched(tiny_task, tmp_path):
    """A no-op resume leaves a finished run as it is: its model.npz is not even rewritten (same bytes, same time)."""
    def run(*extra):
        args = train_module.build_parser().parse_args(["--task", "tiny", "--out", str(tmp_path), *extra])
        return train_module.train(train_module.resolve_settings(args), log=lambda *_: None)

    finished = run("--epochs", "2")
    before = os.stat(tmp_path / "model.npz").st_mtime_ns
    again = run("--epochs", "2", "--resume")
    assert os.stat(tmp_path / "model.npz").st_mtime_ns == before
    assert again["test_acc"] == finished["test_acc"] and again["history"] == finished["history"]
    longer = run("--epochs", "3", "--resume")  # a larger budget still trains on
    assert len(longer["history"]) == 3


def test_resume_refuses_other_settings(tiny_task, tmp_path, capsys):
    assert train_module.main(["--task", "tiny", "--epochs", "1", "--out", str(tmp_path / "r")]) == 0
    code = train_module.main(["--task", "tiny", "--lr", "0.5", "--resume", "--out", str(tmp_path / "r")])
    assert code == EXIT_USAGE
    assert "other settings (lr)" in capsys.readouterr().err


def test_main_job_ecg_end_to_end_on_a_tiny_budget(tmp_path):
    """The main job on the embedded MIT-BIH beats, two steps: no data download, checkpoint written."""
    result = run_cli("--task", "ecg", "--max-steps", "2", "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    assert "val acc" in result.stdout and "test accuracy" in result.stdout
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["task"] == "ecg" and meta["history"][0]["steps"] == 2
    state, _ = load_checkpoint(tmp_path / "run")
    assert set(state) == {"w_in", "w_rec", "w_out", "b_out"}
    np.testing.assert_array_equal(np.diag(state["w_rec"]), 0)


def run_training(folder, *extra):
    args = train_module.build_parser().parse_args(["--task", "tiny", "--out", str(folder), *extra])
    return train_module.train(train_module.resolve_settings(args), log=lambda *_: None)


def test_init_from_starts_at_the_checkpoint(tiny_task, tmp_path):
    pretrained = tmp_path / "pretrained"
    run_training(pretrained, "--epochs", "1")
    tuned = tmp_path / "tuned"
    meta = run_training(tuned, "--epochs", "1", "--max-steps", "1", "--lr", "1e-9", "--init-from", str(pretrained))
    start, _ = load_checkpoint(pretrained)
    after, _ = load_checkpoint(tuned)
    np.testing.assert_allclose(after["fc.weight"], start["fc.weight"], atol=1e-6)   # lr ≈ 0: still the start
    assert meta["settings"]["init_from"] == str(pretrained)
    fresh, _ = load_checkpoint(run_training(tmp_path / "fresh", "--epochs", "1", "--max-steps", "1", "--lr", "1e-9")
                               and tmp_path / "fresh")
    assert not np.allclose(fresh["fc.weight"], start["fc.weight"], atol=1e-3)


def test_clip_sigmas_clips_weights_not_biases_after_every_step(tiny_task, tmp_path, monkeypatch):
    model = TinyNet(np.random.default_rng(0))
    model.fc.weight.data[0, 0] = 100.0
    model.fc.bias.data[:] = 50.0
    std = model.fc.weight.data.std()
    train_module.clip_weight_matrices(model, 2.0)
    assert np.abs(model.fc.weight.data).max() == pytest.approx(2.0 * std)
    assert np.all(model.fc.bias.data == 50.0)
    calls = []
    monkeypatch.setattr(train_module, "clip_weight_matrices", lambda m, n: calls.append(n))
    meta = run_training(tmp_path / "clipped", "--epochs", "1", "--clip-sigmas", "1.5")
    assert calls == [1.5] * meta["steps"]


def test_init_from_a_missing_checkpoint_is_one_line(tmp_path, capsys):
    code = train_module.main(["--task", "ecg", "--init-from", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    assert code == 1
    assert "cannot read checkpoint" in capsys.readouterr().err


def test_each_epoch_records_the_weight_magnitude_and_optionally_the_attacked_accuracy(tiny_task, tmp_path):
    """Fig. S4 needs mean |W| per epoch (always recorded); Fig. S5a/b the validation accuracy under the weight
    attack (--val-attack ζ, off by default)."""
    plain = run_training(tmp_path / "plain", "--epochs", "2")
    assert all("val_acc_attacked" not in h for h in plain["history"])
    last_epoch = np.load(tmp_path / "plain" / "resume" / "epoch-0002.npz")      # the model after epoch 2
    assert plain["history"][1]["mean_abs_weight"] == pytest.approx(np.abs(last_epoch["model/fc.weight"]).mean())
    attacked = run_training(tmp_path / "attacked", "--epochs", "2", "--val-attack", "0.5")
    for clean, record in zip(plain["history"], attacked["history"]):
        assert record["val_acc"] == clean["val_acc"]                 # the attack does not change the training
        assert record["val_acc_attacked"] < record["val_acc"]
    again = run_training(tmp_path / "again", "--epochs", "2", "--val-attack", "0.5")
    assert [h["val_acc_attacked"] for h in again["history"]] == [h["val_acc_attacked"] for h in attacked["history"]]


def test_inverse_weight_decay_adds_minus_lambda_w_to_the_weight_gradients_below_the_target():
    """Inverse weight decay (Fig. S4, right): the gradient of −(λ/2)·‖W‖² is −λ·W, added to the weight matrices'
    gradients (not the biases') while mean |W| is below the target, and not at all above it."""
    model = TinyNet(np.random.default_rng(0))
    for p in model.parameters():
        p.grad = np.ones_like(p.data)
    weights = model.fc.weight.data.copy()
    train_module.add_inverse_weight_decay(model, strength=0.5, target=10.0)
    np.testing.assert_allclose(model.fc.weight.grad, 1 - 0.5 * weights, rtol=1e-6)
    np.testing.assert_array_equal(model.fc.bias.grad, np.ones_like(model.fc.bias.data))
    model.fc.weight.grad = np.ones_like(weights)
    train_module.add_inverse_weight_decay(model, strength=0.5, target=0.5 * train_module.mean_weight_magnitude(model))
    np.testing.assert_array_equal(model.fc.weight.grad, np.ones_like(weights))


def test_a_run_with_grow_weights_to_grows_them_to_its_target(tiny_task, tmp_path):
    plain = run_training(tmp_path / "plain", "--epochs", "3")
    meta = run_training(tmp_path / "grown", "--epochs", "3", "--grow-weights-to", "1", "--inverse-weight-decay", "5")
    grown = [h["mean_abs_weight"] for h in meta["history"]]
    assert 1 <= grown[-1] < 1.5 and plain["history"][-1]["mean_abs_weight"] < 0.5     # the term stops at 1


def test_keep_last_makes_the_last_epoch_the_checkpoint(tiny_task, tmp_path):
    """--keep last (for runs such as --grow-weights-to, whose point is where training ends): the checkpoint is the
    last epoch's network, whatever the validation accuracy did."""
    meta = run_training(tmp_path / "last", "--epochs", "3", "--grow-weights-to", "1", "--inverse-weight-decay", "5",
                        "--keep", "last")
    assert meta["best_epoch"] == 3 and meta["best_val_acc"] == meta["history"][-1]["val_acc"]
    weights, _ = load_checkpoint(tmp_path / "last")
    assert np.mean(np.abs(weights["fc.weight"])) == pytest.approx(meta["history"][-1]["mean_abs_weight"], rel=1e-6)


def test_a_run_recorded_before_keep_existed_resumes_as_keep_best(tiny_task):
    def settings(*extra):
        return train_module.resolve_settings(train_module.build_parser().parse_args(["--task", "tiny", *extra]))
    recorded = settings()
    del recorded["keep"]
    assert run_folder.settings_differences(recorded, settings()) == []
    assert run_folder.settings_differences(recorded, settings("--keep", "last")) == ["keep"]
