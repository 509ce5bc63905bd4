"""The benchmark's machinery: groups report their keys, ratios are timed in alternation, and the PyTorch LSNN peer
computes what our LSNN computes (timings themselves are never tested)."""
import numpy as np
import pytest

from minimal import bench
from minimal.autodiff import ops
from minimal.nn.lsnn import LSNN


def test_pcm_group_reports_its_keys_on_a_small_split():
    results = bench.bench_pcm(repeats=1, num_images=40)
    assert set(results) == {"pcm_program_chip_s", "pcm_read_10k_images_s", "pcm_eval_5_times_25_repeats_s"}
    assert all(value > 0 for value in results.values())


def test_method_steps_and_mismatch_draws_run():
    bench.method_step("standard", batch_size=8)()
    draw_seconds, fraction_of_matmul = bench.mismatch_draw_against_matmul(num_images=20, repeats=1)
    assert draw_seconds > 0 and fraction_of_matmul > 0


def test_cnn_forward_flops_count_every_product_of_the_paper_cnn():
    """conv1 25·25 outputs × 64 filters × 16 weights, conv2 10·10 × 64 × 64·16, dense 1600·256 + 256·64 + 64·10,
    two flops per multiply-add."""
    model = bench.CNN(np.random.default_rng(0))
    expected = 2 * (25 * 25 * 64 * 16 + 10 * 10 * 64 * 64 * 16 + 1600 * 256 + 256 * 64 + 64 * 10)
    assert bench.cnn_forward_flops_per_image(model) == expected


def test_alternating_times_the_two_sides_in_turns_and_takes_the_median_of_the_pair_ratios(monkeypatch):
    calls, durations = [], iter([1.0, 2.0, 10.0, 10.0, 3.0, 1.0])     # pairs (A, B): ratios 0.5, 1.0, 3.0
    monkeypatch.setattr(bench, "seconds", lambda fn: (fn(), next(durations))[1])
    a_seconds, b_seconds, ratio = bench.alternating(lambda: calls.append("a"), lambda: calls.append("b"),
                                                    repeats=3, warmup=1)
    assert calls == ["a", "b"] * 4                                       # one warm-up pair, then three timed pairs
    assert (a_seconds, b_seconds, ratio) == (3.0, 2.0, 1.0)             # medians of A, of B, of the ratios


def test_repeats_below_one_is_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--repeats", "0"])
    assert "--repeats must be at least 1" in capsys.readouterr().err


def our_logits_and_gradients(model, x, y):
    logits, rate_loss = model(x, return_rate_loss=True)
    model.zero_grad()
    (ops.cross_entropy(logits, y) + rate_loss).backward()
    return logits.data, {name: p.grad for name, p in model.named_parameters()}


@pytest.mark.parametrize("dtype, n_batch, n_steps, tolerance", [(np.float64, 16, 60, 1e-10),
                                                                 (np.float32, 4, 30, 1e-5)])
def test_torch_lsnn_peer_computes_our_logits_and_gradients(dtype, n_batch, n_steps, tolerance):
    """The PyTorch LSNN of the benchmark (its eager form; the benchmark runs the same function through
    torch.compile) against our fused LSNN on the same weights and inputs: the same logits, and in float64 the same
    BPTT gradients. (In float32 a batch of 100 over 100 steps has a few spikes that flip with the rounding, so the
    float32 case is kept small.)"""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    model = LSNN(rng, 3, 4, num_hidden=40, dtype=dtype)
    x, y = rng.standard_normal((n_batch, n_steps, 3)).astype(dtype), rng.integers(0, 4, n_batch)
    ours, our_grads = our_logits_and_gradients(model, x, y)
    assert 0.01 < model.record_state(x)["spikes"].mean() < 0.5             # the spikes do something
    params, forward = bench.torch_lsnn(torch, model, compiled=False)
    logits, rate_loss = forward(torch.from_numpy(x))
    np.testing.assert_allclose(logits.detach().numpy(), ours, rtol=tolerance, atol=tolerance)
    if dtype == np.float64:
        (torch.nn.functional.cross_entropy(logits, torch.from_numpy(y)) + rate_loss).backward()
        for name, p in params.items():
            np.testing.assert_allclose(p.grad.numpy(), our_grads[name], rtol=1e-9, atol=1e-12)
