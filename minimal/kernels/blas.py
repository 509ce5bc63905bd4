"""OpenBLAS's state in a process, which the training and evaluation paths set before their products.

Two things about NumPy's OpenBLAS (0.3.31 in NumPy 2.4, a pthreads build) that the code depends on:
- Its thread count is one number for the whole process. `openblas_set_num_threads_local`, despite its name,
  sets it for every thread (only an OpenMP build keeps one per thread): after one call from another thread, the
  1024² float32 matmul of the main thread ran at 141 GFLOP/s instead of 284 (2 cores, 2026-12-05). The training
  path's convolutions run their products one per thread of their own pool and set the count to one
  (`use_one_blas_thread`, kernels/conv.py); the evaluation paths, whose products use OpenBLAS's threads, set it
  back to the count the process started with (`prepare_blas_for_evaluation`). The evaluation paths' products
  (many rows, a short inner dimension: conv2's 1600 × 1024 @ 1024 × 64, the dense layers) gave bit-identical
  results on one OpenBLAS thread and on two: OpenBLAS splits their output between its threads. A product with a
  long inner dimension and a small output (a weight gradient, 64 × 5000 @ 5000 × 1024) did not: OpenBLAS splits
  its sums, which is one more reason the convolutions keep their products on one thread each.
- It is slow until the process's first wide product (`prepare_blas_for_evaluation` says more).
"""
import ctypes
import glob
import os

import numpy as np


def _openblas_thread_setter():
    """NumPy's OpenBLAS function that sets its thread count and returns the count before (called
    openblas_set_num_threads_local, OpenBLAS >= 0.3.27), or None where it cannot be found (another BLAS)."""
    numpy_folder = os.path.dirname(np.__file__)
    for path in (glob.glob(os.path.join(numpy_folder, os.pardir, "numpy.libs", "*openblas*"))
                 + glob.glob(os.path.join(numpy_folder, ".dylibs", "*openblas*"))):
        try:
            setter = ctypes.CDLL(path).openblas_set_num_threads_local
        except (OSError, AttributeError):
            continue
        setter.argtypes, setter.restype = [ctypes.c_int], ctypes.c_int
        return setter
    return None


def _current_count(setter):
    """OpenBLAS's thread count now: the setter returns the count it replaces, so set one and put it back."""
    count = setter(1)
    setter(count)
    return count


SET_BLAS_THREADS = _openblas_thread_setter()
STARTING_BLAS_THREADS = None if SET_BLAS_THREADS is None else _current_count(SET_BLAS_THREADS)


def blas_threads():
    """OpenBLAS's thread count in this process now (None if NumPy does not use an OpenBLAS we can find)."""
    return None if SET_BLAS_THREADS is None else _current_count(SET_BLAS_THREADS)


def use_one_blas_thread():
    """Every OpenBLAS product of the process on one thread (the training path's convolutions run several
    products at once, one per thread of their pool)."""
    if SET_BLAS_THREADS is not None:
        SET_BLAS_THREADS(1)


def use_starting_blas_threads():
    """OpenBLAS back on the thread count the process started with."""
    if SET_BLAS_THREADS is not None:
        SET_BLAS_THREADS(STARTING_BLAS_THREADS)


def prepare_blas_for_evaluation():
    """OpenBLAS as the evaluation paths (nn/inference.py, pcm.py) want it: on the thread count the process
    started with (a training step's convolutions may have set one), and warmed up.

    The warm-up, once per process: one matrix product with many columns. Measured with NumPy 2.4's OpenBLAS on
    the 2-core machine: in a process that has not yet multiplied by a matrix of ≥ 512 columns, products of conv2's
    shape (1600 × 1024 @ 1024 × 64) ran at 14 GFLOP/s on one thread; after one such product at 27-31 GFLOP/s, in
    every thread of the process (also after a float64 one, so it is OpenBLAS's own state; no page faults either
    way, and we did not find the cause). A mismatch draw of the CNN on one thread: 11.2-11.7 s without it,
    6.2-6.8 s with it. The training path's products are wide enough (filters first) to do this on their own; the
    PCM crossbar's (pcm.py) are not. Costs ~5 ms."""
    global BLAS_WARMED_UP
    use_starting_blas_threads()
    if not BLAS_WARMED_UP:
        np.ones((64, 1024), np.float32) @ np.ones((1024, 1024), np.float32)
        BLAS_WARMED_UP = True


BLAS_WARMED_UP = False
