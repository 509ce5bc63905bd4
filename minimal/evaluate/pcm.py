"""python -m minimal.evaluate pcm: Fig. 4, test accuracy on simulated phase-change-memory hardware (minimal/pcm.py)
from 25 s to a year after programming, many simulated chips per network."""
import argparse
import os
import time

import numpy as np

from .. import plots
from ..cli import add_list_option, positive_int
from ..io import format_table
from ..metrics import accuracy
from ..nn.lsnn import LSNN
from ..pcm import chip_accuracies
from ..robust.mismatch import summarise
from .common import (FORWARD_BATCH, EvaluationError, add_common_options, checkpoint_record, format_cell, generator,
                     load_checkpoints, write_outputs)

NAME = "pcm"
HELP = "Fig. 4: accuracy on simulated PCM hardware over time since programming"
PCM_TIMES = (25.0, 3600.0, 86400.0, 2592000.0, 31536000.0)  # Fig. 4: 25 s, 1 hour, 1 day, 30 days, 1 year


def seconds(text):
    """A time since programming in seconds: finite and ≥ 0."""
    value = float(text)
    if not np.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"times must be finite and ≥ 0 seconds, got {text}")
    return value


def add_arguments(pcm):
    add_common_options(pcm, 200, FORWARD_BATCH)
    add_list_option(pcm, "--times", seconds, default=PCM_TIMES, metavar="T",
                    help="seconds since programming, space- or comma-separated (default: 25 s, 1 h, 1 d, 30 d, 1 y)")
    pcm.add_argument("--repeats", type=positive_int, default=25,
                     help="simulated chips per network, each programmed anew (default: 25, as the paper)")


def check_arguments(parser, args):
    args.times = sorted(set(args.times))


def format_time(seconds):
    """25 s, 1 h, 1 d, 30 d, 1 y: the paper's time axis in words."""
    for unit, size in (("y", 31536000), ("d", 86400), ("h", 3600)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size:g} {unit}"
    return f"{seconds:g} s"


def run(args):
    checkpoints = load_checkpoints(args)
    spiking = [checkpoint.label for checkpoint in checkpoints if isinstance(checkpoint.model, LSNN)]
    if spiking:
        raise EvaluationError(f"pcm simulates dense and conv layers (the CNN, ResNet-32); {spiking[0]} is an LSNN, "
                              f"whose fused recurrent kernel does not run on simulated crossbars")
    rows = [["checkpoint", "floating point"] + [f"t = {format_time(t)}" for t in args.times]]
    numeric_rows = [["checkpoint", "floating point"] + [f"{stat} t = {format_time(t)}" for t in args.times
                                                        for stat in ("mean", "std", "min")]]
    results, curves, float_accuracies = [], {}, {}
    for checkpoint in checkpoints:
        start = time.perf_counter()
        rngs = [generator(args.seed, repeat) for repeat in range(args.repeats)]
        accuracies = chip_accuracies(checkpoint.model, checkpoint.split, args.times, rngs, args.batch_size,
                                     desc=f"{checkpoint.label}: PCM chips")
        seconds = time.perf_counter() - start
        float_accuracies[checkpoint.label] = accuracy(checkpoint.model, checkpoint.split, args.batch_size)
        summaries = [summarise(accuracies[:, column]) for column in range(len(args.times))]
        rows.append([checkpoint.label, f"{100 * float_accuracies[checkpoint.label]:.2f}"]
                    + [format_cell(summary) for summary in summaries])
        numeric_rows.append([checkpoint.label, f"{100 * float_accuracies[checkpoint.label]:.4f}"]
                            + [f"{summary[stat]:.4f}" for summary in summaries for stat in ("mean", "std", "min")])
        curves[checkpoint.label] = (accuracies.mean(axis=0), accuracies.std(axis=0))
        results.append({**checkpoint_record(checkpoint), "float_accuracy": float_accuracies[checkpoint.label],
                        "seconds": seconds, "results": [
                            {"t": t, **summary, "accuracies": accuracies[:, column].tolist()}
                            for column, (t, summary) in enumerate(zip(args.times, summaries))]})
        print(f"{checkpoint.label}: {args.repeats} chips × {len(args.times)} times on {len(checkpoint.split)} "
              f"samples in {seconds:.0f} s")
    print(f"Fig. 4: {args.split} accuracy (%) on simulated PCM, mean ± std (min) over {args.repeats} chips")
    print(format_table(rows))
    write_outputs(args.out, "pcm", rows, numeric_rows=numeric_rows,
                  record={"figure": "Fig. 4", "split": args.split, "repeats": args.repeats, "seed": args.seed,
                          "times": args.times, "checkpoints": results})
    plots.plot_pcm_drift(args.times, curves, float_accuracies, os.path.join(args.out, "pcm.png"))
