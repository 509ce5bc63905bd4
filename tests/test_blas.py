"""OpenBLAS's thread count is one number per process: the training path's convolutions set it to one, the
evaluation paths set it back to the count the process started with (minimal/kernels/blas.py)."""
import numpy as np
import pytest

from minimal.kernels import blas, conv
from minimal.metrics import predict_logits
from minimal.nn.cnn import CNN
from minimal.pcm import PCMSettings, ProgrammedMatrix

pytestmark = pytest.mark.skipif(blas.SET_BLAS_THREADS is None, reason="NumPy does not use an OpenBLAS we can find")


@pytest.fixture
def started_on_two_blas_threads(monkeypatch):
    """The process as if it had started on two OpenBLAS threads (CI may set OPENBLAS_NUM_THREADS=1)."""
    monkeypatch.setattr(blas, "STARTING_BLAS_THREADS", 2)
    before = blas.blas_threads()
    yield
    blas.SET_BLAS_THREADS(before)


def test_blas_threads_reads_what_was_set(started_on_two_blas_threads):
    blas.use_one_blas_thread()
    assert blas.blas_threads() == 1
    blas.use_starting_blas_threads()
    assert blas.blas_threads() == 2


def test_convolutions_use_one_blas_thread_and_the_evaluation_path_sets_it_back(started_on_two_blas_threads):
    rng = np.random.default_rng(0)
    blas.use_starting_blas_threads()
    conv.conv2d_forward(rng.random((3, 2, 7, 6), dtype=np.float32), rng.random((4, 2, 3, 3), dtype=np.float32))
    assert blas.blas_threads() == 1
    predict_logits(CNN(rng), rng.random((2, 1, 28, 28), dtype=np.float32))
    assert blas.blas_threads() == 2


def test_the_pcm_crossbar_sets_the_starting_count_back(started_on_two_blas_threads):
    rng = np.random.default_rng(1)
    crossbar = ProgrammedMatrix(rng.standard_normal((20, 6)), PCMSettings.ideal(), rng).read_at(25.0, rng)
    blas.use_one_blas_thread()
    crossbar.matmul(rng.standard_normal((5, 20)).astype(np.float32))
    assert blas.blas_threads() == 2


def test_a_product_is_the_same_on_one_blas_thread_or_two(started_on_two_blas_threads):
    """What lets the evaluation path change the count without changing a number: OpenBLAS splits the output of
    its products (many rows, a short inner dimension: conv2's 1600 × 1024 @ 1024 × 64, the dense layers) between
    its threads, not their sums, so they are bit-identical on one thread and on two."""
    rng = np.random.default_rng(2)
    for rows, inner, columns in [(1600, 1024, 64), (1000, 1600, 256), (37, 784, 9)]:
        a = rng.standard_normal((rows, inner)).astype(np.float32)
        b = rng.standard_normal((inner, columns)).astype(np.float32)
        blas.use_one_blas_thread()
        one = a @ b
        blas.use_starting_blas_threads()
        np.testing.assert_array_equal(one, a @ b)
