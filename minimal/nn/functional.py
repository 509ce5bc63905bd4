"""The functions the models are written with, for every number system.

CNN.forward and the LSNN's reference step call these instead of the autodiff ops. Each function looks at what it
receives:

    any argument an Interval  ->  the interval version (minimal/interval.py): bounds that hold for every network
                                  in a box of weights (interval bound propagation, IBP)
    a weight that is a Crossbar -> the product on simulated PCM hardware (minimal/pcm.py): `linear` and `conv2d`
    otherwise                 ->  the autodiff op (minimal/autodiff/ops.py): Tensors, NumPy arrays and numbers

So one model definition serves both: `model(x, params={name: Interval.weight_box(Θ, ζ)})` runs the very same
lines in interval arithmetic (DESIGN.md §1). The fused LSNN kernel is the one exception: it computes points only.

Arithmetic between values of one kind can also use the operators (+, −, *, @), which Tensors and Intervals both
define; these functions are needed where a Tensor may meet an Interval (a parameter given as an Interval, say),
and for everything that is not an operator.
"""
import numpy as np

from .. import interval
from ..autodiff import ops
from ..interval import Interval
from ..pcm import Crossbar


def has_interval(*values):
    """True if any of the values is an Interval: then the interval version of an op runs."""
    for value in values:            # a loop, not any(…): this runs ~20 times per LSNN time step
        if isinstance(value, Interval):
            return True
    return False


# ---------------------------------------------------------------------------------------------------- arithmetic
def add(a, b):
    return interval.add(a, b) if has_interval(a, b) else ops.add(a, b)


def sub(a, b):
    return interval.sub(a, b) if has_interval(a, b) else ops.sub(a, b)


def mul(a, b):
    return interval.mul(a, b) if has_interval(a, b) else ops.mul(a, b)


def matmul(a, b):
    return interval.matmul(a, b) if has_interval(a, b) else ops.matmul(a, b)


def linear(x, weight, bias=None):
    """y = x W + b, with W of shape (in, out): inputs are row vectors, as in the paper."""
    y = weight.matmul(x) if isinstance(weight, Crossbar) else matmul(x, weight)
    return y if bias is None else add(y, bias)


def mean(x, axis=None):
    return interval.mean(x, axis) if has_interval(x) else ops.mean(ops.as_tensor(x), axis)


# ---------------------------------------------------------------------------------------------------- layers
def conv2d(x, weight, bias=None, stride=1, padding=0):
    if isinstance(weight, Crossbar):
        y = weight.conv2d(x, stride, padding)
        return y if bias is None else add(y, np.asarray(getattr(bias, "data", bias)).reshape(1, -1, 1, 1))
    if has_interval(x, weight, bias):
        return interval.conv2d(x, weight, bias, stride, padding)
    return ops.conv2d(x, weight, bias, stride, padding)


def max_pool2d(x, kernel_size=2, stride=None, padding=0, ceil_mode=False):
    if has_interval(x):
        return interval.max_pool2d(x, kernel_size, stride, padding, ceil_mode)
    return ops.max_pool2d(x, kernel_size, stride, padding, ceil_mode)


def relu(x):
    return interval.relu(x) if has_interval(x) else ops.relu(ops.as_tensor(x))


# ---------------------------------------------------------------------------------------------------- structure
def reshape(x, shape):
    return interval.reshape(x, shape) if has_interval(x) else ops.reshape(ops.as_tensor(x), shape)


def flatten(x):
    """(N, ...) -> (N, features): keep the batch axis, merge all others."""
    return interval.flatten(x) if has_interval(x) else ops.flatten(ops.as_tensor(x))


def concatenate(values, axis=0):
    return interval.concatenate(values, axis) if has_interval(*values) else ops.concatenate(values, axis)


# ---------------------------------------------------------------------------------------------------- spiking
def spike(v, threshold, dampening=0.3):
    """z = 1(V > B); with Tensors the backward uses the surrogate of height `dampening` (ops.spike)."""
    if has_interval(v, threshold):
        return interval.spike(v, threshold)
    return ops.spike(v, threshold, dampening)


def equal(a, value):
    """1(a = value) as 0/1 in a's dtype, for a constant `value`. A comparison has no gradient: with Tensors and
    arrays the result is a constant array."""
    if has_interval(a):
        return interval.equal(a, value)
    a = np.asarray(getattr(a, "data", a))
    return (a == value).astype(a.dtype)


def where(condition, a, b):
    """condition ? a : b elementwise, for a condition of 0/1 values (no gradient flows into the condition)."""
    if has_interval(condition, a, b):
        return interval.where(condition, a, b)
    return ops.where(condition, a, b)
