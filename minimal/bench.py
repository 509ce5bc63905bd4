"""python -m minimal.bench [--json] [--only GROUP] [--repeats N]

Speed figures, measured on this machine (a benchmark report; timings are never tests).

How: every ratio is measured by alternation. Its two sides are timed in turns, A B A B …, two warm-up pairs (numba
compilation, caches) and then `--repeats` timed pairs, and the ratio reported is the median of the per-pair
ratios: when a busy neighbour slows the machine for a while, it slows both sides of a pair alike. A single time is
the median over `--repeats` runs. `--repeats` sets every count below.

  cnn      the paper's F-MNIST CNN at batch 100: one training step (forward, backward, Adam) in ms, against the same
           step in PyTorch (cnn_step_over_torch, target ≤ 1); the conv kernels' GFLOP/s as that step uses them,
           against NumPy's float32 1024×1024 matmul (conv_fraction_of_matmul, target ≥ 0.6).
  lsnn     the paper's LSNN (256 neurons, 2 inputs, 100 steps) at batch 100: one BPTT training step with the fused
           numba kernels, against PyTorch (lsnn_fused_over_torch), against the same kernels without the
           event-driven shortcuts (lsnn_event_driven_speedup) and against the reference path of autodiff ops
           (lsnn_reference_over_fused); lsnn_inference_ms_per_1000, the logits of 1000 ECG test beats with the
           ECG LSNN through minimal.metrics.predict_logits (the evaluation path of every ECG table).
  ibp      interval bound propagation through the ECG LSNN (initial weights) on 100 ECG test beats: the interval
           logits of minimal.robust.ibp.interval_logits against the point logits of minimal.metrics.predict_logits,
           at ζ = 1e-5, 1e-4, 1e-3; ibp_over_point_ratio is the largest (target ≤ 4). Beside it the firing rate and
           the fraction of spikes that *may* happen (the upper spike bound), which sets the interval pass's work.
  methods  the F-MNIST CNN's training step at batch 100 with `beta` (the paper's method, N_steps = 10) against
           `standard`: beta_over_standard, limit N_steps + 3 (the algorithm needs N_steps + 2 forward/backward
           passes); mismatch_eval_100_draws_s, 100 draws of minimal.robust.mismatch.mismatch_accuracies on 10,000
           images at ζ = 0.5 (what `evaluate mismatch` does for one model and one ζ), from `--repeats` draws,
           each alternating with the 1024² matmul: mismatch_draw_fraction_of_matmul, the draw's GFLOP/s (its
           convolutions and dense products) as a fraction of the matmul's, says how near the BLAS floor a draw is
           on whatever machine the bench runs.
  pcm      the F-MNIST CNN on the simulated PCM chip (minimal/pcm.py): programming one chip, one read of it scoring
           10,000 images (timed on 1000, scaled), and pcm_eval_5_times_25_repeats_s, these scaled to `evaluate
           pcm`'s default (25 chips × 5 times).

PyTorch is an optional peer, imported here only (`pip install "minimal[bench]"`); without it the PyTorch figures
are left out. It runs on as many threads as our numba kernels (torch.set_num_threads), and each peer is written
the way an experienced PyTorch user would write it, in its fastest variant measured on this machine (see
torch_cnn_step and torch_lsnn_rates). What the figures mean and what limits them: docs/performance.md.
"""
import argparse
import json
import sys
import time

import numba
import numpy as np

from .autodiff import Tensor, ops
from .data.common import Split, fixed_subset
from .kernels import conv as conv_kernels
from .kernels.blas import use_starting_blas_threads
from .metrics import predict_logits
from .nn.cnn import CNN
from .nn.lsnn import LSNN, RATE_REGULARISATION, TARGET_RATE
from .optim import Adam
from .pcm import PCMModel
from .robust.ibp import interval_logits, weight_boxes
from .robust.methods import ATTACK_DEFAULTS, METHODS
from .robust.mismatch import mismatch_accuracies
from .tasks import TASKS, model_rng


# ---------------------------------------------------------------------------------------------------- timing
def seconds(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_seconds(fn, repeats, warmup=2):
    """Median wall time of `repeats` calls of fn, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    return float(np.median([seconds(fn) for _ in range(repeats)]))


def alternating(fn_a, fn_b, repeats, warmup=2):
    """Time fn_a and fn_b in turns (A B A B …): (median seconds of A, median seconds of B, median of A/B over the
    pairs). The ratio of each pair is taken while the machine is in one state, so a change of load between
    pairs does not enter it."""
    for _ in range(warmup):
        fn_a()
        fn_b()
    pairs = np.array([(seconds(fn_a), seconds(fn_b)) for _ in range(max(1, repeats))])
    return float(np.median(pairs[:, 0])), float(np.median(pairs[:, 1])), float(np.median(pairs[:, 0] / pairs[:, 1]))


def import_torch():
    """PyTorch set to our thread count, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(numba.get_num_threads())
    return torch


# ---------------------------------------------------------------------------------------------------- CNN
def cnn_batch(batch_size, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((batch_size, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, batch_size)


def our_cnn_step(batch_size):
    """One training step of the paper's CNN (forward, cross-entropy, backward, Adam) as a function."""
    model = CNN(np.random.default_rng(0))
    optimizer = Adam(model.parameters(), lr=1e-4)
    x, y = cnn_batch(batch_size)

    def step():
        loss = ops.cross_entropy(model(Tensor(x)), y)
        model.zero_grad()
        loss.backward()
        optimizer.step()
    return step


def torch_cnn_step(torch, batch_size):
    """The same network and step in PyTorch: nn.Sequential, Adam, one batch.

    Channels-last memory format (model and input): on this CPU its oneDNN convolutions made the step 0.69× the
    time of the default NCHW format (single-threaded CPU time, alternating). Kept out, measured slower here:
    torch.compile (1.19× the channels-last step with NCHW, 1.33× with channels-last) and torch.jit.script (no
    change, 0.98× NCHW). Numbers in docs/performance.md.
    """
    torch.manual_seed(0)
    pool = dict(kernel_size=2, ceil_mode=True)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 64, 4), torch.nn.MaxPool2d(**pool), torch.nn.ReLU(),
        torch.nn.Conv2d(64, 64, 4), torch.nn.MaxPool2d(**pool), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(1600, 256), torch.nn.ReLU(), torch.nn.Linear(256, 64), torch.nn.ReLU(),
        torch.nn.Linear(64, 10)).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x, y = cnn_batch(batch_size)
    x, y = torch.from_numpy(x).contiguous(memory_format=torch.channels_last), torch.from_numpy(y)

    def step():
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return step


def matmul_gflops_function(n=1024):
    """NumPy (BLAS) float32 square matmul, the machine's practical peak for dense linear algebra: (fn, flops).
    On OpenBLAS's starting thread count: the convolutions timed beside it set the process's count to one."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)

    def matmul():
        use_starting_blas_threads()
        return a @ b
    return matmul, 2 * n ** 3


def conv_layer_shapes(batch_size):
    """(input shape, weight shape) of the CNN's two convolutions."""
    return [((batch_size, 1, 28, 28), (64, 1, 4, 4)), ((batch_size, 64, 13, 13), (64, 64, 4, 4))]


def conv_kernels_function(batch_size):
    """The conv kernels as a training step calls them (ops.conv2d): forward with bias, keeping the patch rows,
    and grad-weight from those, for both layers, and grad-input of the second (the first layer's input needs no
    gradient). Returns (fn, flops), 2·N·F·OH·OW·C·KH·KW flops per pass."""
    rng = np.random.default_rng(0)
    layers, flops = [], 0
    for layer, (x_shape, w_shape) in enumerate(conv_layer_shapes(batch_size)):
        x, w = rng.random(x_shape, dtype=np.float32), rng.random(w_shape, dtype=np.float32)
        bias = rng.random(w_shape[0], dtype=np.float32)
        g = rng.random(conv_kernels.conv2d_forward(x, w, 1, 0, bias).shape, dtype=np.float32)
        needs_input_grad = layer > 0
        layers.append((x, w, bias, g, needs_input_grad))
        flops += (3 if needs_input_grad else 2) * 2 * g.size * w_shape[1] * w_shape[2] * w_shape[3]

    def step_convolutions():
        for x, w, bias, g, needs_input_grad in layers:
            _, patches = conv_kernels.conv2d_forward(x, w, 1, 0, bias, return_patches=True)
            conv_kernels.conv2d_backward_weight(g, x, w.shape[2:], 1, 0, patches)
            if needs_input_grad:
                conv_kernels.conv2d_backward_input(g, w, x.shape[2:], 1, 0)
    return step_convolutions, flops


def bench_cnn(repeats, batch_size=100):
    results = {"cnn_batch_size": batch_size, "threads": numba.get_num_threads()}
    ours = our_cnn_step(batch_size)
    torch = import_torch()
    if torch is None:
        results["cnn_step_ms"] = 1000 * median_seconds(ours, repeats)
    else:
        ours_s, torch_s, ratio = alternating(ours, torch_cnn_step(torch, batch_size), repeats)
        results.update(cnn_step_ms=1000 * ours_s, torch_cnn_step_ms=1000 * torch_s, cnn_step_over_torch=ratio)
    conv, conv_flops = conv_kernels_function(batch_size)
    matmul, matmul_flops = matmul_gflops_function()
    conv_s, matmul_s, conv_over_matmul_time = alternating(conv, matmul, repeats)
    results.update(conv_ms_per_step=1000 * conv_s, conv_gflops=conv_flops / conv_s / 1e9,
                   matmul_gflops=matmul_flops / matmul_s / 1e9,
                   conv_fraction_of_matmul=(conv_flops / matmul_flops) / conv_over_matmul_time)
    return results


# ---------------------------------------------------------------------------------------------------- LSNN
def lsnn_batch(batch_size, n_steps, n_inputs, n_classes, seed=0):
    """Unit-std white noise per input channel (the scale of the normalised ECG and speech inputs), random labels."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch_size, n_steps, n_inputs), dtype=np.float32)
    return x, rng.integers(0, n_classes, batch_size)


def our_lsnn_step(model, x, y, path="fused"):
    """One BPTT training step (forward, backward, Adam) with the firing-rate regulariser, as a function."""
    optimizer = Adam(model.parameters(), lr=1e-3)

    def step():
        logits, rate_loss = model(x, path=path, return_rate_loss=True)
        loss = ops.cross_entropy(logits, y) + rate_loss
        model.zero_grad()
        loss.backward()
        optimizer.step()
    return step


def torch_lsnn_rates(torch, model):
    """rates(current, w_rec): the LSNN's recurrence (nn/lsnn.py, Supplementary Eq. 3, 4) in PyTorch, the firing
    rates r = mean_t z_t (N, H) from the input currents x_t W_in (N, T, H) and the masked W_rec.

    The same equations as the reference path, vectorised over batch and neurons; autograd does BPTT. The spike
    z_t = 1(V_t > B_t) with the surrogate derivative ψ = d·max(1 − |(V_t − B_t)/B_t|, 0) of Eq. 4 for V_t and −ψ
    for B_t (as ops.spike) is written with the usual detach trick, u = V − B:

        z = step(u) + ψ·(u − u.detach())         value step(u) (the second term is 0), gradient ψ·du

    which, unlike a custom autograd.Function, torch.compile can trace. The refractory counter is a float tensor
    outside the graph (m_t has no gradient).
    """
    rho_v, rho_b, b0 = model.rho_v, model.rho_b, model.b0
    beta, dampening, refractory = model.adaptation_strength, model.dampening, float(model.refractory)

    def rates(current, w_rec):
        n_batch, n_steps, n_hidden = current.shape
        v = b = z = current.new_zeros(n_batch, n_hidden)
        threshold = current.new_full((n_batch, n_hidden), b0)                      # B_{−1} (z_{−1} = 0)
        refractory_left = current.new_zeros(n_batch, n_hidden)
        total = current.new_zeros(n_batch, n_hidden)
        for t in range(n_steps):
            v = rho_v * v + (1 - rho_v) * (current[:, t] + z @ w_rec) - z * threshold
            b = rho_b * b + (1 - rho_b) * z
            threshold = b0 + beta * b
            u = v - threshold
            psi = dampening * torch.clamp(1 - torch.abs(u.detach() / threshold.detach()), min=0)
            allowed = (refractory_left == 0).to(u.dtype)                           # m_t
            z = ((u > 0).to(u.dtype) + psi * (u - u.detach())) * allowed
            refractory_left = torch.where(z.detach() > 0, refractory, (refractory_left - 1).clamp(min=0))
            total = total + z
        return total / n_steps
    return rates


def torch_lsnn(torch, model, compiled=True):
    """(params, forward): the model's parameters as PyTorch leaf tensors (copies) and forward(x) -> (logits,
    rate loss) computing what model(x, return_rate_loss=True) computes.

    compiled: the recurrence through torch.compile, measured here 2.4× faster than eager for the training step
    (single-threaded, loaded machine: 232 vs 575 ms CPU time; torch.jit.script was slower than eager, 900 ms; a
    compiled single time step no faster than eager, 622 ms). The first compilation takes minutes; torch caches it
    on disk for later runs.
    """
    params = {name: torch.tensor(p.data, requires_grad=True) for name, p in model.named_parameters()}
    off_diagonal = torch.from_numpy(model.off_diagonal.astype(model.w_rec.data.dtype))
    rates_fn = torch_lsnn_rates(torch, model)
    if compiled:
        rates_fn = torch.compile(rates_fn)

    def forward(x):
        rates = rates_fn(x @ params["w_in"], params["w_rec"] * off_diagonal)
        rate_loss = RATE_REGULARISATION * ((rates.mean(dim=0) - TARGET_RATE) ** 2).mean()
        return rates @ params["w_out"] + params["b_out"], rate_loss
    return params, forward


def torch_lsnn_step(torch, model, x, y):
    """The same LSNN, weights and training step in PyTorch (compiled recurrence, Adam)."""
    params, forward = torch_lsnn(torch, model)
    optimizer = torch.optim.Adam(params.values(), lr=1e-3)
    x, y = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        optimizer.zero_grad()
        logits, rate_loss = forward(x)
        (torch.nn.functional.cross_entropy(logits, y) + rate_loss).backward()
        optimizer.step()
    return step


def ecg_lsnn_and_beats(count):
    """The ECG task's LSNN (initial weights, eval mode) and `count` ECG test beats (the same ones every time)."""
    model = TASKS["ecg"].build_model(model_rng(0)).eval()
    return model, fixed_subset(TASKS["ecg"].load_data(None, 0).test, count).x


def bench_lsnn(repeats, batch_size=100, n_steps=100, n_inputs=2, n_classes=4):
    """The LSNN's BPTT training step: fused (numba kernels) vs PyTorch, vs dense kernels, vs the reference path
    (autodiff ops); and the evaluation path's speed on ECG beats. Every model starts from the same weights."""
    x, y = lsnn_batch(batch_size, n_steps, n_inputs, n_classes)

    def fresh_model(event_driven=True):
        model = LSNN(np.random.default_rng(0), n_inputs, n_classes)
        model.event_driven = event_driven
        return model
    results = {"lsnn_batch_size": batch_size, "lsnn_steps": n_steps,
               "lsnn_firing_rate": float(fresh_model().record_state(x)["spikes"].mean())}
    fused = our_lsnn_step(fresh_model(), x, y)
    dense_s, fused_s, dense_over_fused = alternating(our_lsnn_step(fresh_model(False), x, y), fused, repeats)
    results.update(lsnn_fused_step_ms=1000 * fused_s, lsnn_dense_step_ms=1000 * dense_s,
                   lsnn_event_driven_speedup=dense_over_fused)
    reference_s, _, reference_over_fused = alternating(our_lsnn_step(fresh_model(), x, y, "reference"), fused,
                                                       repeats)
    results.update(lsnn_reference_step_ms=1000 * reference_s, lsnn_reference_over_fused=reference_over_fused)
    torch = import_torch()
    if torch is not None:
        _, torch_s, fused_over_torch = alternating(fused, torch_lsnn_step(torch, fresh_model(), x, y), repeats)
        results.update(torch_lsnn_step_ms=1000 * torch_s, lsnn_fused_over_torch=fused_over_torch)
    model, beats = ecg_lsnn_and_beats(1000)
    results["lsnn_inference_ms_per_1000"] = 1000 * median_seconds(lambda: predict_logits(model, beats), repeats)
    return results


# ---------------------------------------------------------------------------------------------------- IBP
IBP_ZETAS = (1e-5, 1e-4, 1e-3)


def bench_ibp(repeats, batch_size=100):
    """Interval logits / point logits of the ECG LSNN on one batch of ECG beats, per ζ; the worst ratio is the key."""
    model, x = ecg_lsnn_and_beats(batch_size)
    results = {"ibp_batch_size": batch_size, "ibp_firing_rate": float(model.record_state(x)["spikes"].mean())}
    point_ms = []
    for zeta in IBP_ZETAS:
        params = weight_boxes(model, zeta)
        spikes = model.reference_spikes(x, params["w_in"], params["w_rec"] * model.off_diagonal)
        results[f"ibp_may_spike_zeta_{zeta:g}"] = float(spikes.hi.mean())
        interval, point, ratio = alternating(lambda: interval_logits(model, x, params),
                                             lambda: predict_logits(model, x, batch_size), repeats)
        point_ms.append(1000 * point)
        results[f"ibp_interval_ms_zeta_{zeta:g}"] = 1000 * interval
        results[f"ibp_ratio_zeta_{zeta:g}"] = ratio
    results["ibp_point_ms"] = float(np.median(point_ms))
    results["ibp_over_point_ratio"] = max(results[f"ibp_ratio_zeta_{zeta:g}"] for zeta in IBP_ZETAS)
    return results


# ---------------------------------------------------------------------------------------------------- methods, PCM
def method_step(method, batch_size):
    """One training step (the method's gradient + Adam) of the F-MNIST CNN with the paper's defaults, as a
    function; each call of method_step starts from the same weights."""
    model = CNN(np.random.default_rng(0))
    optimizer = Adam(model.parameters(), lr=1e-4)
    x, y = cnn_batch(batch_size)
    rng = np.random.default_rng(1)

    def step():
        METHODS[method](model, x, y, rng, {"task": "fmnist"})
        optimizer.step()
    return step


def random_images(num_images, seed=2):
    """A split of `num_images` random F-MNIST-sized images (the speed does not depend on the pixels)."""
    return Split(np.random.default_rng(seed).random((num_images, 1, 28, 28), dtype=np.float32),
                 np.zeros(num_images, dtype=np.int64))


def cnn_forward_flops_per_image(model):
    """2 × the multiply-adds of the CNN's forward pass on one 28×28 image: both convolutions and the dense layers
    (pooling, bias and ReLU are not counted)."""
    flops = 0
    for x_shape, w_shape in conv_layer_shapes(1):
        out_side = x_shape[2] - w_shape[2] + 1
        flops += 2 * out_side * out_side * int(np.prod(w_shape))
    return flops + sum(2 * model.parameter_dict()[f"{layer}.weight"].data.size for layer in ("fc1", "fc2", "fc3"))


def mismatch_draw_against_matmul(num_images, repeats):
    """One draw of mismatch_accuracies (what `evaluate mismatch` runs for each draw) for the CNN at ζ = 0.5 on
    `num_images` images, alternating with the 1024² float32 matmul: (seconds per draw, the draw's speed as a
    fraction of the matmul's GFLOP/s)."""
    model, split = CNN(np.random.default_rng(0)).eval(), random_images(num_images)
    rng = np.random.default_rng(3)
    matmul, matmul_flops = matmul_gflops_function()
    draw_s, matmul_s, draw_over_matmul_time = alternating(
        lambda: mismatch_accuracies(model, split, 0.5, 1, rng), matmul, repeats, warmup=1)
    draw_flops = num_images * cnn_forward_flops_per_image(model)
    return draw_s, (draw_flops / matmul_flops) / draw_over_matmul_time


def bench_methods(repeats, batch_size=100):
    beta_s, standard_s, ratio = alternating(method_step("beta", batch_size), method_step("standard", batch_size),
                                            repeats)
    draw_s, draw_fraction_of_matmul = mismatch_draw_against_matmul(10_000, repeats)
    return {"cnn_standard_step_ms": 1000 * standard_s, "cnn_beta_step_ms": 1000 * beta_s,
            "beta_over_standard": ratio, "beta_over_standard_limit": ATTACK_DEFAULTS["attack_steps"] + 3,
            "mismatch_eval_100_draws_s": 100 * draw_s, "mismatch_draw_fraction_of_matmul": draw_fraction_of_matmul}


def bench_pcm(repeats, num_images=1000):
    """Programming a chip, and reading it on `num_images` images, scaled to 10,000 (a read of all 10,000 takes
    minutes on our machine; the time is proportional to the images)."""
    model, split = CNN(np.random.default_rng(0)).eval(), random_images(num_images)
    rng = np.random.default_rng(4)
    results = {"pcm_program_chip_s": median_seconds(lambda: PCMModel(model, rng), repeats)}
    chip = PCMModel(model, rng)
    read_seconds = median_seconds(lambda: chip.accuracy(split, 86400.0, rng), repeats, warmup=1)
    results["pcm_read_10k_images_s"] = read_seconds * 10_000 / num_images
    results["pcm_eval_5_times_25_repeats_s"] = 25 * (results["pcm_program_chip_s"]
                                                     + 5 * results["pcm_read_10k_images_s"])
    return results


GROUPS = {"cnn": bench_cnn, "lsnn": bench_lsnn, "ibp": bench_ibp, "methods": bench_methods, "pcm": bench_pcm}


def print_table(results):
    for key, value in results.items():
        print(f"{key:32s} {value:10.3f}" if isinstance(value, float) else f"{key:32s} {value:>10}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minimal.bench", description=__doc__.split("\n\n")[1])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--only", choices=sorted(GROUPS), help="run one group")
    parser.add_argument("--repeats", type=int, default=20,
                        help="timed runs per figure; for a ratio, timed pairs (medians reported)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
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
