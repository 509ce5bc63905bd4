"""Nothing lost, one line for every error: what `python -m minimal.train` does with a folder that holds a run,
with a diverging loss, with corrupt files, with Ctrl-C and with bad input. Each test fails without its fix."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from minimal import evaluate, sweep
from minimal import train as train_module
from minimal import run_folder
from minimal.cli import EXIT_INTERRUPTED, EXIT_USAGE
from minimal.nn.module import load_checkpoint
from minimal.tasks import TASKS
from synthetic import TINY_TASK


@pytest.fixture(autouse=True)
def tiny_task(monkeypatch):
    monkeypatch.setitem(TASKS, "tiny", TINY_TASK)


def main(capsys, *argv):
    """(exit code, stderr) of `python -m minimal.train --task tiny …` run in this process."""
    capsys.readouterr()
    code = train_module.main(["--task", "tiny", *argv])
    return code, capsys.readouterr().err


def assert_one_error_line(error, *fragments):
    assert error.startswith("error: ") and len(error.strip().splitlines()) == 1, error
    for fragment in fragments:
        assert fragment in error, error


def fingerprint(folder):
    """Every file of a run folder and its bytes: equal before and after means nothing was touched."""
    return {os.path.relpath(os.path.join(root, name), folder): open(os.path.join(root, name), "rb").read()
            for root, _, names in os.walk(folder) for name in names}


# ---------------------------------------------------------------------------------------------------- lost work
def test_a_finished_run_is_never_overwritten_without_asking(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(capsys, "--out", out)[0] == 0
    before = fingerprint(out)
    code, error = main(capsys, "--out", out, "--max-steps", "1")            # the README's command typed twice
    assert code == 2
    assert_one_error_line(error, "already holds a finished run", "--resume", "--overwrite")
    assert fingerprint(out) == before
    assert main(capsys, "--out", out, "--max-steps", "1", "--overwrite")[0] == 0   # asked: replaced
    assert json.load(open(os.path.join(out, "meta.json")))["steps"] == 1


def test_a_stopped_run_is_not_restarted_without_resume(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(capsys, "--out", out, "--epochs", "3", "--max-steps", "10")[0] == 0
    os.remove(os.path.join(out, "meta.json"))                 # as if stopped: only the resume state is left
    before = fingerprint(out)
    code, error = main(capsys, "--out", out)
    assert code == 2 and fingerprint(out) == before
    assert_one_error_line(error, "already holds a stopped run")


def test_resume_without_resume_state_refuses(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(capsys, "--out", out, "--epochs", "1")[0] == 0
    shutil.rmtree(os.path.join(out, "resume"))
    before = fingerprint(out)
    code, error = main(capsys, "--out", out, "--resume", "--epochs", "2")
    assert code == 2 and fingerprint(out) == before
    assert_one_error_line(error, "nothing to resume", "resume/state.json")


def test_resume_into_an_empty_or_missing_folder_starts_a_run(tmp_path, capsys):
    """What the sweep and job arrays rely on: the same `--resume` command starts, continues and finishes."""
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "empty", tmp_path / "missing"):
        assert main(capsys, "--out", str(out), "--resume")[0] == 0
        assert "test_acc" in json.load(open(out / "meta.json"))


def test_an_exploded_finite_loss_is_divergence_and_the_last_good_checkpoint_stays(tmp_path, capsys, monkeypatch):
    """--lr 1e4 on F-MNIST gave a finite loss of 3.6e28 and a below-chance model saved as 'best'."""
    standard, calls = train_module.METHODS["standard"], {"n": 0}

    def explodes_in_epoch_two(model, x, y, rng, config):
        calls["n"] += 1
        loss = standard(model, x, y, rng, config)
        return loss if calls["n"] <= 10 else 3.6e28

    monkeypatch.setitem(train_module.METHODS, "standard", explodes_in_epoch_two)
    out = tmp_path / "run"
    code, error = main(capsys, "--out", str(out))
    assert code == train_module.EXIT_DIVERGED
    assert_one_error_line(error, "loss became 3.6e+28 at epoch 2", "last good checkpoint (epoch 1")
    _, meta = load_checkpoint(out)
    assert meta["best_epoch"] == 1 and len(meta["history"]) == 1


def test_a_real_learning_rate_of_1e4_is_caught_as_divergence(tmp_path, capsys):
    code, error = main(capsys, "--out", str(tmp_path / "run"), "--lr", "1e4")
    assert code == train_module.EXIT_DIVERGED
    assert_one_error_line(error, "diverged")


def test_a_named_data_folder_without_data_is_an_error_that_names_it(tmp_path):
    from minimal.data.fmnist import candidate_dirs
    from minimal.data.common import search_folders
    empty = tmp_path / "empty"
    empty.mkdir()
    assert candidate_dirs(str(empty)) == [str(empty / "fashion-mnist"), str(empty)]   # no fallback
    assert search_folders("cifar-10-batches-bin", str(empty)) == [str(empty / "cifar-10-batches-bin"), str(empty)]
    for folder in (empty, tmp_path / "missing"):
        result = subprocess.run([sys.executable, "-m", "minimal.train", "--task", "fmnist", "--data-dir",
                                 str(folder), "--out", str(tmp_path / "out")], capture_output=True, text=True)
        assert result.returncode == 1
        assert_one_error_line(result.stderr, "Fashion-MNIST not found", str(folder))


def test_checkpoints_of_different_tasks_never_share_a_table(tmp_path, capsys):
    folders = []
    for task in ("fmnist", "ecg"):
        folder = tmp_path / task
        folder.mkdir()
        model = TASKS[task].build_model(np.random.default_rng(0))
        from minimal.nn.module import save_checkpoint
        save_checkpoint(str(folder), model, {"task": task, "method": "standard", "seed": 0})
        folders += ["--checkpoint", str(folder)]
    capsys.readouterr()
    assert evaluate.main(["mismatch", *folders, "--out", str(tmp_path / "table")]) == 1
    assert_one_error_line(capsys.readouterr().err, "different tasks", "(fmnist)", "(ecg)")
    assert evaluate.main(["ibp", *folders, "--out", str(tmp_path / "ibp")]) == 1
    assert_one_error_line(capsys.readouterr().err, "different tasks")


# ---------------------------------------------------------------------------------------------------- one line
def test_ctrl_c_says_what_was_saved_and_how_to_continue(tmp_path, capsys, monkeypatch):
    standard, calls = train_module.METHODS["standard"], {"n": 0}

    def interrupted_in_epoch_two(model, x, y, rng, config):
        calls["n"] += 1
        if calls["n"] == 15:
            raise KeyboardInterrupt
        return standard(model, x, y, rng, config)

    monkeypatch.setitem(train_module.METHODS, "standard", interrupted_in_epoch_two)
    out = str(tmp_path / "run")
    code, error = main(capsys, "--out", out)
    assert code == EXIT_INTERRUPTED
    assert_one_error_line(error, "interrupted", f"{out}/resume", "--resume")
    assert error.split("continue with: ")[1].strip() == \
        f"python -m minimal.train --task tiny --out {out} --resume"
    monkeypatch.setitem(train_module.METHODS, "standard", standard)
    assert main(capsys, "--out", out, "--resume")[0] == 0                  # the printed command continues it


def test_ctrl_c_in_evaluate_and_sweep_is_one_line(tmp_path, capsys, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate.SUBCOMMANDS["mismatch"], "run", interrupt)
    capsys.readouterr()
    out = str(tmp_path / "eval")
    assert evaluate.main(["mismatch", "--checkpoint", "x", "--out", out]) == EXIT_INTERRUPTED
    assert_one_error_line(capsys.readouterr().err, "interrupted", f"{out}/mismatch_cells.json")
    monkeypatch.setattr(sweep, "train_all", interrupt)
    assert sweep.main(["--task", "tiny", "--methods", "standard", "--root", str(tmp_path / "s")]) == EXIT_INTERRUPTED
    assert_one_error_line(capsys.readouterr().err, "interrupted", "the same command continues")


def test_an_unwritable_out_is_refused_before_any_training(tmp_path, capsys, monkeypatch):
    a_file = tmp_path / "file"
    a_file.write_text("mine")
    for out, fragment in ((a_file, "is a file"), (a_file / "sub", "not writable")):
        code, error = main(capsys, "--out", str(out))
        assert code == 2
        assert_one_error_line(error, fragment)
    assert a_file.read_text() == "mine"

    def read_only(*args, **kwargs):                     # root may write anywhere: simulate a read-only folder
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    monkeypatch.setitem(train_module.METHODS, "standard", lambda *a: pytest.fail("trained before checking --out"))
    code, error = main(capsys, "--out", str(tmp_path / "readonly"))
    assert code == 2
    assert_one_error_line(error, "not writable: Permission denied")
    assert not (tmp_path / "readonly").exists()                          # the check leaves nothing behind


@pytest.mark.parametrize("damage", ["state.json", "resume arrays", "meta.json"])
def test_corrupt_run_files_are_one_line_and_left_as_they_are(damage, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert main(capsys, "--out", str(out), "--epochs", "3", "--max-steps", "20")[0] == 0   # stopped in epoch 2
    target = {"state.json": out / "resume" / "state.json", "meta.json": out / "meta.json",
              "resume arrays": next((out / "resume").glob("epoch-*.npz"))}[damage]
    target.write_bytes(target.read_bytes()[:40])
    before = fingerprint(out)
    monkeypatch.setitem(train_module.METHODS, "standard", lambda *a: pytest.fail("trained on corrupt files"))
    code, error = main(capsys, "--out", str(out), "--epochs", "3", "--resume")
    assert code == 1 and fingerprint(out) == before
    assert_one_error_line(error, "corrupt", "nothing was changed")


def test_a_negative_seed_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_module.build_parser().parse_args(["--task", "tiny", "--seed", "-1"])
    assert exit_info.value.code == 2
    assert_one_error_line(capsys.readouterr().err.replace("python -m minimal.train: ", ""), "must be an integer ≥ 0")


def test_running_out_of_memory_is_one_line(tmp_path, capsys, monkeypatch):
    def huge_batch(*args):
        raise MemoryError("Unable to allocate 37.3 GiB for an array with shape (10000000, 1000)")

    monkeypatch.setitem(train_module.METHODS, "standard", huge_batch)
    code, error = main(capsys, "--out", str(tmp_path / "run"), "--batch-size", "10000000")
    assert code == 1
    assert_one_error_line(error, "out of memory", "--batch-size")


# -------------------------------------------------------------------------------------------------- what a person reads
def test_a_log_has_short_first_lines_and_epoch_lines_at_column_0(tmp_path):
    """In a log file (not a terminal) there is no progress bar, so `grep ^epoch` finds every epoch line."""
    log = tmp_path / "train.log"
    with open(log, "w") as f:
        result = subprocess.run([sys.executable, "-m", "minimal.train", "--task", "ecg", "--max-steps", "2",
                                 "--val-samples", "100", "--out", str(tmp_path / "run")], stdout=f,
                                stderr=subprocess.STDOUT)
    assert result.returncode == 0
    lines = log.read_text().splitlines()
    assert "\r" not in log.read_text() and "\x1b" not in log.read_text()
    assert lines[0].startswith("ecg, standard:") and len(lines[0]) < 120 + len(str(tmp_path))
    assert any(line.startswith("epoch 1: ") for line in lines)


def test_val_samples_validates_on_a_fixed_subset(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(capsys, "--out", out, "--epochs", "1", "--val-samples", "7")[0] == 0
    val_acc = json.load(open(os.path.join(out, "meta.json")))["history"][0]["val_acc"]
    assert round(val_acc * 7) == pytest.approx(val_acc * 7)                 # a multiple of 1/7


def test_meta_names_the_code_that_trained(tmp_path, capsys):
    """meta.json's code_version: the git commit (+changes when the package differs from it), or None outside git."""
    import re
    out = str(tmp_path / "run")
    assert main(capsys, "--out", out, "--max-steps", "1")[0] == 0
    version = json.load(open(os.path.join(out, "meta.json")))["code_version"]
    assert version is None or re.fullmatch(r"[0-9a-f]{7,40}(\+changes)?", version), version


def test_a_folder_being_trained_is_refused_with_one_line(tmp_path, capsys):
    """While one process trains in --out (here: this test holds the folder's lock, as a training process does), a
    second `train` there stops with one line and touches nothing, --overwrite included; once the first is done,
    the folder is free again."""
    out = str(tmp_path / "run")
    assert main(capsys, "--epochs", "1", "--out", out)[0] == 0
    before = fingerprint(out)
    with run_folder.claimed_output_folder(out):
        for extra in (["--resume"], ["--overwrite"]):
            code, error = main(capsys, "--epochs", "2", "--out", out, *extra)
            assert code == EXIT_USAGE
            assert_one_error_line(error, "being trained by another process")
    assert fingerprint(out) == before
    assert main(capsys, "--epochs", "2", "--out", out, "--resume")[0] == 0


def test_a_new_folder_being_trained_is_refused_and_left_to_its_owner(tmp_path, capsys):
    out = tmp_path / "new" / "run"
    with run_folder.claimed_output_folder(str(out)):
        code, error = main(capsys, "--epochs", "1", "--out", str(out))
        assert code == EXIT_USAGE and "being trained by another process" in error
    assert not (tmp_path / "new").exists()           # its owner saved nothing: no folder is left behind
