"""Every checkpoint committed under checkpoints/ (the models behind docs/results.md) loads and reproduces the test
accuracy recorded in its meta.json, so any table there can be re-evaluated without training."""
import json
from pathlib import Path

import pytest

from minimal.metrics import accuracy
from minimal.tasks import TASKS, load_trained_model

CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"
FINISHED = sorted(path.parent for path in CHECKPOINTS.rglob("model.npz")
                  if "test_acc" in json.loads((path.parent / "meta.json").read_text()))
DATA = {}


def split_of(task, seed):
    """The test split of a task's data, loaded once per (task, seed)."""
    if (task, seed) not in DATA:
        DATA[task, seed] = TASKS[task].load_data(None, seed).test
    return DATA[task, seed]


@pytest.mark.parametrize("folder", FINISHED, ids=lambda folder: str(folder.relative_to(CHECKPOINTS)))
def test_a_committed_checkpoint_reproduces_its_test_accuracy(folder):
    model, meta = load_trained_model(folder)
    try:
        split = split_of(meta["task"], meta["seed"])
    except Exception as error:           # e.g. Fashion-MNIST not installed on this machine
        pytest.skip(f"the {meta['task']} data is not available: {error}")
    measured = accuracy(model, split)
    assert abs(measured - meta["test_acc"]) <= 1 / len(split), (measured, meta["test_acc"])   # at most one sample
