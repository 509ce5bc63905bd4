"""The layers the models are built from. Each holds its Parameters (Glorot-normal initialised) and its settings
(kernel size, stride, padding), and computes with nn/functional.py, so it runs on Tensors, NumPy arrays,
Intervals and PCM crossbars alike.

A layer's parameters can be replaced for one call: `self.fc1(x, p["fc1.weight"], p["fc1.bias"])` computes with
the given ones (Θ* of the attack, a mismatch draw Θ·(1 + ζN), Intervals, crossbars), `self.fc1(x)` with its own.
"""
import numpy as np

from ..autodiff import ops
from ..kernels.conv import as_pair
from . import functional as F
from .module import Buffer, Module, Parameter, subset


def glorot_normal(shape, fan_in, fan_out, rng, dtype=np.float32):
    """N(0, 2 / (fan_in + fan_out)): keeps activation variance roughly constant through the layers."""
    return (rng.standard_normal(shape) * np.sqrt(2.0 / (fan_in + fan_out))).astype(dtype)


def own_unless_given(layer, weight, bias):
    """(weight, bias): the given ones, or where None the layer's own (None for a layer without a bias)."""
    return (layer.weight if weight is None else weight,
            getattr(layer, "bias", None) if bias is None else bias)


class Linear(Module):
    """y = x W + b, W of shape (in_features, out_features)."""

    def __init__(self, in_features, out_features, rng, bias=True):
        self.weight = Parameter(glorot_normal((in_features, out_features), in_features, out_features, rng))
        if bias:
            self.bias = Parameter(np.zeros(out_features, dtype=np.float32))

    def forward(self, x, weight=None, bias=None):
        return F.linear(x, *own_unless_given(self, weight, bias))


class Conv2d(Module):
    """2-D convolution of (N, in_channels, H, W); kernel_size, stride, padding: an int or an (h, w) pair."""

    def __init__(self, in_channels, out_channels, kernel_size, rng, stride=1, padding=0, bias=True):
        kh, kw = as_pair(kernel_size, "kernel_size")
        shape = (out_channels, in_channels, kh, kw)
        self.weight = Parameter(glorot_normal(shape, in_channels * kh * kw, out_channels * kh * kw, rng))
        if bias:
            self.bias = Parameter(np.zeros(out_channels, dtype=np.float32))
        self.stride, self.padding = stride, padding

    def forward(self, x, weight=None, bias=None):
        weight, bias = own_unless_given(self, weight, bias)
        return F.conv2d(x, weight, bias, self.stride, self.padding)


class BatchNorm2d(Module):
    """Batch normalisation of (N, C, H, W) per channel (ops.batch_norm), with a learnt scale γ (weight, starts at
    1) and shift β (bias, starts at 0).

    Training mode normalises with the batch's own statistics and moves the running estimates towards them,
        running ← (1 − momentum) · running + momentum · batch statistic    (of the variance, the unbiased one);
    evaluation mode normalises with the running estimates, so a sample's output does not depend on its batch.
    The running estimates are Buffers: saved with the model, but not Parameters, so neither the optimiser nor
    the attack nor the mismatch sampler changes them. Batch norm always computes digitally (autodiff ops).
    """

    def __init__(self, channels, momentum=0.1, eps=1e-5):
        self.weight = Parameter(np.ones(channels, dtype=np.float32))
        self.bias = Parameter(np.zeros(channels, dtype=np.float32))
        self.running_mean = Buffer(np.zeros(channels, dtype=np.float32))
        self.running_var = Buffer(np.ones(channels, dtype=np.float32))
        self.momentum, self.eps = momentum, eps

    def forward(self, x, weight=None, bias=None):
        x = ops.as_tensor(x)
        weight, bias = own_unless_given(self, weight, bias)
        if not self.training:
            return ops.batch_norm(x, weight, bias, self.running_mean.data, self.running_var.data, self.eps)
        self._update_running_statistics(x.data)
        return ops.batch_norm(x, weight, bias, eps=self.eps)

    def _update_running_statistics(self, x):
        batch_mean = np.mean(x, axis=(0, 2, 3))
        batch_var = np.var(x, axis=(0, 2, 3), ddof=1)  # unbiased: divided by N·H·W − 1
        for running, batch in ((self.running_mean, batch_mean), (self.running_var, batch_var)):
            running.data = ((1 - self.momentum) * running.data + self.momentum * batch).astype(running.dtype)


class Sequential(Module):
    """Modules applied in order, named "0", "1", … (so their parameters are "0.conv1.weight", "1.bn1.bias", …).

    forward(x, params): params holds the parameters of all of them (name -> tensor, named as above); module i
    is called as module(x, its own entries with the "i." removed). The ResNet's stages are Sequentials of blocks.
    """

    def __init__(self, *modules):
        for index, module in enumerate(modules):
            setattr(self, str(index), module)

    def forward(self, x, params):
        for name, module in vars(self).items():
            if isinstance(module, Module):
                x = module(x, subset(params, name + "."))
        return x
