"""python -m minimal.bench [--json] [--only GROUP] [--repeats N]

Speed figures, measured on this machine (benchmarks report; they are not tests):

  cnn   the paper's CNN at batch 100: one training step (forward, backward, Adam) in ms; the convolution kernels'
        achieved GFLOP/s inside that step beside NumPy's float32 matmul GFLOP/s; and, when PyTorch is installed,
        PyTorch's time for the same step and our/PyTorch ratio (target ≤ 1.5).

Each figure is the median over `--repeats` timed runs after warm-up runs (numba compilation is excluded).
"""
import argparse
import json
import sys
import time

import numpy as np

from .autodiff import Tensor, ops
from .kernels import conv as conv_kernels
from .nn.cnn import CNN
from .optim import Adam


def median_seconds(fn, repeats, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def matmul_gflops(repeats, n=1024):
    """NumPy (BLAS) float32 square matmul: the machine's practical peak for dense linear algebra."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    return 2 * n ** 3 / median_seconds(lambda: a @ b, repeats) / 1e9


def cnn_batch(batch_size, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((batch_size, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, batch_size)


def our_cnn_step_seconds(batch_size, repeats):
    model = CNN(np.random.default_rng(0))
    optimizer = Adam(model.parameters(), lr=1e-4)
    x, y = cnn_batch(batch_size)

    def step():
        loss = ops.cross_entropy(model(Tensor(x)), y)
        model.zero_grad()
        loss.backward()
        optimizer.step()
    return median_seconds(step, repeats)


def conv_layer_shapes(batch_size):
    """(input shape, weight shape) of the CNN's two convolutions."""
    return [((batch_size, 1, 28, 28), (64, 1, 4, 4)), ((batch_size, 64, 13, 13), (64, 64, 4, 4))]


def conv_kernels_gflops(batch_size, repeats):
    """GFLOP/s of the conv kernels as a training step uses them: forward and grad-weight of both layers and
    grad-input of the second (the first layer's input needs no gradient). 2·N·F·OH·OW·C·KH·KW flops each."""
    rng = np.random.default_rng(0)
    calls, flops = [], 0
    for layer, (x_shape, w_shape) in enumerate(conv_layer_shapes(batch_size)):
        x = rng.random(x_shape, dtype=np.float32)
        w = rng.random(w_shape, dtype=np.float32)
        out = conv_kernels.conv2d_forward(x, w, (1, 1), (0, 0))
        g = rng.random(out.shape, dtype=np.float32)
        one_pass = 2 * out.size * w_shape[1] * w_shape[2] * w_shape[3]
        calls += [lambda x=x, w=w: conv_kernels.conv2d_forward(x, w, (1, 1), (0, 0)),
                  lambda g=g, x=x, w=w: conv_kernels.conv2d_backward_weight(g, x, w.shape[2:], (1, 1), (0, 0))]
        flops += 2 * one_pass
        if layer > 0:
            calls.append(lambda g=g, w=w, x=x: conv_kernels.conv2d_backward_input(g, w, x.shape[2:], (1, 1),
                                                                                   (0, 0)))
            flops += one_pass
    seconds = median_seconds(lambda: [call() for call in calls], repeats)
    return flops / seconds / 1e9, seconds


def torch_cnn_step_seconds(batch_size, repeats):
    """The same network and step in PyTorch (CPU), or None when PyTorch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    pool = dict(kernel_size=2, ceil_mode=True)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 64, 4), torch.nn.MaxPool2d(**pool), torch.nn.ReLU(),
        torch.nn.Conv2d(64, 64, 4), torch.nn.MaxPool2d(**pool), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(1600, 256), torch.nn.ReLU(), torch.nn.Linear(256, 64), torch.nn.ReLU(),
        torch.nn.Linear(64, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x, y = cnn_batch(batch_size)
    x, y = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return median_seconds(step, repeats)


def bench_cnn(repeats, batch_size=100):
    results = {"cnn_batch_size": batch_size}
    results["cnn_step_ms"] = 1000 * our_cnn_step_seconds(batch_size, repeats)
    results["conv_gflops"], conv_seconds = conv_kernels_gflops(batch_size, repeats)
    results["conv_ms_per_step"] = 1000 * conv_seconds
    results["matmul_gflops"] = matmul_gflops(repeats)
    results["conv_fraction_of_matmul"] = results["conv_gflops"] / results["matmul_gflops"]
    torch_seconds = torch_cnn_step_seconds(batch_size, repeats)
    if torch_seconds is not None:
        results["torch_cnn_step_ms"] = 1000 * torch_seconds
        results["cnn_step_over_torch"] = results["cnn_step_ms"] / results["torch_cnn_step_ms"]
    return results


GROUPS = {"cnn": bench_cnn}


def print_table(results):
    for key, value in results.items():
        print(f"{key:28s} {value:10.3f}" if isinstance(value, float) else f"{key:28s} {value:>10}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minimal.bench", description=__doc__.split("\n\n")[1])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--only", choices=sorted(GROUPS), help="run one group")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per figure (median reported)")
    args = parser.parse_args(argv)
    results = {}
    for name, group in GROUPS.items():
        if args.only in (None, name):
            results.update(group(args.repeats))
    if args.json:
        print(json.dumps(results))
    else:
        print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
