"""numba kernels: conv.py (convolution, max-pooling) and lsnn.py (the fused LSNN and its BPTT).

Importing this package makes two process-wide settings, because on a machine with few cores they decide
whether the kernels are fast (each can be overridden by setting the environment variable yourself):

- numba's OpenMP threads busy-wait after every parallel loop, and OpenBLAS's threads after every product.
  When both pools share a few cores they steal each other's time: on 2 cores the CNN's convolutions ran
  5-10x slower. OMP_WAIT_POLICY=PASSIVE (unless you set it yourself; it must be set before numba starts its
  threads) makes idle threads sleep instead; a kernel launch then costs ~15 microseconds.
- glibc gives large freed blocks back to the operating system, and memory fresh from the OS page-faults on
  its first write, once per 4 KB. A CNN training step (batch 100) wrote ~9500 such fresh pages, ~40 MB,
  every step: 50 ms of a 120 ms step on our 2-core test machine. _keep_freed_memory asks glibc to keep
  freed blocks for reuse (skipped without mallopt, or when you set MALLOC_TRIM_THRESHOLD_ yourself):
  0 page faults and 67 ms per step.
"""
import ctypes
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # must be set before numba starts its threads


def _keep_freed_memory():
    """Make glibc reuse freed memory instead of returning it to the OS (see above)."""
    if os.environ.get("MALLOC_TRIM_THRESHOLD_") is not None:
        return                                   # the user tuned malloc already
    try:
        mallopt = ctypes.CDLL(None).mallopt      # the C library this Python runs on
    except (OSError, TypeError, AttributeError):
        return                                   # no mallopt (macOS, Windows): nothing to do
    m_trim_threshold, m_mmap_threshold = -1, -3  # option codes from glibc's <malloc.h>
    mallopt(m_mmap_threshold, 32 * 2**20)        # blocks up to 32 MB (glibc's maximum) come from the heap ...
    mallopt(m_trim_threshold, 2**30)             # ... and up to 1 GB of freed heap is kept for reuse


_keep_freed_memory()
