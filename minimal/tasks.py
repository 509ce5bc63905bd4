"""The tasks `python -m minimal.train --task …` knows: where the data comes from, which model, which defaults.

Data loaders are imported only when a task is used, so `--help` stays instant.
"""
from dataclasses import dataclass

import numpy as np

from .optim import SGD, Adam


def adam(parameters, lr):
    return Adam(parameters, lr=lr)


def sgd_nesterov(parameters, lr):
    """The paper's optimiser for ResNet-32 (Supplementary "Training of CNN used for PCM-based CiM simulation"):
    SGD with Nesterov momentum 0.9 and weight decay 5e-4."""
    return SGD(parameters, lr, momentum=0.9, nesterov=True, weight_decay=5e-4)


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    load_data: callable      # (data_dir, seed) -> TaskData
    build_model: callable    # (rng) -> Module
    epochs: int
    lr: float
    lr_drop_epoch: int       # from this epoch on the learning rate is lr / lr_divisor (None: never)
    batch_size: int = 100
    later_lr_drops: tuple = ()   # epochs after lr_drop_epoch at which the learning rate is divided again
    lr_divisor: float = 10
    optimizer: callable = adam   # (parameters, lr) -> Optimizer


def _load_fmnist(data_dir, seed):
    from .data.fmnist import load_fmnist
    return load_fmnist(data_dir, seed=seed)


def _build_cnn(rng):
    from .nn.cnn import CNN
    return CNN(rng)


def _build_mlp(rng):
    from .nn.mlp import MLP
    return MLP(rng)


def _load_ecg(data_dir, seed):
    """The beats through the task's input encoding: each lead as DELAY_TAPS delayed copies (data/ecg.py)."""
    from .data.ecg import DELAY_TAPS, load_ecg
    return load_ecg(data_dir, seed=seed, delay_taps=DELAY_TAPS)


def _build_ecg_lsnn(rng):
    """The paper's LSNN with one input per delay-line channel and a readout initialised 10x Glorot (nn/lsnn.py)."""
    from .data.ecg import ENCODED_CHANNELS
    from .nn.lsnn import LSNN
    return LSNN(rng, ENCODED_CHANNELS, 4, readout_gain=10.0)


def _load_speech(data_dir, seed):
    from .data.speech import load_speech
    return load_speech(data_dir, seed=seed)


def _load_cifar10(data_dir, seed):
    from .data.cifar10 import load_cifar10
    return load_cifar10(data_dir, seed=seed)


def _build_resnet32(rng):
    from .nn.resnet import ResNet32
    return ResNet32(rng)


def _build_lsnn(num_inputs, num_classes):
    def build(rng):
        from .nn.lsnn import LSNN
        return LSNN(rng, num_inputs, num_classes)
    return build


TASKS = {
    "fmnist": Task("fmnist", "Fashion-MNIST with the paper's CNN", _load_fmnist, _build_cnn,
                   epochs=8, lr=1e-3, lr_drop_epoch=6),
    # ECG: a budget of ~5 minutes on 2 cores (docs/ecg-accuracy.md): lr 1e-2, then 1e-3 from epoch 6, 1e-4 from 9
    "fmnist-mlp": Task("fmnist-mlp", "Fashion-MNIST with an MLP (Fig. S4's inverse-weight-decay experiment)",
                       _load_fmnist, _build_mlp, epochs=8, lr=1e-3, lr_drop_epoch=6),
    "ecg": Task("ecg", "MIT-BIH ECG beats (N, L, R, V) with the paper's LSNN", _load_ecg, _build_ecg_lsnn,
                epochs=10, lr=1e-2, lr_drop_epoch=5, later_lr_drops=(8,)),
    "speech": Task("speech", "Speech Commands (6 words, MFCC) with the paper's LSNN", _load_speech,
                   _build_lsnn(40, 6), epochs=20, lr=1e-3, lr_drop_epoch=15),
    # The paper's schedule: 300 epochs, batch 256, lr 0.001 multiplied by 0.2 after epochs 60, 120 and 160.
    "cifar10": Task("cifar10", "CIFAR-10 with ResNet-32 (the PCM section)", _load_cifar10, _build_resnet32,
                    epochs=300, lr=1e-3, lr_drop_epoch=60, batch_size=256, later_lr_drops=(120, 160),
                    lr_divisor=5, optimizer=sgd_nesterov),
}


def model_rng(seed):
    """The generator that initialises a model: the same seed always gives the same initial weights."""
    return np.random.default_rng([seed, 0])


class CheckpointError(RuntimeError):
    """A checkpoint folder that cannot be used; the message names the folder and the problem."""


def load_trained_model(folder):
    """(model in eval mode, meta) from a checkpoint folder written by `python -m minimal.train`."""
    import zipfile
    from .nn.module import load_checkpoint
    try:
        state, meta = load_checkpoint(folder)
    except (FileNotFoundError, zipfile.BadZipFile) as error:
        raise CheckpointError(f"cannot read checkpoint {folder}: {error}") from None
    missing = [key for key in ("task", "method", "seed") if key not in meta]
    if missing:
        raise CheckpointError(f"checkpoint {folder} has no {', '.join(missing)} in meta.json")
    if meta["task"] not in TASKS:
        raise CheckpointError(f"checkpoint {folder} is for task {meta['task']!r}, which is not one of "
                              f"{', '.join(TASKS)}")
    model = TASKS[meta["task"]].build_model(model_rng(0))  # initial values are replaced by the checkpoint's
    try:
        model.load_state_dict(state)
    except (KeyError, ValueError) as error:
        raise CheckpointError(f"checkpoint {folder} does not fit the {meta['task']} model: {error}") from None
    return model.eval(), meta


def check_one_task(metas, folders):
    """Checkpoints of different tasks (an ECG LSNN beside an F-MNIST CNN) never share one table or test: raise
    CheckpointError naming one checkpoint of each task."""
    first_of_task = {}
    for meta, folder in zip(metas, folders):
        first_of_task.setdefault(meta["task"], folder)
    if len(first_of_task) > 1:
        named = ", ".join(f"{folder} ({task})" for task, folder in first_of_task.items())
        raise CheckpointError(f"checkpoints of different tasks cannot share a table: {named}; evaluate each task "
                              f"on its own")
