"""Module, Parameter and Buffer: named arrays, and checkpoints as `model.npz` + `meta.json`.

A Module finds its parameters by looking at its own attributes: a Parameter is a parameter, a Module is a
sub-module whose parameters get the attribute name as a prefix ("conv1.weight"). The names are the keys of
`state_dict()` and of the parameter dicts that the attack and the mismatch sampler substitute (Θ → Θ*).
A Buffer (BatchNorm's running mean and variance) is found the same way and saved in `state_dict()` too, but it
is not a parameter: the optimiser, the attack and the mismatch sampler never see it.
"""
import os

import numpy as np

from ..autodiff import Tensor
from ..io import atomic_save_json, atomic_save_npz, load_npz

MODEL_FILE, META_FILE = "model.npz", "meta.json"


class Parameter(Tensor):
    """A trainable tensor (requires_grad is always on)."""

    def __init__(self, data):
        super().__init__(data, requires_grad=True)

    def __repr__(self):
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"


class Buffer:
    """A non-trainable array that belongs to the model's state (saved and loaded with the parameters)."""

    def __init__(self, data):
        self.data = np.asarray(data)

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    def __repr__(self):
        return f"Buffer(shape={self.shape}, dtype={self.dtype})"


class Module:
    training = True

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError

    def logits_and_penalty(self, x, params=None, **forward_options):
        """The logits and the model's own activity penalty for the training loss (none here: 0; the LSNN adds
        its firing-rate regulariser). forward_options go to forward, e.g. rng for dropout."""
        return self(x, params, **forward_options), 0.0

    def named_parameters(self, prefix=""):
        """Yield (name, Parameter) for this module and its sub-modules, in the order they were assigned."""
        return self._named(Parameter, prefix)

    def named_buffers(self, prefix=""):
        """Yield (name, Buffer) for this module and its sub-modules, in the order they were assigned."""
        return self._named(Buffer, prefix)

    def _named(self, kind, prefix):
        for name, value in vars(self).items():
            if isinstance(value, kind):
                yield prefix + name, value
            elif isinstance(value, Module):
                yield from value._named(kind, prefix + name + ".")

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def parameter_dict(self, overrides=None):
        """name -> parameter; entries of `overrides` (e.g. attacked weights Θ*) replace the model's own."""
        params = dict(self.named_parameters())
        if overrides:
            unknown = set(overrides) - set(params)
            if unknown:
                raise KeyError(f"unknown parameter names {sorted(unknown)}; the model has {sorted(params)}")
            params.update(overrides)
        return params

    def modules(self):
        yield self
        for value in vars(self).values():
            if isinstance(value, Module):
                yield from value.modules()

    def train(self, mode=True):
        for module in self.modules():
            module.training = mode
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def state_dict(self):
        """name -> a copy of the array, for every parameter and then every buffer."""
        return {name: entry.data.copy() for name, entry in self._state_entries().items()}

    def load_state_dict(self, state):
        """Copy arrays into the parameters and buffers; names and shapes must match exactly (errors name the
        mismatch)."""
        entries = self._state_entries()
        missing, unexpected = set(entries) - set(state), set(state) - set(entries)
        if missing or unexpected:
            raise KeyError(f"state dict does not match the model: missing {sorted(missing)}, "
                           f"unexpected {sorted(unexpected)}")
        for name, entry in entries.items():
            value = np.asarray(state[name])
            if value.shape != entry.shape:
                raise ValueError(f"{name!r}: checkpoint has shape {value.shape}, model has {entry.shape}")
            entry.data = value.astype(entry.dtype, copy=True)

    def _state_entries(self):
        return {**dict(self.named_parameters()), **dict(self.named_buffers())}

    def num_parameters(self):
        return int(sum(p.size for p in self.parameters()))


def subset(params, prefix):
    """The entries of `params` whose names start with `prefix`, with the prefix removed: a sub-module's share
    of its parent's parameter dict (subset(p, "stage2.0.") holds "conv1.weight", …)."""
    return {name[len(prefix):]: value for name, value in params.items() if name.startswith(prefix)}


def save_checkpoint(folder, model, meta):
    """Write `folder/model.npz` (parameters and buffers, no pickle) and `folder/meta.json`, each atomically."""
    atomic_save_npz(os.path.join(folder, MODEL_FILE), model.state_dict())
    atomic_save_json(os.path.join(folder, META_FILE), meta)


def load_checkpoint(folder):
    """Read (state dict, meta) back; a missing or unreadable file raises FileNotFoundError naming it."""
    import json
    model_path, meta_path = os.path.join(folder, MODEL_FILE), os.path.join(folder, META_FILE)
    for path in (model_path, meta_path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"checkpoint file {path} not found")
    try:
        state = load_npz(model_path)
        with open(meta_path) as f:
            meta = json.load(f)
    except (ValueError, OSError) as error:
        raise FileNotFoundError(f"checkpoint in {folder} is unreadable ({error})") from error
    return state, meta
