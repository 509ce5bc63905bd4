"""Optimisers (SGD with momentum / Nesterov / weight decay, Adam) and a piecewise-constant learning rate.

Each optimiser reads `p.grad` of its parameters and changes `p.data` in place. Its state (momentum buffers,
Adam's moments) lives in dicts keyed by the parameter's position in the list it was given.
"""
import numpy as np


class Optimizer:
    def __init__(self, parameters, lr):
        self.parameters = list(parameters)
        self.lr = lr

    def zero_grad(self):
        for p in self.parameters:
            p.grad = None

    def step(self):
        for index, p in enumerate(self.parameters):
            if p.grad is not None:
                self.update(index, p)

    def update(self, index, p):
        raise NotImplementedError

    def state_arrays(self):
        """The optimiser's memory as name -> array (saved with a checkpoint so training can resume)."""
        return {}

    def load_state_arrays(self, arrays):
        if arrays:
            raise ValueError(f"{type(self).__name__} keeps no state, got {sorted(arrays)}")


def _buffers_to_arrays(prefix, buffers):
    return {f"{prefix}.{index}": value for index, value in buffers.items()}


def _arrays_to_buffers(prefix, arrays):
    return {int(name.split(".")[1]): value for name, value in arrays.items() if name.startswith(prefix + ".")}


class SGD(Optimizer):
    """v ← μ v + (g + λ θ);  θ ← θ − lr · v   (Nesterov: θ ← θ − lr · (g + λ θ + μ v))."""

    def __init__(self, parameters, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(parameters, lr)
        if nesterov and momentum <= 0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        self.momentum, self.nesterov, self.weight_decay = momentum, nesterov, weight_decay
        self.velocity = {}

    def update(self, index, p):
        grad = p.grad + self.weight_decay * p.data if self.weight_decay else p.grad
        if self.momentum:
            velocity = self.velocity.get(index)
            velocity = grad.copy() if velocity is None else self.momentum * velocity + grad
            self.velocity[index] = velocity
            grad = grad + self.momentum * velocity if self.nesterov else velocity
        p.data -= self.lr * grad

    def state_arrays(self):
        return _buffers_to_arrays("velocity", self.velocity)

    def load_state_arrays(self, arrays):
        self.velocity = _arrays_to_buffers("velocity", arrays)


class Adam(Optimizer):
    """Kingma & Ba: m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²;  θ ← θ − lr · m̂ / (√v̂ + ε),
    with m̂ = m / (1 − β1ᵗ) and v̂ = v / (1 − β2ᵗ).

    t counts the updates of *this* parameter, as in PyTorch: a parameter without a gradient at a step (p.grad is
    None, e.g. a layer the loss did not reach) is skipped and its count stays put. With one global count, a
    parameter whose first gradient comes at step t would be bias-corrected as if its moments had been averaging
    for t steps while they hold one gradient: its first step, lr·sign(g) when counted right, would be ×0.48 at
    t = 10 and ×2.5 at t = 1000.
    """

    def __init__(self, parameters, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(parameters, lr)
        self.beta1, self.beta2 = betas
        self.eps, self.weight_decay = eps, weight_decay
        self.first_moment, self.second_moment = {}, {}
        self.steps = {}  # parameter index -> number of updates that parameter has had

    def update(self, index, p):
        t = self.steps[index] = self.steps.get(index, 0) + 1
        grad = p.grad + self.weight_decay * p.data if self.weight_decay else p.grad
        m = self.first_moment.get(index, 0.0) * self.beta1 + (1 - self.beta1) * grad
        v = self.second_moment.get(index, 0.0) * self.beta2 + (1 - self.beta2) * grad * grad
        self.first_moment[index], self.second_moment[index] = m, v
        m_hat = m / (1 - self.beta1 ** t)
        v_hat = v / (1 - self.beta2 ** t)
        p.data -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)

    def state_arrays(self):
        return {**_buffers_to_arrays("steps", {index: np.array(t) for index, t in self.steps.items()}),
                **_buffers_to_arrays("m", self.first_moment), **_buffers_to_arrays("v", self.second_moment)}

    def load_state_arrays(self, arrays):
        self.first_moment = _arrays_to_buffers("m", arrays)
        self.second_moment = _arrays_to_buffers("v", arrays)
        if "steps" in arrays:  # saved before the counts were per parameter: one count, of optimiser steps
            # It is what the old code used for every parameter with moments, and the per-parameter count
            # whenever every parameter got a gradient at every step (the usual training loop).
            self.steps = {index: int(arrays["steps"]) for index in self.first_moment}
        else:
            self.steps = {index: int(t) for index, t in _arrays_to_buffers("steps", arrays).items()}


class PiecewiseConstant:
    """lr = values[i] for boundaries[i-1] <= epoch < boundaries[i]: e.g. ([3], [1e-3, 1e-4]) drops at epoch 3."""

    def __init__(self, boundaries, values):
        if len(values) != len(boundaries) + 1:
            raise ValueError(f"{len(boundaries)} boundaries need {len(boundaries) + 1} values, got {len(values)}")
        if list(boundaries) != sorted(boundaries):
            raise ValueError(f"boundaries must increase, got {boundaries}")
        self.boundaries, self.values = list(boundaries), list(values)

    def __call__(self, epoch):
        return self.values[int(np.searchsorted(self.boundaries, epoch, side="right"))]
