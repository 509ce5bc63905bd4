"""python -m minimal.bench [--json] [--only GROUP] [--repeats N]

Speed figures, measured on this machine (benchmarks report; they are not tests):

  cnn   the paper's CNN at batch 100: one training step (forward, backward, Adam) in ms; the convolution kernels'
        achieved GFLOP/s inside that step beside NumPy's float32 matmul GFLOP/s; and, when PyTorch is installed,
        PyTorch's time for the same step and our/PyTorch ratio (target ≤ 1.5).
  lsnn  the paper's LSNN (256 neurons, 2 inputs, 100 steps) at batch 100: one BPTT training step in ms with the
        fused numba kernels (event-driven, and dense for comparison), with the reference path (autodiff ops), and
        with PyTorch when installed; the ratios (targets: fused ≤ 0.7 × PyTorch, reference ≥ 10 × fused) and the
        firing rate of the inputs used (spikes per neuron per step).
  ibp   interval bound propagation through the ECG LSNN (initial weights) on a batch of 100 real ECG beats: the
        interval pass (the reference path in interval arithmetic) against the model's normal inference path (the
        fused kernel), at ζ = 1e-5, 1e-4, 1e-3, the two timed in turns; ibp_over_point_ratio is the largest ratio
        (target ≤ 6). Beside it the firing rate and the fraction of spikes that *may* happen (may_spike, the upper
        spike bound): the work of the interval pass's recurrent product grows with the latter, the point pass's
        with the former.

  methods  the F-MNIST CNN's training step at batch 100 with `standard` and with `beta` (the paper's method,
        N_steps = 10): beta_over_standard against its limit N_steps + 3 (the algorithm needs N_steps + 2 forward/
        backward passes); and mismatch_eval_100_draws_s, the time `evaluate mismatch` needs for 100 draws over 10,000
        test-sized images (3 draws timed, scaled to 100).
  pcm   the F-MNIST CNN on the simulated PCM chip (minimal/pcm.py): programming one chip, and one read of it
        scoring 10,000 images; pcm_eval_5_times_25_repeats_s scales these to `evaluate pcm`'s default (25 chips ×
        5 times) — the number the PCM experiment reports as measured.

Each figure is the median over `--repeats` timed runs after warm-up runs (numba compilation is excluded).
"""
import argparse
import json
import sys
import time

import numpy as np

from .autodiff import Tensor, no_grad, ops
from .kernels import conv as conv_kernels
from .nn.cnn import CNN
from .nn.lsnn import LSNN
from .data.common import Split, fixed_subset
from .metrics import accuracy
from .optim import Adam
from .pcm import PCMModel
from .robust.ibp import weight_boxes
from .robust.methods import ATTACK_DEFAULTS, METHODS
from .robust.mismatch import mismatch_draws
from .tasks import TASKS, model_rng


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


# ---------------------------------------------------------------------------------------------------- LSNN
def lsnn_batch(batch_size, n_steps, n_inputs, n_classes, seed=0):
    """Unit-std white noise per input channel (the scale of the normalised ECG and speech inputs), random labels."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch_size, n_steps, n_inputs), dtype=np.float32)
    return x, rng.integers(0, n_classes, batch_size)


def our_lsnn_step_seconds(model, x, y, repeats, path="fused"):
    """One BPTT training step (forward, backward, Adam) with the firing-rate regulariser."""
    optimizer = Adam(model.parameters(), lr=1e-3)

    def step():
        logits, rate_loss = model(x, path=path, return_rate_loss=True)
        loss = ops.cross_entropy(logits, y) + rate_loss
        model.zero_grad()
        loss.backward()
        optimizer.step()
    return median_seconds(step, repeats)


def torch_lsnn_step_seconds(model, x, y, repeats):
    """The same LSNN, weights and step in PyTorch (CPU), or None when PyTorch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    d = model.dampening

    class Spike(torch.autograd.Function):
        """z = 1(V > B), backward with the surrogate of Eq. 4 (as ops.spike)."""
        @staticmethod
        def forward(ctx, v, threshold):
            ctx.save_for_backward(v, threshold)
            return (v > threshold).to(v.dtype)

        @staticmethod
        def backward(ctx, g):
            v, threshold = ctx.saved_tensors
            surrogate = d * torch.clamp(1 - torch.abs((v - threshold) / threshold), min=0)
            return g * surrogate, -g * surrogate

    params = {name: torch.tensor(p.data, requires_grad=True) for name, p in model.named_parameters()}
    off_diagonal = torch.from_numpy(model.off_diagonal.astype(np.float32))
    optimizer = torch.optim.Adam(params.values(), lr=1e-3)
    x, y = torch.from_numpy(x), torch.from_numpy(y)

    def forward():
        n_batch, n_steps, _ = x.shape
        current = x @ params["w_in"]
        w_rec = params["w_rec"] * off_diagonal
        v = b = z = torch.zeros(n_batch, model.num_hidden)
        threshold = torch.full((n_batch, model.num_hidden), model.b0)
        refractory_left = torch.zeros(n_batch, model.num_hidden, dtype=torch.int64)
        spikes = []
        for t in range(n_steps):
            v = model.rho_v * v + (1 - model.rho_v) * (current[:, t] + z @ w_rec) - z * threshold
            b = model.rho_b * b + (1 - model.rho_b) * z
            threshold = model.b0 + model.adaptation_strength * b
            z = Spike.apply(v, threshold) * (refractory_left == 0)
            refractory_left = torch.where(z > 0, model.refractory, (refractory_left - 1).clamp(min=0))
            spikes.append(z)
        rates = torch.stack(spikes, dim=1).mean(dim=1)
        rate_loss = 0.001 * ((rates.mean(dim=0) - 0.01) ** 2).mean()
        return rates @ params["w_out"] + params["b_out"], rate_loss

    def step():
        optimizer.zero_grad()
        logits, rate_loss = forward()
        (torch.nn.functional.cross_entropy(logits, y) + rate_loss).backward()
        optimizer.step()
    return median_seconds(step, repeats)


def bench_lsnn(repeats, batch_size=100, n_steps=100, n_inputs=2, n_classes=4):
    """The LSNN's BPTT training step: fused (numba kernels) vs reference (autodiff ops) vs PyTorch, and the fused
    step with event-driven vs dense kernels. Every run starts from the same initial weights. Targets: fused ≤ 0.7 ×
    PyTorch, reference ≥ 10 × fused."""
    x, y = lsnn_batch(batch_size, n_steps, n_inputs, n_classes)

    def fresh_model(event_driven=True):
        model = LSNN(np.random.default_rng(0), n_inputs, n_classes)
        model.event_driven = event_driven
        return model
    results = {"lsnn_batch_size": batch_size, "lsnn_steps": n_steps,
               "lsnn_firing_rate": float(fresh_model().record_state(x)["spikes"].mean())}
    results["lsnn_fused_step_ms"] = 1000 * our_lsnn_step_seconds(fresh_model(), x, y, repeats)
    results["lsnn_dense_step_ms"] = 1000 * our_lsnn_step_seconds(fresh_model(event_driven=False), x, y, repeats)
    results["lsnn_event_driven_speedup"] = results["lsnn_dense_step_ms"] / results["lsnn_fused_step_ms"]
    results["lsnn_reference_step_ms"] = 1000 * our_lsnn_step_seconds(fresh_model(), x, y, repeats, "reference")
    results["lsnn_reference_over_fused"] = results["lsnn_reference_step_ms"] / results["lsnn_fused_step_ms"]
    torch_seconds = torch_lsnn_step_seconds(fresh_model(), x, y, repeats)
    if torch_seconds is not None:
        results["torch_lsnn_step_ms"] = 1000 * torch_seconds
        results["lsnn_fused_over_torch"] = results["lsnn_fused_step_ms"] / results["torch_lsnn_step_ms"]
    return results


# ---------------------------------------------------------------------------------------------------- IBP
IBP_ZETAS = (1e-5, 1e-4, 1e-3)


def medians_in_turns(functions, repeats, warmup=2):
    """Median seconds of each function, timed in turns (one run of each per round): when the machine's load changes
    during the measurement, it slows all of them alike, and their ratio stays meaningful."""
    for _ in range(warmup):
        for fn in functions:
            fn()
    times = [[] for _ in functions]
    for _ in range(repeats):
        for fn, record in zip(functions, times):
            start = time.perf_counter()
            fn()
            record.append(time.perf_counter() - start)
    return [float(np.median(record)) for record in times]


def bench_ibp(repeats, batch_size=100):
    """Interval pass / point pass of the ECG LSNN on one batch of ECG beats, per ζ; the worst ratio is the key."""
    model = TASKS["ecg"].build_model(model_rng(0)).eval()
    x = fixed_subset(TASKS["ecg"].load_data(None, 0).test, batch_size).x
    results = {"ibp_batch_size": batch_size, "ibp_firing_rate": float(model.record_state(x)["spikes"].mean())}
    per_zeta, point_ms = {}, []
    with no_grad():
        for zeta in IBP_ZETAS:
            params = weight_boxes(model, zeta)
            spikes = model.reference_spikes(x, params["w_in"], params["w_rec"] * model.off_diagonal)
            per_zeta[f"ibp_may_spike_zeta_{zeta:g}"] = float(spikes.hi.mean())
            point, interval = medians_in_turns([lambda: model(x), lambda: model(x, params, path="reference")],
                                               repeats)
            point_ms.append(1000 * point)
            per_zeta[f"ibp_interval_ms_zeta_{zeta:g}"] = 1000 * interval
            per_zeta[f"ibp_ratio_zeta_{zeta:g}"] = interval / point
    results["ibp_point_ms"] = float(np.median(point_ms))
    results.update(per_zeta)
    results["ibp_over_point_ratio"] = max(results[f"ibp_ratio_zeta_{zeta:g}"] for zeta in IBP_ZETAS)
    return results


# ---------------------------------------------------------------------------------------------------- methods, PCM
def method_step_seconds(method, batch_size, repeats):
    """One training step (the method's gradient + Adam) of the F-MNIST CNN with the paper's defaults."""
    model = CNN(np.random.default_rng(0))
    optimizer = Adam(model.parameters(), lr=1e-4)
    x, y = cnn_batch(batch_size)
    rng = np.random.default_rng(1)

    def step():
        METHODS[method](model, x, y, rng, {"task": "fmnist"})
        optimizer.step()
    return median_seconds(step, repeats)


def mismatch_draw_seconds(num_images, num_draws=3):
    """Seconds per mismatch draw of the CNN over num_images images (what evaluate mismatch does per draw)."""
    model = CNN(np.random.default_rng(0)).eval()
    split = Split(np.random.default_rng(2).random((num_images, 1, 28, 28), dtype=np.float32),
                  np.zeros(num_images, dtype=np.int64))
    accuracy(model, split, 500)                                                   # warm-up
    start = time.perf_counter()
    for draw in mismatch_draws(model, 0.5, num_draws, np.random.default_rng(3)):
        accuracy(model, split, 500, draw)
    return (time.perf_counter() - start) / num_draws


def bench_methods(repeats, batch_size=100):
    steps = ATTACK_DEFAULTS["attack_steps"]
    results = {"cnn_standard_step_ms": 1000 * method_step_seconds("standard", batch_size, repeats),
               "cnn_beta_step_ms": 1000 * method_step_seconds("beta", batch_size, max(3, repeats // 4))}
    results["beta_over_standard"] = results["cnn_beta_step_ms"] / results["cnn_standard_step_ms"]
    results["beta_over_standard_limit"] = steps + 3
    results["mismatch_eval_100_draws_s"] = 100 * mismatch_draw_seconds(10_000)
    return results


def bench_pcm(repeats, num_images=10_000):
    model = CNN(np.random.default_rng(0)).eval()
    split = Split(np.random.default_rng(2).random((num_images, 1, 28, 28), dtype=np.float32),
                  np.zeros(num_images, dtype=np.int64))
    rng = np.random.default_rng(4)
    results = {"pcm_program_chip_s": median_seconds(lambda: PCMModel(model, rng), max(3, repeats // 4))}
    chip = PCMModel(model, rng)
    chip.accuracy(fixed_subset(split, 200), 25.0, rng)                            # warm-up
    start = time.perf_counter()
    chip.accuracy(split, 86400.0, rng)
    results["pcm_read_10k_images_s"] = time.perf_counter() - start
    results["pcm_eval_5_times_25_repeats_s"] = 25 * (results["pcm_program_chip_s"]
                                                     + 5 * results["pcm_read_10k_images_s"])
    return results


GROUPS = {"cnn": bench_cnn, "lsnn": bench_lsnn, "ibp": bench_ibp, "methods": bench_methods, "pcm": bench_pcm}


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
