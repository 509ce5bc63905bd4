"""The sweep: job list, commands, skipping finished jobs, failures reported."""
import json
import shlex

import pytest

from minimal import sweep


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


def test_unknown_method_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse("--task", "fmnist", "--methods", "standard,magic")
    assert exit_info.value.code == 2
    assert "unknown ['magic']" in capsys.readouterr().err


def write_meta(folder, **meta):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta.json").write_text(json.dumps(meta))


def test_finished_jobs_are_skipped_and_failures_reported(tmp_path, monkeypatch):
    write_meta(tmp_path / "standard-seed0", test_acc=0.9)           # finished
    write_meta(tmp_path / "beta-seed0", history=[])                  # stopped mid-way: runs again (resumes)
    ran = []

    def fake_run(command, log_path):
        ran.append(command[command.index("--method") + 1])
        return 1 if "beta" in command else 0

    monkeypatch.setattr(sweep, "run_logged", fake_run)
    args = parse("--task", "fmnist", "--methods", "standard,beta,forward_noise", "--root", str(tmp_path))
    failed = sweep.train_all(args, str(tmp_path), [(m, 0) for m in args.methods])
    assert sorted(ran) == ["beta", "forward_noise"]
    assert failed == [str(tmp_path / "beta-seed0")]
    assert sweep.is_trained(str(tmp_path / "standard-seed0"))
    assert not sweep.is_trained(str(tmp_path / "beta-seed0"))
