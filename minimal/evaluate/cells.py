"""An evaluation's cells, computed once: every finished cell is saved at once in <out>/<name>_cells.json, keyed by
what its numbers depend on, so a stopped evaluation continues and a new column costs only itself.
Table 1's cells are (checkpoint, ζ) (mismatch_cells, with --jobs N, N cells at a time in single-threaded
processes); the attack's (checkpoint, attack, ζ, repeat) and the landscape's (checkpoint, direction) go through a
CellStore."""
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing import get_context

import numpy as np

from ..cli import SINGLE_THREADED
from ..io import atomic_save_json
from ..robust.mismatch import mismatch_accuracies
from .common import generator


class CellStore:
    """The finished cells of one evaluation (key -> JSON value), kept in a file that is rewritten atomically after
    every new cell. computed_here counts the cells this process computed (the rest came from earlier runs)."""

    def __init__(self, path):
        self.path = path
        self.cells = load_finished_cells(path)
        self.computed_here = 0

    def __contains__(self, key):
        return key in self.cells

    def report_finished(self, keys):
        """Print how many of these keys are computed already (nothing when none are)."""
        finished = sum(key in self.cells for key in keys)
        if finished:
            print(f"{finished} of {len(keys)} cells already computed, in {self.path}")

    def add(self, key, value):
        self.cells[key] = value
        self.computed_here += 1
        atomic_save_json(self.path, self.cells)

    def record(self, keys):
        """For the evaluation's JSON record: how many cells it has, and how many of them this run computed (the
        report's wall time covers only those)."""
        return {"cells": len(keys), "cells_computed_here": self.computed_here}

    def value(self, key, compute):
        """The stored value of the cell `key`, or compute() (stored at once)."""
        if key not in self.cells:
            self.add(key, compute())
        return self.cells[key]


def timed_mismatch(checkpoint, zeta, args):
    """One cell of Table 1: the accuracies of the draws and the seconds each draw took."""
    start = time.perf_counter()
    accuracies = mismatch_accuracies(checkpoint.model, checkpoint.split, zeta, args.draws, generator(args.seed, zeta),
                                     args.batch_size, desc=f"{checkpoint.label}, ζ = {zeta:g}", noise=args.noise)
    return {"accuracies": accuracies, "seconds_per_draw": (time.perf_counter() - start) / len(accuracies)}


def timed_mismatch_cell(job):
    """timed_mismatch for one (checkpoint, ζ, args), the form a process pool can call."""
    return timed_mismatch(*job)


def mismatch_cells(checkpoints, args):
    """Every cell of Table 1, one {ζ: timed_mismatch(…)} per checkpoint. With --jobs N, N cells at a time, each
    in its own single-threaded process: one process with N threads is barely faster than one thread (much of a CNN
    forward pass is single-threaded NumPy), N processes are nearly N times faster. The result is the same either
    way, since every cell draws from its own generator (see generator()).

    Each finished cell is saved at once in <out>/mismatch_cells.json, and a cell found there is not computed
    again: an evaluation that stopped continues where it was, and adding a ζ computes only the new column."""
    store = CellStore(os.path.join(args.out, "mismatch_cells.json"))
    jobs = [(checkpoint, zeta, args) for checkpoint in checkpoints for zeta in args.zetas]
    store.report_finished([cell_key(*job) for job in jobs])
    todo = [job for job in jobs if cell_key(*job) not in store]
    for job, result in zip(todo, computed_cells(todo, args.jobs)):
        store.add(cell_key(*job), {"accuracies": result["accuracies"].tolist(),
                                   "seconds_per_draw": result["seconds_per_draw"]})
    cells = [{} for _ in checkpoints]
    for index, checkpoint in enumerate(checkpoints):
        for zeta in args.zetas:
            cell = store.cells[cell_key(checkpoint, zeta, args)]
            cells[index][zeta] = {"accuracies": np.array(cell["accuracies"]),
                                  "seconds_per_draw": cell["seconds_per_draw"]}
    return cells


def computed_cells(jobs, num_processes):
    """timed_mismatch of each (checkpoint, ζ, args) job, yielded in order as they finish."""
    if num_processes == 1:
        yield from map(timed_mismatch_cell, jobs)
        return
    with single_threaded_children(), ProcessPoolExecutor(num_processes, mp_context=get_context("spawn")) as pool:
        yield from pool.map(timed_mismatch_cell, jobs)


def cell_key(checkpoint, zeta, args):
    """What a cell's numbers depend on, as a string: the checkpoint's weights (their digest: retraining changes
    it, a fresh clone does not), ζ, and the settings of the draws and the data. Not --batch-size or --jobs,
    which change only the speed."""
    return json.dumps([checkpoint.weights, zeta, args.draws, args.seed, args.noise, args.split,
                       args.max_samples, args.data_dir])


def load_finished_cells(path):
    """The cells saved by mismatch_cells (cell_key -> accuracies, seconds per draw); none if there is no file. An
    unreadable file is reported and set aside (renamed *.unreadable), and its cells computed again."""
    if not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        os.replace(path, path + ".unreadable")
        print(f"warning: could not read {path} ({error}); moved it to {path}.unreadable, computing every cell",
              file=sys.stderr)
        return {}


@contextmanager
def single_threaded_children():
    """Processes started inside this block run numba and BLAS on one thread (a fresh interpreter reads these
    variables when it imports them); this process's own environment is restored afterwards."""
    saved = {name: os.environ.get(name) for name in SINGLE_THREADED}
    os.environ.update(SINGLE_THREADED)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
