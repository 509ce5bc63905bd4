"""A training run's folder (--out): what may be there before a run starts, and the state saved after each
finished epoch (and every few minutes inside a long one) that lets a stopped run continue bit for bit
(`python -m minimal.train --resume`).

    <out>/model.npz, meta.json     the checkpoint with the best validation accuracy (meta.json: settings, history)
    <out>/resume/state.json        the commit point: the optimiser's and generator's state, the history, where in
    <out>/resume/epoch-NNNN.npz    an epoch it stopped (partial_epoch), and the name of the arrays (model +
                                   optimiser) saved last: epoch-NNNN.npz, or epoch-NNNN-step-SSSSSS.npz inside one
    <out>/.lock                    locked while a process trains here (claimed_output_folder)

A folder that holds a run is never overwritten unless asked (--overwrite); --resume refuses a folder whose
checkpoint has no resume state, and settings that differ from the recorded ones (other than those a resumed run
may change, such as the number of epochs).
"""
import contextlib
import os
import shutil

from .cli import CommandError, UsageError, check_writable_folder, first_missing_folder
from .io import atomic_save_json, atomic_save_npz, load_npz, read_json

try:
    import fcntl            # POSIX file locks; where it is missing (Windows) runs are not locked
except ImportError:
    fcntl = None

RESUME_FOLDER = "resume"
LOCK_FILE = ".lock"
SETTINGS_THAT_MAY_CHANGE_ON_RESUME = ("epochs", "max_steps", "val_samples", "val_attack", "resume", "overwrite",
                                      "out")


@contextlib.contextmanager
def claimed_output_folder(out):
    """Hold a lock on <out>/.lock while a run trains there, so that a second `train` with the same --out (another
    terminal, a second sweep) stops with one line instead of writing its checkpoints over ours, or deleting our
    resume state with --overwrite. The lock goes with the process, however it ends. A folder created here is
    removed again if the run ends before it saved anything, so a command that fails leaves no folder behind."""
    created = first_missing_folder(out)
    os.makedirs(out, exist_ok=True)
    lock = open(os.path.join(out, LOCK_FILE), "w")
    try:
        if not took_lock(lock):
            raise UsageError(f"{out} is being trained by another process right now; wait for it to end, or "
                             f"choose another --out")
        yield
    finally:
        lock.close()
        saved_nothing = not os.path.exists(os.path.join(out, "meta.json")) and not has_resume_point(out)
        if created is not None and saved_nothing:
            shutil.rmtree(created, ignore_errors=True)


def is_being_trained(out):
    """True while a process trains in `out` (holds the lock of claimed_output_folder). Tried by taking the lock
    for a moment, as a second `train` would."""
    path = os.path.join(out, LOCK_FILE)
    if not os.path.exists(path):
        return False
    with open(path) as lock:                    # closing the file gives the lock back
        return not took_lock(lock)


def took_lock(lock):
    """Take the lock on the open file `lock` for this process, without waiting: False if another process holds
    it (True where there are no locks: on Windows runs are not locked)."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def check_output_folder(settings):
    """Before any work: --out must be a writable folder, and what it holds must fit the request. Returns the
    finished run's meta when --resume finds nothing left to train (the checkpoint is then left untouched), else
    None. Raises UsageError (one line) rather than overwrite a run the user did not ask to replace."""
    out = settings["out"]
    check_writable_folder(out)
    saved = read_checked_json(os.path.join(out, "meta.json"))
    state = read_checked_json(os.path.join(out, RESUME_FOLDER, "state.json"))
    if settings.get("overwrite"):
        shutil.rmtree(os.path.join(out, RESUME_FOLDER), ignore_errors=True)  # the run starts again
        return None
    if saved is None and state is None:
        return None                                  # a new run (with --resume too: nothing to resume yet)
    if not settings.get("resume"):
        kind = "a finished run" if saved and "test_acc" in saved else "a stopped run"
        raise UsageError(f"{out} already holds {kind}; continue it with --resume, replace it with --overwrite, "
                         f"or choose another --out")
    if state is None:
        raise UsageError(f"nothing to resume in {out}: it holds a checkpoint but no {RESUME_FOLDER}/state.json; "
                         f"use --overwrite to train it again, or another --out")
    check_same_settings(out, state["meta"]["settings"], settings)
    if saved and "test_acc" in saved and not would_train_more(state["meta"], settings):
        return saved
    return None


def would_train_more(meta, settings):
    """True when a run at `meta` has epochs left and steps left under `settings`."""
    steps_left = settings["max_steps"] is None or meta["steps"] < settings["max_steps"]
    return len(meta["history"]) < settings["epochs"] and steps_left


def read_checked_json(path):
    """The JSON document at path (None when there is no file); CommandError naming it when it cannot be read or
    lacks what a run's files hold. Nothing is changed."""
    if not os.path.exists(path):
        return None
    document = read_json(path)
    fields = ("meta",) if path.endswith("state.json") else ("task", "settings")
    if not isinstance(document, dict) or not all(name in document for name in fields) or \
            (path.endswith("state.json") and not {"settings", "history", "steps"} <= set(document["meta"])):
        raise CommandError(f"{path} is unreadable or corrupt; nothing was changed (move it away, or use "
                           f"--overwrite to start the run again)")
    return document


# settings added after runs had been recorded without them: their value in those runs
DEFAULTS_OF_LATER_SETTINGS = {"keep": "best"}


def settings_differences(recorded, settings):
    """The names of the settings that differ between a run's recorded settings and `settings`, other than those a
    resumed run may change (more epochs, another step budget, …)."""
    return [name for name in settings if name not in SETTINGS_THAT_MAY_CHANGE_ON_RESUME
            and recorded.get(name, DEFAULTS_OF_LATER_SETTINGS.get(name)) != settings[name]]


def check_same_settings(out, recorded, settings):
    differences = settings_differences(recorded, settings)
    if differences:
        raise UsageError(f"cannot resume {out}: it was trained with other settings ({', '.join(differences)}); "
                         f"use another --out, or --overwrite to replace it")


def has_resume_point(out):
    return os.path.exists(os.path.join(out, RESUME_FOLDER, "state.json"))


def save_resume_point(out, model, optimizer, rng, meta, partial_epoch=None):
    """Model + optimiser arrays in one .npz, then state.json naming it (the commit point). After an epoch,
    partial_epoch is None; inside one it says how far the epoch got (see train.train_one_epoch)."""
    folder = os.path.join(out, RESUME_FOLDER)
    name = f"epoch-{len(meta['history']):04d}.npz"
    if partial_epoch is not None:
        name = f"epoch-{len(meta['history']) + 1:04d}-step-{partial_epoch['steps']:06d}.npz"
    arrays = {"model/" + k: v for k, v in model.state_dict().items()}
    arrays.update({"optimizer/" + k: v for k, v in optimizer.state_arrays().items()})
    atomic_save_npz(os.path.join(folder, name), arrays)
    atomic_save_json(os.path.join(folder, "state.json"), {"arrays": name, "rng": rng.bit_generator.state,
                                                          "meta": meta, "partial_epoch": partial_epoch})
    for old in os.listdir(folder):
        if old.startswith("epoch-") and old != name:
            os.remove(os.path.join(folder, old))


def resume_point_description(out):
    """Where the saved state stands, in words: "after epoch 3" or "in epoch 4, after step 250"."""
    state = read_json(os.path.join(out, RESUME_FOLDER, "state.json"))
    finished_epochs = len(state["meta"]["history"])
    partial = state.get("partial_epoch")
    if partial is None:
        return f"after epoch {finished_epochs}"
    return f"in epoch {finished_epochs + 1}, after step {partial['steps']}"


def resume_from(settings, model, optimizer, rng, log):
    """Restore the state saved by save_resume_point (model, optimiser, generator). Returns (meta, partial_epoch):
    partial_epoch is None when the run stopped between epochs."""
    folder = os.path.join(settings["out"], RESUME_FOLDER)
    state = read_checked_json(os.path.join(folder, "state.json"))
    try:
        arrays = load_npz(os.path.join(folder, str(state.get("arrays"))))
        model.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("model/")})
        optimizer.load_state_arrays({k[10:]: v for k, v in arrays.items() if k.startswith("optimizer/")})
        rng.bit_generator.state = state["rng"]
    except Exception as error:   # a damaged file fails in many ways: zip, missing keys, shapes, types
        raise CommandError(f"the resume state in {folder} is corrupt ({type(error).__name__}: {error}); nothing "
                           f"was changed (use --overwrite to start the run again)") from None
    meta = state["meta"]
    meta["settings"] = settings
    log(f"resuming {settings['out']} {resume_point_description(settings['out'])}")
    return meta, state.get("partial_epoch")
