"""The course's data, networks and training loop, small enough for a notebook on one core.

    load_course_data()        a fixed F-MNIST subset: 10 000 training, 500 validation and 1 000 test images
    course_cnn(seed)          the paper's CNN (conv 4×4 → max-pool → ReLU, twice; three dense layers) with 8 instead
                              of 64 channels and dense layers of 32 and 16 units: 8 298 parameters
    tiny_lsnn(seed, …)        the paper's LSNN with a few hidden neurons (for the spiking-network notebook)
    train(method, split, …)   minibatch training with one of minimal.robust.methods and Adam
    load_course_model(name)   a pretrained course CNN (COURSE_MODELS) from minimal/data/embedded/course/
    retrain_course_models()   trains them again, recording the validation accuracy, clean and under the weight
                              attack, every 50 steps (the Fig. S5 curves of notebook 03)
    load_course_ecg(seed)     the ECG beats as the ecg task encodes them (notebook 05, the spiking network)
    course_lsnn(seed)         the paper's LSNN for those beats with 64 instead of 256 neurons
    load_course_lsnn(name)    a pretrained course LSNN (LSNN_MODELS); retrain_course_lsnns() trains them again
"""
from pathlib import Path

import numpy as np

from ..data.common import TaskData, fixed_subset
from ..data.fmnist import load_fmnist
from ..metrics import accuracy
from ..nn.cnn import CNN
from ..nn.lsnn import LSNN
from ..nn.module import load_checkpoint, save_checkpoint
from ..optim import Adam
from ..robust.attack import attacked_accuracy
from ..robust.methods import METHODS

CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "data" / "embedded" / "course"
DATA_SIZES = {"train": 10000, "val": 500, "test": 1000}
CNN_SIZE = {"channels": 8, "hidden": (32, 16)}
TRAINING = {"steps": 600, "batch_size": 100, "lr": 3e-3, "seed": 0}
RECORD_EVERY = 50           # steps between two points of the recorded validation curves
RECORD_ATTACK_ZETA = 0.1    # ζ of the weight attack on the validation images in those curves

# name -> (method of minimal.robust.methods, its settings): β_rob = 0 is standard training (Fig. S8's first panel)
COURSE_MODELS = {
    "standard": ("standard", {}),
    "beta-0.1": ("beta", {"beta_rob": 0.1}),
    "beta-0.5": ("beta", {"beta_rob": 0.5}),
    "beta-1.0": ("beta", {"beta_rob": 1.0}),
}
# Second instances (another seed: other initial weights, minibatches and attacks) of two of them: Table 1 pools the
# draws of two instances per method, and notebook 06 does the same. name -> (method, settings, seed)
SECOND_INSTANCES = {
    "standard-seed1": ("standard", {}, 1),
    "beta-0.5-seed1": ("beta", {"beta_rob": 0.5}, 1),
}
# The paper's baselines (minimal/robust/methods.py, the paper's F-MNIST settings), trained by the same recipe for
# notebook 04. name -> (method, settings, seed)
BASELINES = {
    "forward-noise": ("forward_noise", {}, 0),
    "dropout": ("dropout", {}, 0),
    "awp": ("awp", {}, 0),
    "amp": ("amp", {}, 0),
    "abcd": ("abcd", {}, 0),
    "entropy-sgd": ("entropy_sgd", {}, 0),
    "sam": ("sam", {}, 0),
}
# name -> the course model it starts from instead of fresh weights (none at present)
WARM_STARTS = {}


def load_course_data(sizes=DATA_SIZES):
    """A fixed F-MNIST subset (the same images every time): `sizes` images of each split, drawn from the full
    splits of minimal.data.fmnist.load_fmnist (which says how to install F-MNIST when it is missing)."""
    data = load_fmnist()
    splits = {name: fixed_subset(getattr(data, name), count) for name, count in sizes.items()}
    return TaskData(classes=data.classes, source=data.source, info={"sizes": dict(sizes)}, **splits)


def course_cnn(seed=0):
    """The course's small CNN with Glorot-normal weights drawn from np.random.default_rng(seed)."""
    return CNN(np.random.default_rng(seed), **CNN_SIZE)


def tiny_lsnn(seed=0, num_inputs=8, num_classes=4, num_hidden=32):
    """The paper's LSNN (one recurrent layer of adaptive spiking neurons) with `num_hidden` neurons."""
    return LSNN(np.random.default_rng(seed), num_inputs, num_classes, num_hidden=num_hidden, readout_gain=10.0)


def train(method, split, steps, seed=0, batch_size=100, lr=1e-3, model=None, callback=None,
          callback_every=RECORD_EVERY, **settings):
    """Train `model` (default: course_cnn(seed)) for `steps` minibatches drawn from `split` and return it.

    method   : a name of minimal.robust.methods.METHODS ("standard", "beta", …); settings: its hyperparameters,
               e.g. beta_rob=0.5 (the others take the paper's F-MNIST defaults)
    callback : optional callback(step, model), called after every `callback_every` steps
    The seed fixes the initial weights, the minibatches and the method's randomness.
    """
    model = course_cnn(seed) if model is None else model
    optimizer = Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    config = {"task": "fmnist", **settings}
    for step in range(1, steps + 1):
        batch = rng.choice(len(split), batch_size, replace=False)
        METHODS[method](model, split.x[batch], split.y[batch], rng, config)
        optimizer.step()
        if callback is not None and step % callback_every == 0:
            callback(step, model)
    return model


# ---------------------------------------------------------------------------------------------------- checkpoints
def recipe(name):
    """(method, settings, seed) of the course model `name` (of COURSE_MODELS, SECOND_INSTANCES or BASELINES)."""
    if name in COURSE_MODELS:
        return (*COURSE_MODELS[name], TRAINING["seed"])
    for recipes in (SECOND_INSTANCES, BASELINES):
        if name in recipes:
            return recipes[name]
    raise KeyError(f"no course model {name!r}; choose from "
                   f"{', '.join([*COURSE_MODELS, *SECOND_INSTANCES, *BASELINES])}")


def load_course_model(name, folder=CHECKPOINT_DIR):
    """(model, meta) of the pretrained course CNN `name` (of COURSE_MODELS, SECOND_INSTANCES or BASELINES)."""
    recipe(name)  # an unknown name: a KeyError naming the choices
    state, meta = load_checkpoint(Path(folder) / name)
    model = course_cnn()
    model.load_state_dict(state)
    return model, meta


def retrain_course_models(folder=CHECKPOINT_DIR, names=tuple(COURSE_MODELS), data=None):
    """Train the course models again (TRAINING's settings) and write them to folder/<name>/ (model.npz +
    meta.json). About 40 s for the standard network and 4 min for each β network on one core.
    names: of COURSE_MODELS (the default: all of them), SECOND_INSTANCES or BASELINES."""
    data = load_course_data() if data is None else data
    for name in names:
        method, settings, seed = recipe(name)
        history = {"step": [], "clean": [], "attacked": []}
        start = WARM_STARTS.get(name)
        model = train(method, data.train, TRAINING["steps"], seed=seed,
                      model=load_course_model(start, folder)[0] if start else None,
                      batch_size=TRAINING["batch_size"], lr=TRAINING["lr"],
                      callback=lambda step, model: record(history, step, model, data.val), **settings)
        meta = {"name": name, "method": method, "settings": settings, "model": CNN_SIZE,
                "training": {**TRAINING, "seed": seed, "initial_weights": start or "Glorot normal"},
                "data": data.info["sizes"], "attack_zeta": RECORD_ATTACK_ZETA, "history": history,
                "test_accuracy": accuracy(model, data.test)}
        save_checkpoint(Path(folder) / name, model, meta)


def record(history, step, model, split):
    """Append the step and the validation accuracy, clean and after the weight attack (PGA on the cross-entropy
    of the whole split at once, ζ = RECORD_ATTACK_ZETA, seeded by the step so a rerun repeats it)."""
    history["step"].append(step)
    history["clean"].append(accuracy(model, split))
    history["attacked"].append(attacked_accuracy(model, split, "pga-ce", RECORD_ATTACK_ZETA,
                                                 np.random.default_rng(step), batch_size=len(split)))


# ---------------------------------------------------------------------------------------------------- the LSNN
# Notebook 05 (the spiking network): the paper's LSNN on the embedded ECG beats, with the ecg task's data and input
# encoding (minimal/tasks.py: both leads through a 4-tap delay line, 8 input channels) and 64 instead of 256
# neurons, trained by one recipe. name -> (method of minimal.robust.methods, its settings, seed); the settings not
# given take the paper's ECG values (forward noise η 0.3, β_rob 0.1 for forward noise + β).
LSNN_SIZE = {"num_hidden": 64}
LSNN_TRAINING = {"steps": 2000, "batch_size": 100, "lr": 3e-3, "seed": 0}
LSNN_RECORD_EVERY = 250     # steps between two points of the recorded validation curve
LSNN_MODELS = {
    "lsnn-standard": ("standard", {}, 0),
    "lsnn-forward-noise-beta": ("forward_noise_beta", {}, 0),
}


def load_course_ecg(seed=0):
    """The ECG beats as the ecg task gives them: the embedded MIT-BIH beat set split 80/10/10 by `seed`, each
    beat 100 steps of 8 channels (minimal.data.ecg's delay line). No download needed."""
    from ..tasks import TASKS
    return TASKS["ecg"].load_data(None, seed)


def course_lsnn(seed=0):
    """The course's LSNN: the ecg task's network (8 inputs, 4 classes, readout 10× Glorot) with LSNN_SIZE's
    neurons, its initial weights drawn from np.random.default_rng(seed)."""
    from ..data.ecg import CLASSES, ENCODED_CHANNELS
    return LSNN(np.random.default_rng(seed), ENCODED_CHANNELS, len(CLASSES), readout_gain=10.0, **LSNN_SIZE)


def load_course_lsnn(name, folder=CHECKPOINT_DIR):
    """(model, meta) of the pretrained course LSNN `name` (of LSNN_MODELS)."""
    if name not in LSNN_MODELS:
        raise KeyError(f"no course LSNN {name!r}; choose from {', '.join(LSNN_MODELS)}")
    state, meta = load_checkpoint(Path(folder) / name)
    model = course_lsnn()
    model.load_state_dict(state)
    return model, meta


def retrain_course_lsnns(folder=CHECKPOINT_DIR, names=tuple(LSNN_MODELS), data=None):
    """Train the course LSNNs again (LSNN_TRAINING's settings, the paper's ECG hyperparameters) and write them to
    folder/<name>/ (model.npz + meta.json), recording the validation accuracy every LSNN_RECORD_EVERY steps.
    About 1 minute for the standard network and 10 minutes for forward noise + β on one busy core."""
    data = load_course_ecg(LSNN_TRAINING["seed"]) if data is None else data
    for name in names:
        method, settings, seed = LSNN_MODELS[name]
        history = {"step": [], "clean": []}

        def record_clean(step, model):
            history["step"].append(step)
            history["clean"].append(accuracy(model, data.val))
        model = train(method, data.train, LSNN_TRAINING["steps"], seed=seed, model=course_lsnn(seed),
                      batch_size=LSNN_TRAINING["batch_size"], lr=LSNN_TRAINING["lr"], callback=record_clean,
                      callback_every=LSNN_RECORD_EVERY, task="ecg", **settings)
        meta = {"name": name, "task": "ecg", "method": method, "settings": settings, "model": LSNN_SIZE,
                "training": {**LSNN_TRAINING, "seed": seed}, "data": {split: len(getattr(data, split))
                                                                     for split in ("train", "val", "test")},
                "history": history, "test_accuracy": accuracy(model, data.test)}
        save_checkpoint(Path(folder) / name, model, meta)
