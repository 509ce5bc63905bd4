"""Grading the course's exercises: `check(exercise_id, answer, …)` runs that exercise's grader.

A grader calls the student's answer (usually a function) on inputs of its own, compares the result with what the
library computes (robust/losses.py's KL, robust/jacobian.py's Jacobian, …) and either returns a line saying what
passed, which `check` prints, or raises ExerciseFailed saying what differs: the shape, which entry and by how
much, and — where a known slip explains the difference — the likely cause. The errors of the answer itself (a
NotImplementedError of the student version, a typo) pass through unchanged, so they name the exercise's own cell.

Graders register themselves with `@grader("2.3")` in exercises_NN.py, one module per notebook.
"""
import numpy as np

GRADERS = {}


class ExerciseFailed(AssertionError):
    """The answer to an exercise is wrong; the message says what is wrong."""


def grader(exercise_id):
    """Register the decorated function as the grader of `exercise_id` ("N.M": notebook N, exercise M)."""
    def register(function):
        if exercise_id in GRADERS:
            raise ValueError(f"exercise {exercise_id} has two graders")
        GRADERS[exercise_id] = function
        return function
    return register


def exercise_ids():
    """Every exercise that has a grader, in the order of the notebooks."""
    return sorted(GRADERS, key=lambda exercise_id: tuple(map(int, exercise_id.split("."))))


def check(exercise_id, answer, *context):
    """Grade the answer to an exercise: print what passed, or raise ExerciseFailed saying what is wrong."""
    if exercise_id not in GRADERS:
        raise KeyError(f"there is no exercise {exercise_id!r}; the exercises are {', '.join(exercise_ids())}")
    print(f"✔ exercise {exercise_id}: {GRADERS[exercise_id](answer, *context)}")


def fail(exercise_id, message):
    """Raise ExerciseFailed for the exercise with the message."""
    raise ExerciseFailed(f"exercise {exercise_id}: {message}")


# ---------------------------------------------------------------------------------------------------- comparing
def compare_arrays(exercise_id, what, got, expected, likely_causes=(), rtol=1e-5, atol=1e-7):
    """Fail unless `got` equals `expected` (same shape, entries within tolerance), naming the worst entry.

    likely_causes : (cause, wrong_result) pairs, each the result a known slip gives; when `got` equals one of them,
                    the message names that cause
    """
    got_array = np.asarray(got)
    expected = np.asarray(expected)
    if got_array.shape != expected.shape:
        fail(exercise_id, f"{what} has shape {got_array.shape}, expected {expected.shape}"
             + likely_cause(got_array, likely_causes))
    if not np.all(np.isfinite(got_array)):
        index = tuple(int(i) for i in np.argwhere(~np.isfinite(got_array))[0])
        fail(exercise_id, f"{what} holds {got_array[index]} at {index or 'its only entry'}")
    error = np.abs(got_array - expected) - (atol + rtol * np.abs(expected))
    if expected.ndim == 0 and error > 0:
        fail(exercise_id, f"{what} is {got_array:.6g} instead of {expected:.6g} (off by "
             f"{abs(got_array - expected):.3g})" + likely_cause(got_array, likely_causes))
    if np.any(error > 0):
        index = np.unravel_index(np.argmax(error), expected.shape)
        fail(exercise_id, f"{what} is wrong in {int(np.sum(error > 0))} of {expected.size} entries; the worst "
             f"at {tuple(int(i) for i in index)}: {got_array[index]:.6g} instead of {expected[index]:.6g} "
             f"(off by {abs(got_array[index] - expected[index]):.3g})" + likely_cause(got_array, likely_causes))


def likely_cause(got, likely_causes):
    """"; likely cause: …" for the first known slip whose result equals `got`, else ""."""
    for cause, wrong in likely_causes:
        wrong = np.asarray(wrong)
        if wrong.shape == got.shape and np.allclose(got, wrong, rtol=1e-5, atol=1e-7):
            return f". Likely cause: {cause}"
    return ""


def compare_dicts(exercise_id, what, got, expected, likely_causes=()):
    """compare_arrays for every entry of two dicts name -> array (the same names required).
    likely_causes: (cause, wrong dict) pairs."""
    if not isinstance(got, dict):
        fail(exercise_id, f"{what} should be a dict name -> array, got {type(got).__name__}")
    if set(got) != set(expected):
        fail(exercise_id, f"{what} has the names {sorted(got)}, expected {sorted(expected)}")
    for name in expected:
        compare_arrays(exercise_id, f"{what}[{name!r}]", got[name], expected[name],
                       [(cause, wrong[name]) for cause, wrong in likely_causes])
