"""The layers: each holds its Parameters (Glorot-normal initialised) and calls one op from autodiff.ops
(`linear` comes from nn/functional.py, which also computes with Intervals)."""
import numpy as np

from ..autodiff import ops
from .functional import linear
from .module import Buffer, Module, Parameter


def glorot_normal(shape, fan_in, fan_out, rng, dtype=np.float32):
    """N(0, 2 / (fan_in + fan_out)): keeps activation variance roughly constant through the layers."""
    return (rng.standard_normal(shape) * np.sqrt(2.0 / (fan_in + fan_out))).astype(dtype)


class Linear(Module):
    def __init__(self, in_features, out_features, rng, bias=True):
        self.weight = Parameter(glorot_normal((in_features, out_features), in_features, out_features, rng))
        if bias:
            self.bias = Parameter(np.zeros(out_features, dtype=np.float32))

    def forward(self, x):
        return linear(x, self.weight, getattr(self, "bias", None))


class Conv2d(Module):
    def __init__(self, in_channels, out_channels, kernel_size, rng, stride=1, padding=0, bias=True):
        kh, kw = (kernel_size, kernel_size) if np.isscalar(kernel_size) else kernel_size
        shape = (out_channels, in_channels, kh, kw)
        self.weight = Parameter(glorot_normal(shape, in_channels * kh * kw, out_channels * kh * kw, rng))
        if bias:
            self.bias = Parameter(np.zeros(out_channels, dtype=np.float32))
        self.stride, self.padding = stride, padding

    def forward(self, x):
        return ops.conv2d(x, self.weight, getattr(self, "bias", None), self.stride, self.padding)


class BatchNorm2d(Module):
    """Batch normalisation of (N, C, H, W) per channel (ops.batch_norm), with a learnt scale γ (weight, starts at
    1) and shift β (bias, starts at 0).

    Training mode normalises with the batch's own statistics and moves the running estimates towards them,
        running ← (1 − momentum) · running + momentum · batch statistic    (of the variance, the unbiased one);
    evaluation mode normalises with the running estimates, so a sample's output does not depend on its batch.
    The running estimates are Buffers: saved with the model, but not Parameters, so neither the optimiser nor
    the attack nor the mismatch sampler changes them.
    """

    def __init__(self, channels, momentum=0.1, eps=1e-5):
        self.weight = Parameter(np.ones(channels, dtype=np.float32))
        self.bias = Parameter(np.zeros(channels, dtype=np.float32))
        self.running_mean = Buffer(np.zeros(channels, dtype=np.float32))
        self.running_var = Buffer(np.ones(channels, dtype=np.float32))
        self.momentum, self.eps = momentum, eps

    def forward(self, x, weight=None, bias=None):
        """weight, bias: γ and β to use instead of the layer's own (Θ* of the attack, a mismatch draw)."""
        x = ops.as_tensor(x)
        weight = self.weight if weight is None else weight
        bias = self.bias if bias is None else bias
        if not self.training:
            return ops.batch_norm(x, weight, bias, self.running_mean.data, self.running_var.data, self.eps)
        self._update_running_statistics(x.data)
        return ops.batch_norm(x, weight, bias, eps=self.eps)

    def _update_running_statistics(self, x):
        batch_mean = np.mean(x, axis=(0, 2, 3))
        batch_var = np.var(x, axis=(0, 2, 3), ddof=1)  # unbiased: divided by N·H·W − 1
        for running, batch in ((self.running_mean, batch_mean), (self.running_var, batch_var)):
            running.data = ((1 - self.momentum) * running.data + self.momentum * batch).astype(running.dtype)


class MaxPool2d(Module):
    def __init__(self, kernel_size=2, stride=None, padding=0, ceil_mode=False):
        self.kernel_size, self.stride, self.padding, self.ceil_mode = kernel_size, stride, padding, ceil_mode

    def forward(self, x):
        return ops.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode)


class Dropout(Module):
    def __init__(self, p, rng):
        self.p, self.rng = p, rng

    def forward(self, x):
        return ops.dropout(x, self.p, self.rng, self.training)


class Flatten(Module):
    def forward(self, x):
        return ops.flatten(x)


class ReLU(Module):
    def forward(self, x):
        return ops.relu(x)


class Sequential(Module):
    """Layers applied in order; their parameters are named "0.weight", "1.bias", …"""

    def __init__(self, *layers):
        for index, layer in enumerate(layers):
            setattr(self, str(index), layer)

    def forward(self, x):
        for layer in vars(self).values():
            if isinstance(layer, Module):
                x = layer(x)
        return x
