"""Small synthetic data sets (and the tiny model of the training tests) shared by several test files."""
import numpy as np

from minimal.data.common import Split, TaskData
from minimal.nn.layers import Linear
from minimal.nn.module import Module
from minimal.tasks import Task


def blobs(seed=0, n=60):
    """Three classes of 10×10 images, told apart by where a bright bar sits."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 0.3, (n, 1, 10, 10)).astype(np.float32)
    for i, label in enumerate(y):
        x[i, 0, 3 * label:3 * label + 3, 2:8] += 2
    return x, y


class TinyNet(Module):
    """A linear classifier of 4-D points into 3 classes: the model of the `tiny` training task in the tests."""

    def __init__(self, rng):
        self.fc = Linear(4, 3, rng)

    def forward(self, x, params=None):
        p = self.parameter_dict(params)
        return x @ p["fc.weight"] + p["fc.bias"]


def tiny_data(data_dir, seed):
    """Three linearly separable blobs in 4-D, as a task's TaskData (train 300, val 60, test 60)."""
    rng = np.random.default_rng(seed)
    centres = np.eye(3, 4, dtype=np.float32) * 4

    def split(n):
        y = rng.integers(0, 3, n)
        return Split((centres[y] + rng.standard_normal((n, 4))).astype(np.float32), y)
    return TaskData(split(300), split(60), split(60), ("a", "b", "c"), "synthetic blobs")


# The training tests' task: a few seconds for three epochs of TinyNet on tiny_data (registered as "tiny" in TASKS)
TINY_TASK = Task("tiny", "three blobs", tiny_data, TinyNet, epochs=3, lr=0.05, lr_drop_epoch=2, batch_size=30)
