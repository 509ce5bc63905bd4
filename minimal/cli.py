"""What every command line of minimal shares: argparse with one-line errors, number types, lists, and the rule
that a failure prints one `error:` line (never a traceback) and loses nothing.

    python -m minimal.train / evaluate / sweep   parse with OneLineErrorParser and run with `run_reporting_errors`
"""
import argparse
import os
import shutil
import sys
import tempfile

import numpy as np
from tqdm import tqdm

EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130   # 130 = 128 + SIGINT, what a shell reports for Ctrl-C
# the variables that set numba's and the BLAS libraries' thread counts; a child process started with each at "1"
# runs on one core (the sweep's jobs on a scheduler, evaluate's --jobs cells, the notebook tests)
SINGLE_THREADED = {name: "1" for name in ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                          "MKL_NUM_THREADS")}


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a bad value gets a single error line (no usage dump) and exit code 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


class CommandError(RuntimeError):
    """An error the user can fix; the command prints its message as one line. `exit_code` says which kind."""
    exit_code = EXIT_ERROR


class UsageError(CommandError):
    """The command line asks for something that cannot be done as asked (exit code 2, like argparse)."""
    exit_code = EXIT_USAGE


# ---------------------------------------------------------------------------------------------------- numbers
def positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def nonnegative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer ≥ 0, got {text}")
    return value


def positive_float(text):
    value = float(text)
    if not np.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def nonnegative_float(text):
    value = float(text)
    if not np.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number ≥ 0, got {text}")
    return value


# ---------------------------------------------------------------------------------------------------- lists
def add_list_option(parser, name, item_type, choices=None, **options):
    """An option that takes several values, written either way: `--zetas 0 0.1 0.2` or `--zetas 0,0.1,0.2`
    (or a mix). item_type converts one value; choices, if given, lists the allowed ones."""
    parser.add_argument(name, nargs="+", type=comma_separated(item_type, choices), action=ExtendFlat, **options)


def comma_separated(item_type, choices=None):
    """argparse type: 'a,b,c' -> [item_type(a), item_type(b), item_type(c)], each checked against choices."""
    def parse(text):
        values = [convert(item_type, part.strip()) for part in text.split(",") if part.strip()]
        unknown = [value for value in values if choices is not None and value not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"invalid choice: {unknown[0]!r} (choose from "
                                             f"{', '.join(map(repr, choices))})")
        if not values:
            raise argparse.ArgumentTypeError(f"expected at least one value, got {text!r}")
        return values
    return parse


def convert(item_type, text):
    """item_type(text), with a ValueError turned into argparse's kind of error (one line naming the value)."""
    try:
        return item_type(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"invalid value {text!r} ({error})") from None


class ExtendFlat(argparse.Action):
    """Store the values of all words of one option as one flat list (each word may hold a comma list)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, [value for word in values for value in word])


# ---------------------------------------------------------------------------------------------------- folders
def check_writable_folder(folder, what="--out"):
    """Check, before any work is done, that files can be written into `folder` (created if needed, and removed
    again if it was created here, so a command that fails later leaves no empty folder behind). Raises UsageError
    naming the folder when it is a file, cannot be created, or is read-only."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UsageError(f"{what} {folder} is a file, not a folder")
    first_created = first_missing_folder(folder)
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise UsageError(f"{what} {folder} is not writable: {error.strerror}") from None
    finally:
        if first_created is not None and os.path.isdir(first_created):
            shutil.rmtree(first_created)


def first_missing_folder(folder):
    """The outermost folder on the way to `folder` that does not exist yet (None if `folder` exists)."""
    missing = None
    path = os.path.abspath(folder)
    while not os.path.exists(path):
        missing, path = path, os.path.dirname(path)
    return missing


# ---------------------------------------------------------------------------------------------------- running
def run_reporting_errors(body, interrupted_message, expected=()):
    """Run a command's body and return its exit code; what a user can cause becomes one `error:` line.

    interrupted_message : what Ctrl-C leaves behind and how to continue: a string, or a function returning one
                          (called when the interrupt arrives, so it can name what was saved by then)
    expected            : further exception types whose message is meant for the user (exit code 1)
    """
    try:
        body()
    except CommandError as error:
        return fail(error, error.exit_code)
    except KeyboardInterrupt:
        message = interrupted_message() if callable(interrupted_message) else interrupted_message
        return fail(f"interrupted; {message}", EXIT_INTERRUPTED)
    except MemoryError:
        return fail("out of memory; use a smaller --batch-size (or --max-samples where there is one)", EXIT_ERROR)
    except BrokenPipeError:     # whoever read our output stopped early (`… | head`): end quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # so that Python's last flush cannot fail
        return EXIT_ERROR
    except expected as error:
        return fail(error, EXIT_ERROR)
    return 0


def fail(message, exit_code):
    print(f"error: {message}", file=sys.stderr)
    return exit_code


def progress_bar(iterable=None, **options):
    """A tqdm bar on a terminal, none in a log file (its carriage returns would hide the lines printed after it,
    so `grep ^epoch` finds the epoch lines)."""
    return tqdm(iterable, leave=False, mininterval=0.5, disable=None, **options)
