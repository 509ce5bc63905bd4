"""Small synthetic data sets shared by several test files."""
import numpy as np


def blobs(seed=0, n=60):
    """Three classes of 10×10 images, told apart by where a bright bar sits."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 0.3, (n, 1, 10, 10)).astype(np.float32)
    for i, label in enumerate(y):
        x[i, 0, 3 * label:3 * label + 3, 2:8] += 2
    return x, y
