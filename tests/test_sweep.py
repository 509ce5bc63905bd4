"""The sweep: job list, commands, skipping finished jobs, failures reported, jobs on a Dask cluster."""
import json
import os
import shlex
import subprocess
import sys
import threading

import pytest

from minimal import report, run_folder, sweep


def parse(*argv):
    return sweep.build_parser().parse_args(list(argv))


def test_print_commands_lists_every_job_and_the_evaluation(capsys, tmp_path):
    code = sweep.main(["--task", "fmnist", "--methods", "standard,beta", "--seeds", "0,1", "--root",
                       str(tmp_path), "--train-args", "--epochs 3 --lr 1e-3", "--print-commands"])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5
    first = shlex.split(lines[0])
    assert first[1:] == ["-m", "minimal.train", "--task", "fmnist", "--method", "standard", "--seed", "0",
                         "--out", str(tmp_path / "standard-seed0"), "--resume", "--epochs", "3", "--lr", "1e-3"]
    assert "minimal.evaluate mismatch" in lines[-1] and lines[-1].count("--checkpoint") == 4


def test_print_commands_into_a_reader_that_stops_early_ends_without_a_traceback(tmp_path):
    """`sweep --print-commands | head -1` with more lines than a pipe holds (~600 kB): one line comes out, and
    no traceback (BrokenPipeError) follows it."""
    seeds = ",".join(str(seed) for seed in range(300))
    command = (f"{shlex.quote(sys.executable)} -m minimal.sweep --task fmnist --methods {','.join(sweep.METHODS)} "
               f"--seeds {seeds} --root {shlex.quote(str(tmp_path))} --print-commands | head -1")
    result = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=300)
    assert result.stdout.count("\n") == 1 and "minimal.train" in result.stdout
    assert result.stderr == ""


def test_unknown_method_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse("--task", "fmnist", "--methods", "standard,magic")
    assert exit_info.value.code == 2
    assert "invalid choice: 'magic'" in capsys.readouterr().err
    assert parse("--task", "fmnist", "--methods", "standard", "beta,sam", "--seeds", "0", "1").seeds == [0, 1]
    assert parse("--task", "fmnist", "--methods", "standard", "beta,sam").methods == ["standard", "beta", "sam"]


def write_meta(folder, **meta):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta.json").write_text(json.dumps(meta))


def write_trained(root, argv, method, seed=0, finished=True, **meta):
    """A job folder as `python -m minimal.train` leaves it for the sweep `argv`: meta.json with the job's settings,
    its history, and a test accuracy if finished; model.npz (here only bytes that stand for its weights)."""
    args = parse(*argv)
    settings = sweep.job_settings(args, str(root), sweep.Job(method, seed))
    epochs = settings["epochs"] if finished else 1
    meta = {"method": method, "seed": seed, "settings": settings, "history": [{}] * epochs, "steps": 10 * epochs,
            **({"test_acc": 0.9} if finished else {}), **meta}
    write_meta(root / f"{method}-seed{seed}", **meta)
    (root / f"{method}-seed{seed}" / "model.npz").write_bytes(f"weights of {method} seed {seed}".encode())


def test_finished_jobs_are_skipped_and_failures_reported(tmp_path, monkeypatch):
    argv = ["--task", "fmnist", "--methods", "standard,beta,forward_noise", "--root", str(tmp_path)]
    write_trained(tmp_path, argv, "standard")                        # finished
    write_trained(tmp_path, argv, "beta", finished=False)            # stopped mid-way: runs again (resumes)
    ran = []

    def fake_run(command, log_path, training_folder=None):
        ran.append(command[command.index("--method") + 1])
        return (1 if "beta" in command else 0), 0.0

    monkeypatch.setattr(sweep, "run_logged", fake_run)
    args = parse(*argv)
    with sweep.job_runner(None, 1) as run_job:
        failed = sweep.train_all(args, str(tmp_path), sweep.sweep_jobs(args), run_job)
    assert sorted(ran) == ["beta", "forward_noise"]
    assert failed == [str(tmp_path / "beta-seed0")]
    settings = sweep.job_settings(args, str(tmp_path), sweep.Job("standard", 0))
    assert sweep.is_trained(str(tmp_path / "standard-seed0"), settings)
    assert not sweep.is_trained(str(tmp_path / "standard-seed0"), {**settings, "epochs": settings["epochs"] + 1})
    settings = sweep.job_settings(args, str(tmp_path), sweep.Job("beta", 0))
    assert not sweep.is_trained(str(tmp_path / "beta-seed0"), settings)


def test_jobs_trained_with_other_settings_stop_the_sweep(tmp_path, monkeypatch, capsys):
    """A model trained with other --train-args is not this sweep's result (it came out as one before)."""
    old = ["--task", "fmnist", "--methods", "standard", "--root", str(tmp_path), "--train-args", "--max-steps 3"]
    write_trained(tmp_path, old, "standard")
    monkeypatch.setattr(sweep, "run_logged", lambda command, *log: pytest.fail(f"ran {command}"))
    new = old[:-1] + ["--lr 0.01"]
    assert sweep.main(new) == 2
    error = capsys.readouterr().err
    assert len(error.splitlines()) == 1 and "lr = 0.001, this sweep asks for 0.01" in error
    assert "max_steps = 3, this sweep asks for None" not in error       # a step budget may change, as on resume


def test_evaluation_specs_and_baselines_make_the_commands(capsys, tmp_path):
    code = sweep.main(["--task", "fmnist", "--methods", "forward_noise", "--root", str(tmp_path), "--baseline",
                       "runs/float", "--evaluate", "drift=pcm --repeats 3", "--evaluate",
                       "joshi=mismatch --noise layer_max", "--print-commands"])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    drift, joshi = shlex.split(lines[1]), shlex.split(lines[2])
    assert drift[3] == "pcm" and drift[-4:] == ["--out", str(tmp_path / "drift"), "--repeats", "3"]
    assert drift[drift.index("--checkpoint") + 1] == "runs/float" and drift.count("--checkpoint") == 2
    assert joshi[3] == "mismatch" and joshi[-2:] == ["--noise", "layer_max"]


@pytest.mark.parametrize("spec", ["pcm --repeats 3", "=pcm", "drift=", "two words=pcm"])
def test_bad_evaluation_spec_is_one_line(spec, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse("--task", "fmnist", "--methods", "standard", "--evaluate", spec)
    assert exit_info.value.code == 2 and "NAME=SUBCOMMAND" in capsys.readouterr().err


def test_report_section_is_generated_from_the_runs_and_replaced_on_rerun(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    argv = ["--task", "fmnist", "--methods", "standard", "--root", str(root)]
    write_trained(root, argv, "standard", best_val_acc=0.9, test_acc=0.875, train_seconds=125.0)

    def fake_mismatch(command, log_path, training_folder=None):    # writes what `evaluate mismatch` would, in 42 s
        folder = root / "mismatch"
        (folder / "mismatch.csv").write_text("checkpoint,ζ = 0\nstandard seed 0,87.50 ± 0.00 (87.50)\n")
        (folder / "mismatch.json").write_text(json.dumps({"figure": "Table 1, Fig. 2", "cell_seconds": 600}))
        (folder / "mismatch.png").write_bytes(b"\x89PNG fake")
        (folder / "mismatch_u_test.csv").write_text("pair,ζ = 0.5\nstandard seed 0 vs beta seed 0,3.1e-09\n")
        return 0, 42.0
    monkeypatch.setattr(sweep, "run_logged", fake_mismatch)
    assert sweep.main(argv) == 0
    monkeypatch.setattr(sweep, "run_logged", lambda command, *log: pytest.fail(f"ran {command}"))
    report = tmp_path / "docs" / "results.md"
    report.parent.mkdir()
    report.write_text("# Results\n\nmy commentary\n")
    argv = ["--task", "fmnist", "--methods", "standard", "--root", str(root), "--report", str(report)]
    assert sweep.main(argv) == 0          # trained and evaluated already: only the report is written
    text = report.read_text()
    assert "my commentary" in text and "| standard seed 0 | 87.50 ± 0.00 (87.50) |" in text
    assert "87.50" in text and "2.1 min" in text
    assert "wall time 42 s; the times of its cells, one process each, add up to 10.0 min" in text
    assert "| standard seed 0 vs beta seed 0 | 3.1e-09 |" in text
    assert (tmp_path / "docs" / "figures" / "runs-mismatch.png").read_bytes() == b"\x89PNG fake"
    assert sweep.main(argv) == 0
    assert report.read_text() == text      # regenerated in place, not appended twice


def test_report_says_when_a_wall_time_covers_only_some_cells(tmp_path):
    """An attack that kept 219 of its 240 cells from an earlier run took 4 min for the other 21, not for all."""
    folder = tmp_path / "attack"
    folder.mkdir()
    (folder / "attack.csv").write_text("checkpoint,attack,ζ = 0.1\nstandard seed 0,pga-ce,20.10\n")
    (folder / "wall_seconds.json").write_text(json.dumps({"seconds": 237.9}))
    (folder / "attack.json").write_text(json.dumps({"cells": 240, "cells_computed_here": 21}))
    lines = report.evaluation_block(str(tmp_path), ("attack", ["attack"]), ["python"], str(tmp_path / "figures"),
                                    str(tmp_path))
    assert "wall time 4.0 min; this run computed 21 of its 240 cells, the others were kept from earlier runs" \
        in "\n".join(lines)
    (folder / "attack.json").write_text(json.dumps({"cells": 240, "cells_computed_here": 240}))
    lines = report.evaluation_block(str(tmp_path), ("attack", ["attack"]), ["python"], str(tmp_path / "figures"),
                                    str(tmp_path))
    assert any(line.endswith("— wall time 4.0 min") for line in lines)        # every cell computed by this run


def test_an_evaluation_runs_again_when_its_arguments_or_weights_change(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    write_trained(root, ["--task", "fmnist", "--methods", "standard", "--root", str(root)], "standard")
    ran = []

    def fake_evaluate(command, log_path, training_folder=None):    # writes the table, as the evaluation would
        ran.append(command[command.index("--zetas") + 1:])
        out = command[command.index("--out") + 1]
        for table in ("mismatch.json", "mismatch.csv"):
            with open(os.path.join(out, table), "w") as f:
                f.write("{}")
        return 0, 1.0
    monkeypatch.setattr(sweep, "run_logged", fake_evaluate)
    argv = ["--task", "fmnist", "--methods", "standard", "--root", str(root), "--evaluate"]
    assert sweep.main(argv + ["mismatch=mismatch --zetas 0.5"]) == 0
    assert sweep.main(argv + ["mismatch=mismatch --zetas 0.5"]) == 0          # up to date: not run again
    assert sweep.main(argv + ["mismatch=mismatch --zetas 0.3 0.5"]) == 0      # a new column: run again
    os.remove(root / "mismatch" / "mismatch.csv")
    assert sweep.main(argv + ["mismatch=mismatch --zetas 0.3 0.5"]) == 0      # the report's CSV is missing: again
    for path in root.rglob("*"):                                              # a fresh clone: new times, same files
        os.utime(path, (2e9, 2e9) if path.name == "meta.json" else (1e9, 1e9))
    assert sweep.main(argv + ["mismatch=mismatch --zetas 0.3 0.5"]) == 0      # still up to date
    (root / "standard-seed0" / "model.npz").write_bytes(b"retrained weights")
    assert sweep.main(argv + ["mismatch=mismatch --zetas 0.3 0.5"]) == 0      # other weights: again
    assert ran == [["0.5"], ["0.3", "0.5"], ["0.3", "0.5"], ["0.3", "0.5"]]


def test_a_job_that_cannot_run_fails_with_its_reason(tmp_path, monkeypatch, capsys):
    """As a job on a worker without this folder would: the sweep reports it as a failed job, not a traceback."""
    def missing_folder(command, log_path, training_folder=None):
        raise FileNotFoundError(f"No such file or directory: {log_path!r}")

    monkeypatch.setattr(sweep, "run_logged", missing_folder)
    assert sweep.main(["--task", "fmnist", "--methods", "standard", "--root", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "FAILED (could not run: FileNotFoundError: No such file or directory" in captured.out
    assert captured.err == f"error: 1 training job(s) failed: {tmp_path / 'standard-seed0'}\n"


def test_a_run_another_process_trains_is_not_started_and_its_log_left_alone(tmp_path, capsys):
    """Two queues sharing one list of runs: when one comes to a run that the other is training, it does not start
    it (which would end in one error line) and writes nothing into the log that the other process is writing."""
    folder = tmp_path / "standard-seed0"
    with run_folder.claimed_output_folder(str(folder)):         # the other process (a lock on another open file)
        (folder / "train.log").write_text("the other process's log\n")
        assert sweep.main(["--task", "fmnist", "--methods", "standard", "--root", str(tmp_path), "--train-only"]) == 1
        assert (folder / "train.log").read_text() == "the other process's log\n"
    captured = capsys.readouterr()
    assert "FAILED (not run: another process is training it right now): standard seed 0" in captured.out
    assert captured.err == f"error: 1 training job(s) failed: {folder}\n"


@pytest.mark.parametrize("argv, message", [(["--scheduler", "local:0"], "local:N needs a number of workers N ≥ 1"),
                                           (["--scheduler", "local:2", "--jobs", "2"], "not allowed with")])
def test_bad_scheduler_is_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse("--task", "fmnist", "--methods", "standard", *argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_scheduler_without_dask_is_one_error_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "dask.distributed", None)          # what `import` does when it is not installed
    monkeypatch.setattr(sweep, "run_logged", lambda *job: pytest.fail(f"ran {job}"))
    assert sweep.main(["--task", "ecg", "--methods", "standard", "--root", str(tmp_path), "--scheduler",
                       "local:2"]) == 1
    assert capsys.readouterr().err == 'error: --scheduler needs Dask distributed: pip install -e ".[cluster]"\n'


def test_a_sweep_on_a_local_dask_cluster_runs_each_job_once(tmp_path, capsys):
    """Two tiny ECG models trained by two Dask worker processes, then evaluated there; the same sweep again finds
    everything done. Real `python -m minimal.train/evaluate` subprocesses: a monkeypatch would not reach them."""
    argv = ["--task", "ecg", "--methods", "standard,forward_noise", "--root", str(tmp_path), "--train-args",
            "--max-steps 1 --val-samples 50", "--evaluate", "mismatch=mismatch --draws 2 --zetas 0 0.1 "
            "--max-samples 50", "--scheduler", "local:2"]
    assert sweep.main(argv) == 0
    out = capsys.readouterr().out
    assert "jobs go to the Dask scheduler at tcp://" in out and "(2 workers at the moment)" in out
    assert "0 of 2 training jobs already done; running 2" in out
    assert "done: standard seed 0" in out and "done: forward_noise seed 0" in out
    outputs = [tmp_path / "standard-seed0" / "model.npz", tmp_path / "forward_noise-seed0" / "model.npz",
               tmp_path / "mismatch" / "mismatch.json", tmp_path / "mismatch" / "mismatch.csv"]
    times = [path.stat().st_mtime_ns for path in outputs]
    log = (tmp_path / "standard-seed0" / "train.log").read_text()
    assert log.startswith("$ ") and "test accuracy" in log
    assert "standard seed 0" in (tmp_path / "mismatch" / "mismatch.csv").read_text()

    assert sweep.main(argv) == 0
    out = capsys.readouterr().out
    assert "2 of 2 training jobs already done; running 0" in out and "is up to date" in out
    assert [path.stat().st_mtime_ns for path in outputs] == times
    assert (tmp_path / "standard-seed0" / "train.log").read_text() == log


def labels(command):
    return [command[i + 1] for i, word in enumerate(command) if word == "--label"]


def test_vary_trains_every_method_once_per_value_and_labels_the_checkpoints(capsys, tmp_path):
    """--vary beta_rob=0.1,0.5 --vary attack_box=relative,constant: four beta jobs per seed, each with its values
    on the command line, in its folder name and in the evaluation's labels (without the seed where pooled)."""
    code = sweep.main(["--task", "fmnist", "--methods", "beta", "--seeds", "0,1", "--root", str(tmp_path),
                       "--vary", "beta_rob=0.1,0.5", "--vary", "attack-box=relative,constant",
                       "--evaluate", "table=mismatch --pool", "--evaluate", "curves=attack", "--print-commands"])
    assert code == 0
    lines = [shlex.split(line) for line in capsys.readouterr().out.strip().splitlines()]
    training, (table, curves) = lines[:-2], lines[-2:]
    assert len(training) == 8
    first = training[0]
    assert first[first.index("--out") + 1] == str(tmp_path / "beta-beta_rob0.1-attack_boxrelative-seed0")
    assert first[-4:] == ["--beta-rob", "0.1", "--attack-box", "relative"]
    assert {tuple(command[-3::2]) for command in training} == {("0.1", "relative"), ("0.1", "constant"),
                                                                ("0.5", "relative"), ("0.5", "constant")}
    assert labels(table)[:2] == ["beta beta_rob 0.1 attack_box relative"] * 2          # the two seeds pooled
    assert labels(curves)[:2] == ["beta beta_rob 0.1 attack_box relative seed 0",
                                  "beta beta_rob 0.1 attack_box relative seed 1"]
    settings = sweep.job_settings(sweep.build_parser().parse_args(["--task", "fmnist", "--methods", "beta"]),
                                  str(tmp_path), sweep.Job("beta", 0, (("beta_rob", "0.5"),)))
    assert settings["beta_rob"] == 0.5


@pytest.mark.parametrize("spec, message", [("beta_rob", "NAME=V1,V2"), ("nonsense=1,2", "has no option"),
                                           ("out=a,b", "has no option")])
def test_a_bad_vary_is_one_line(spec, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse("--task", "fmnist", "--methods", "beta", "--vary", spec)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_evaluations_run_side_by_side_with_jobs(tmp_path, monkeypatch):
    """With --jobs 2 the second evaluation starts while the first runs: each fake evaluation waits at a barrier
    that only opens when both have arrived."""
    root = tmp_path / "runs"
    write_trained(root, ["--task", "fmnist", "--methods", "standard", "--root", str(root)], "standard")
    both_running = threading.Barrier(2, timeout=10)

    def fake_evaluate(command, log_path, training_folder=None):
        both_running.wait()
        out = command[command.index("--out") + 1]
        for table in ("mismatch.json", "mismatch.csv", "ibp.json", "ibp.csv"):
            with open(os.path.join(out, table), "w") as f:
                f.write("{}")
        return 0, 1.0
    monkeypatch.setattr(sweep, "run_logged", fake_evaluate)
    argv = ["--task", "fmnist", "--methods", "standard", "--root", str(root), "--jobs", "2",
            "--evaluate", "mismatch=mismatch", "--evaluate", "ibp=ibp"]
    assert sweep.main(argv) == 0
    for name in ("mismatch", "ibp"):
        assert json.loads((root / name / "wall_seconds.json").read_text())["seconds"] == 1.0


def test_train_only_trains_and_evaluates_nothing(tmp_path, monkeypatch, capsys):
    """Two queues sharing one list of runs each end with --train-only: neither evaluates (the default would be a
    100-draw mismatch table of its own), and a later sweep with --evaluate finds the models trained."""
    argv = ["--task", "fmnist", "--methods", "standard,beta", "--root", str(tmp_path)]
    ran = []

    def fake_train(command, log_path, training_folder=None):
        ran.append(command)
        method = command[command.index("--method") + 1]
        write_trained(tmp_path, argv, method)
        return 0, 0.0
    monkeypatch.setattr(sweep, "run_logged", fake_train)
    assert sweep.main(argv + ["--train-only"]) == 0
    assert [command[2] for command in ran] == ["minimal.train", "minimal.train"]
    assert not (tmp_path / "mismatch").exists()
    assert f"trained: 2 models in {tmp_path}" in capsys.readouterr().out
    assert sweep.main(argv + ["--train-only", "--print-commands"]) == 0
    assert "minimal.evaluate" not in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [(["--evaluate", "m=mismatch"], "not allowed with argument --train-only"),
                                            (["--report", "docs/results.md"], "not allowed with --train-only")])
def test_train_only_with_an_evaluation_or_a_report_is_one_line(extra, message, capsys):
    argv = ["--task", "fmnist", "--methods", "standard", "--train-only", *extra]
    try:
        code = sweep.main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    error = capsys.readouterr().err
    assert code == 2 and len(error.strip().splitlines()) == 1 and message in error, error
