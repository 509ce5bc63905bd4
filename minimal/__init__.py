"""minimal: a from-scratch NumPy + numba reproduction of "Network insensitivity to parameter noise via adversarial
regularization" (ICLR 2022); README.md says where everything is.

One process-wide setting is made here, because it must come before NumPy loads OpenBLAS (python -m minimal.…
imports this file first; a script that imports NumPy before minimal keeps OpenBLAS's default). The others are in
minimal/kernels/__init__.py.

OpenBLAS's worker threads wait for the next matrix product by spinning, by default for 2^28 CPU cycles (~0.1 s),
on the cores that numba's threads need for the kernels between two products. The CNN alternates the two every
millisecond (im2col, product, pooling), so a spinning BLAS thread took half of a core from every numba kernel:
the fused conv1 kernel ran as fast on two threads as on one. OPENBLAS_THREAD_TIMEOUT=4 (2^4 cycles, OpenBLAS's
minimum) makes them sleep at once; waking them costs a few microseconds per product. Measured on the 2-core
machine, other jobs paused, 2 threads: a mismatch draw of the CNN (10 000 images) 4.08 s -> 3.37 s, a CNN training
step (batch 100) 155 ms -> 134 ms. Results do not change (only when threads wait, not how they compute).
"""
import os

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")   # your own value, if you set one, is kept
