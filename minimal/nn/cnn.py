"""The paper's F-MNIST CNN (Supplementary "CNN Architecture").

    x (N, 1, 28, 28)
    conv 4×4, 64 channels, valid   -> (N, 64, 25, 25)
    max-pool 2×2, ceil mode        -> (N, 64, 13, 13)
    ReLU
    conv 4×4, 64 channels, valid   -> (N, 64, 10, 10)
    max-pool 2×2, ceil mode        -> (N, 64, 5, 5)
    ReLU, flatten                  -> (N, 1600)
    dense 1600 -> 256, ReLU; dense 256 -> 64, ReLU; dense 64 -> 10 (logits)

Optional dropout (the paper's dropout baseline, p = 0.3): after each of the two hidden dense ReLUs, only in
training mode and only when `forward` is given an rng for the masks.

`forward(x, params)` reads every weight from `params` (name -> tensor) and hands it to its layer, so the attack
can run the same model at Θ* and the mismatch sampler at Θ·(1 + ζN) without touching the model's own parameters.
The layers and the functions between them come from `functional` (F), so parameters given as Intervals
(minimal/interval.py) make the same code bound the logits of every network in the weight box (IBP).
"""

from ..autodiff import ops
from . import functional as F
from .layers import Conv2d, Linear
from .module import Module


class CNN(Module):
    def __init__(self, rng, channels=64, kernel_size=4, hidden=(256, 64), num_classes=10, image_size=28,
                 dropout=0.0):
        self.conv1 = Conv2d(1, channels, kernel_size, rng)
        self.conv2 = Conv2d(channels, channels, kernel_size, rng)
        side = self._side_after_blocks(image_size, kernel_size)
        self.fc1 = Linear(channels * side * side, hidden[0], rng)
        self.fc2 = Linear(hidden[0], hidden[1], rng)
        self.fc3 = Linear(hidden[1], num_classes, rng)
        self.dropout = dropout  # probability of zeroing a hidden dense unit while training (0: no dropout)

    @staticmethod
    def _side_after_blocks(side, kernel_size):
        for _ in range(2):  # valid conv, then 2×2 pooling that keeps a partial last window
            side = -(-(side - kernel_size + 1) // 2)
        return side

    def forward(self, x, params=None, rng=None):
        """Logits of shape (N, 10). params: optional name -> tensor overrides (Θ* or a mismatch draw), or
        Intervals (then the logits are Intervals). rng: np.random.Generator for the dropout masks; without it (or
        in eval mode) there is no dropout."""
        p = self.parameter_dict(params)
        x = self._pool_relu(self.conv1(x, p["conv1.weight"], p["conv1.bias"]))
        x = self._pool_relu(self.conv2(x, p["conv2.weight"], p["conv2.bias"]))
        x = F.flatten(x)
        x = self._dropout(F.relu(self.fc1(x, p["fc1.weight"], p["fc1.bias"])), rng)
        x = self._dropout(F.relu(self.fc2(x, p["fc2.weight"], p["fc2.bias"])), rng)
        return self.fc3(x, p["fc3.weight"], p["fc3.bias"])

    @staticmethod
    def _pool_relu(x):
        """max-pool 2×2 (ceil mode) -> ReLU: the rest of a conv block."""
        return F.relu(F.max_pool2d(x, 2, ceil_mode=True))

    def _dropout(self, x, rng):
        """Dropout only happens in training (with an rng), on Tensors: hence the autodiff op itself."""
        return x if rng is None else ops.dropout(x, self.dropout, rng, self.training)
