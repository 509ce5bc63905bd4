"""The benchmark's new groups run and report their keys (timings themselves are not tested)."""
from minimal import bench


def test_pcm_group_reports_its_keys_on_a_small_split():
    results = bench.bench_pcm(repeats=1, num_images=40)
    assert set(results) == {"pcm_program_chip_s", "pcm_read_10k_images_s", "pcm_eval_5_times_25_repeats_s"}
    assert all(value > 0 for value in results.values())


def test_method_steps_and_mismatch_draws_are_timed():
    assert bench.method_step_seconds("standard", batch_size=8, repeats=1) > 0
    assert bench.mismatch_draw_seconds(num_images=20, num_draws=1) > 0
