"""A multilayer perceptron for F-MNIST: the model of the supplementary's inverse-weight-decay experiment (Fig. S4,
right), where the weights are pushed to grow during training (train --magnitude-target).

    x (N, 1, 28, 28) -> flatten (N, 784) -> dense 784 -> 256, ReLU -> dense 256 -> 256, ReLU -> dense 256 -> 10

A ReLU network like this computes the same classification when a layer's weights and biases grow by a factor c
and the later biases by the same products: its logits only scale. Noise of a constant size σ (Θ + σN) is then
relatively smaller and smaller; noise relative to each weight, Θ·(1 + ζN) (Eq. 1), is not. That is the paper's
reason for the relative adversary.
"""
from . import functional as F
from .layers import Linear
from .module import Module


class MLP(Module):
    def __init__(self, rng, sizes=(784, 256, 256, 10)):
        self.fc1 = Linear(sizes[0], sizes[1], rng)
        self.fc2 = Linear(sizes[1], sizes[2], rng)
        self.fc3 = Linear(sizes[2], sizes[3], rng)

    def forward(self, x, params=None):
        """Logits (N, 10) for images (N, 1, 28, 28); params: optional name -> tensor overrides (Θ* or a draw)."""
        p = self.parameter_dict(params)
        x = F.relu(self.fc1(F.flatten(x), p["fc1.weight"], p["fc1.bias"]))
        x = F.relu(self.fc2(x, p["fc2.weight"], p["fc2.bias"]))
        return self.fc3(x, p["fc3.weight"], p["fc3.bias"])
