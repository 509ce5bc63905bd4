"""OpenBLAS's state in a process: the products of the evaluation paths (nn/inference.py, pcm.py) warm it up."""
import numpy as np


def warm_up_blas():
    """One matrix product with many columns, once per process, before the CNN's products.

    Measured with NumPy 2.4's OpenBLAS (0.3.31) on the 2-core machine: in a process that has not yet multiplied by a
    matrix of ≥ 512 columns, products of conv2's shape (1600 × 1024 @ 1024 × 64) ran at 14 GFLOP/s on one thread;
    after one such product at 27-31 GFLOP/s, in every thread of the process (also after a float64 one, so it is
    OpenBLAS's own state; no page faults either way, and we did not find the cause). A mismatch draw of the CNN on
    one thread: 11.2-11.7 s without this call, 6.2-6.8 s with it. The training path's products are wide enough
    (filters first) to do this on their own; the PCM crossbar's (pcm.py) are not. Costs ~5 ms, once."""
    global BLAS_WARMED_UP
    if not BLAS_WARMED_UP:
        np.ones((64, 1024), np.float32) @ np.ones((1024, 1024), np.float32)
        BLAS_WARMED_UP = True


BLAS_WARMED_UP = False
