"""The PCM simulator (minimal/pcm.py): noise statistics against the paper's formulas, exactness without noise,
drift compensation, tiling, and the vectorised code against a per-device loop."""
import math

import numpy as np
import pytest
import scipy.stats

from minimal import pcm
from minimal.autodiff import no_grad, ops
from minimal.nn.cnn import CNN
from minimal.pcm import Crossbar, PCMModel, PCMSettings, ProgrammedMatrix

DEVICES = 200_000   # ≥ 10⁵ devices per statistic


def sample_std_tolerance(sigma, n, z=5):
    """|s − σ| bound: the standard error of a sample standard deviation is ≈ σ / sqrt(2n)."""
    return z * sigma / math.sqrt(2 * n)


# ---------------------------------------------------------------------------------------------------- statistics
@pytest.mark.parametrize("g_target", [5.0, 10.0, 17.5, 25.0])
def test_programming_noise_has_the_papers_mean_and_std(g_target):
    rng = np.random.default_rng(1)
    g = pcm.programmed_conductance(np.full(DEVICES, g_target), rng.standard_normal(DEVICES))
    x = g_target / 25.0
    sigma = -1.1731 * x ** 2 + 1.9650 * x + 0.2635            # σ_P of the paper, µS
    assert abs(g.mean() - g_target) < 5 * sigma / math.sqrt(DEVICES)
    assert abs(g.std() - sigma) < sample_std_tolerance(sigma, DEVICES)


def test_programmed_conductance_is_never_negative():
    g = pcm.programmed_conductance(np.zeros(1000), np.random.default_rng(0).standard_normal(1000))
    assert g.min() >= 0 and g.max() > 0


@pytest.mark.parametrize("g_target, mean, std", [(25.0, 0.049, 0.008), (0.5, 0.0850, 0.0430)])
def test_drift_exponent_statistics(g_target, mean, std):
    """μ_ν = clip(−0.0155 ln ĝ + 0.0244, 0.049, 0.1), σ_ν = clip(−0.0125 ln ĝ − 0.0059, 0.008, 0.045)."""
    expected_mean, expected_std = pcm.drift_exponent_statistics(np.array(g_target))
    assert expected_mean == pytest.approx(mean, abs=5e-4) and expected_std == pytest.approx(std, abs=5e-4)
    nu = pcm.drift_exponent(np.full(DEVICES, g_target), np.random.default_rng(2).standard_normal(DEVICES))
    folded = scipy.stats.foldnorm(expected_mean / expected_std, scale=expected_std)   # ν = |μ + σN|
    assert abs(nu.mean() - folded.mean()) < 5 * folded.std() / math.sqrt(DEVICES)
    assert abs(nu.std() - folded.std()) < sample_std_tolerance(folded.std(), DEVICES)


@pytest.mark.parametrize("t", [25.0, 86400.0, 31536000.0])
def test_read_noise_std_follows_the_1_over_f_formula(t):
    g_target, g_drifted = 12.5, 10.0
    q = min(0.0088 / (g_target / 25.0) ** 0.65, 0.2)
    sigma = g_drifted * q * math.sqrt(math.log((20.0 + t + 250e-9) / 250e-9))
    normal = np.random.default_rng(3).standard_normal(DEVICES)
    g = pcm.read_conductance(np.full(DEVICES, g_drifted), np.full(DEVICES, g_target), t, normal)
    assert abs(g.mean() - g_drifted) < 5 * sigma / math.sqrt(DEVICES)
    assert abs(g.std() - sigma) < sample_std_tolerance(sigma, DEVICES)


def test_drift_decays_as_a_power_law_and_not_at_t_zero():
    g, nu = np.array([10.0, 20.0]), np.array([0.05, 0.1])
    assert np.array_equal(pcm.drifted_conductance(g, nu, 0.0), g)
    expected = g * (1 + 3600.0 / 20.0) ** (-nu)
    np.testing.assert_allclose(pcm.drifted_conductance(g, nu, 3600.0), expected)


# -------------------------------------------------------------------------------------------------- mapping, converters
def test_differential_pair_maps_the_largest_weight_to_g_max():
    w = np.array([[0.5, -2.0], [1.0, 0.0]])
    g_plus, g_minus, per_siemens = pcm.target_conductances(w, 25.0)
    np.testing.assert_allclose((g_plus - g_minus) * per_siemens, w)
    assert g_minus.max() == 25.0 and g_plus.min() == 0 and g_minus.min() == 0
    assert np.all((g_plus == 0) | (g_minus == 0))


def test_clipping_bounds_the_weights_at_n_sigma():
    w = np.random.default_rng(4).standard_normal((50, 40)) ** 3
    clipped = pcm.clip_weights(w, 2.0)
    assert np.abs(clipped).max() == pytest.approx(2.0 * w.std())
    assert pcm.clip_weights(w, None) is w


def test_quantise_has_2L_plus_1_levels_and_half_step_error():
    values = np.linspace(-1.2, 1.2, 10001)
    q = pcm.quantise(values, 4, 1.0)                          # L = 7 levels each side, step 1/7
    assert len(np.unique(q)) == 15 and q.max() == 1.0 and q.min() == -1.0
    inside = np.abs(values) <= 1
    assert np.abs(q - values)[inside].max() <= 0.5 / 7 + 1e-12
    assert pcm.quantise(values, None, 1.0) is values


# ---------------------------------------------------------------------------------------------------- the chip
def crossbar_for(weight, settings, seed=0):
    return ProgrammedMatrix(weight, settings, np.random.default_rng(seed)).read_at(0.0, np.random.default_rng(seed))


@pytest.mark.parametrize("shape, tile", [((7, 5), 256), ((300, 9), 256), ((300, 270), 64), ((33, 17), 1)])
def test_ideal_crossbar_equals_the_float_product_for_any_tiling(shape, tile):
    rng = np.random.default_rng(5)
    w, x = rng.standard_normal(shape).astype(np.float32), rng.standard_normal((11, shape[0])).astype(np.float32)
    y = crossbar_for(w, PCMSettings.ideal(tile_size=tile)).matmul(x)
    np.testing.assert_allclose(y, x @ w, rtol=1e-4, atol=1e-4 * np.abs(x @ w).max())


@pytest.mark.parametrize("stride, padding", [(1, 0), (2, 1), (3, 2)])
def test_ideal_crossbar_convolution_equals_conv2d(stride, padding):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 5, 9, 11)).astype(np.float32)
    kernel = rng.standard_normal((7, 5, 3, 2)).astype(np.float32)
    y = crossbar_for(kernel, PCMSettings.ideal(tile_size=16)).conv2d(x, stride, padding)
    expected = ops.conv2d(x, kernel, None, stride, padding).data
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_image_patches_are_one_row_per_patch_in_kernel_order():
    """Row (n, i, j) holds the input window under output pixel (i, j) of sample n, flattened as (c, u, v)."""
    x = np.random.default_rng(8).standard_normal((2, 3, 6, 5)).astype(np.float32)
    patches, out_h, out_w = pcm.image_patches(x, 3, 2, stride=(2, 1), padding=(1, 0))
    assert (out_h, out_w) == (3, 4) and patches.shape == (2 * 3 * 4, 3 * 3 * 2) and patches.dtype == np.float32
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (0, 0)))
    for n, i, j in [(0, 0, 0), (1, 2, 3), (1, 1, 0)]:
        window = padded[n, :, 2 * i:2 * i + 3, j:j + 2]
        np.testing.assert_array_equal(patches[(n * out_h + i) * out_w + j], window.reshape(-1))


def test_cnn_on_an_ideal_chip_gives_the_float_logits():
    rng = np.random.default_rng(7)
    model = CNN(rng)
    model.eval()
    x = rng.standard_normal((5, 1, 28, 28)).astype(np.float32)
    with no_grad():
        expected = model(x).data
    logits = PCMModel(model, rng, PCMSettings.ideal()).logits(x, 0.0, rng)
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_8_bit_converters_stay_close_to_the_float_product():
    rng = np.random.default_rng(8)
    w, x = rng.standard_normal((300, 20)), rng.random((64, 300))
    y = crossbar_for(w, PCMSettings.ideal(dac_bits=8, adc_bits=8)).matmul(x)
    relative_error = np.abs(y - x @ w).max() / np.abs(x @ w).max()
    assert 0 < relative_error < 0.05


def test_drift_compensation_restores_the_output_scale():
    """A year of drift shrinks every conductance by ≈ (t/t_c)^−ν ≈ 0.5; GDC's reference read undoes it."""
    rng = np.random.default_rng(9)
    w, x = rng.standard_normal((400, 30)), rng.standard_normal((50, 400))
    year = 365 * 86400.0

    def output_scale(compensate):
        settings = PCMSettings.ideal(drift=True, drift_compensation=compensate)
        crossbar = ProgrammedMatrix(w, settings, np.random.default_rng(1)).read_at(year, np.random.default_rng(2))
        return np.linalg.norm(crossbar.matmul(x)) / np.linalg.norm(x @ w)

    assert output_scale(False) < 0.6
    assert output_scale(True) == pytest.approx(1.0, abs=0.03)


def test_a_chip_reads_the_same_programmed_devices_at_every_time():
    rng = np.random.default_rng(10)
    matrix = ProgrammedMatrix(rng.standard_normal((20, 6)), PCMSettings(read_noise=False, drift_compensation=False),
                              rng)
    early, late = matrix.read_at(25.0, rng), matrix.read_at(3600.0, rng)
    assert np.all(np.abs(late.conductance) <= np.abs(early.conductance) + 1e-6)    # drift only decays


def test_crossbar_names_the_shapes_that_do_not_fit():
    crossbar = crossbar_for(np.ones((4, 3)), PCMSettings.ideal())
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(2, 5\)"):
        crossbar.matmul(np.ones((2, 5)))
    with pytest.raises(ValueError, match="not a conv kernel"):
        crossbar.conv2d(np.ones((1, 1, 4, 4)))


# ---------------------------------------------------------------------------------------------------- vectorised = loop
def per_device_pipeline(g_target, program_normal, nu_normal, read_normal, t):
    """The paper's equations device by device, with math instead of NumPy."""
    out = np.empty_like(g_target)
    for index, g_t in np.ndenumerate(g_target):
        x = g_t / 25.0
        g_p = max(g_t + max(-1.1731 * x * x + 1.9650 * x + 0.2635, 0.0) * program_normal[index], 0.0)
        log_x = math.log(max(x, 1e-7))
        mean = min(max(-0.0155 * log_x + 0.0244, 0.049), 0.1)
        std = min(max(-0.0125 * log_x - 0.0059, 0.008), 0.045)
        nu = abs(mean + std * nu_normal[index])
        g_d = g_p * ((20.0 + t) / 20.0) ** (-nu)
        q = min(0.0088 / max(x, 1e-7) ** 0.65, 0.2)
        g_r = g_d + g_d * q * math.sqrt(math.log((20.0 + t + 250e-9) / 250e-9)) * read_normal[index]
        out[index] = max(g_r, 0.0)
    return out


def test_vectorised_device_model_equals_a_per_device_loop():
    rng = np.random.default_rng(11)
    g_target = rng.uniform(0, 25, (2, 9, 7))
    g_target[0, 0, :3] = 0.0                                 # unused devices (zero weights) included
    normals = [rng.standard_normal(g_target.shape) for _ in range(3)]
    t = 86400.0
    g_p = pcm.programmed_conductance(g_target, normals[0])
    g_d = pcm.drifted_conductance(g_p, pcm.drift_exponent(g_target, normals[1]), t)
    vectorised = pcm.read_conductance(g_d, g_target, t, normals[2])
    np.testing.assert_allclose(vectorised, per_device_pipeline(g_target, *normals, t), rtol=1e-12, atol=1e-12)


def per_device_product(x, conductance, compensation, settings, weight_per_siemens):
    """DAC → tiles → ADC → GDC one number at a time."""
    levels_in, levels_out = 2 ** (settings.dac_bits - 1) - 1, 2 ** (settings.adc_bits - 1) - 1
    rows, columns = conductance.shape
    y = np.zeros((x.shape[0], columns))
    for n in range(x.shape[0]):
        scale = max(abs(v) for v in x[n]) or 1.0
        codes = [round(v / scale * levels_in) for v in x[n]]
        for tile, start in enumerate(range(0, rows, settings.tile_size)):
            for j in range(columns):
                current = sum(codes[i] * conductance[i, j] for i in range(start, min(start + settings.tile_size, rows)))
                full_scale = settings.adc_range * settings.g_max * levels_in
                step = full_scale / levels_out
                level = min(max(round(current / step), -levels_out), levels_out)
                y[n, j] += level * step * compensation[tile, j]
        y[n] *= scale / levels_in * weight_per_siemens
    return y


def test_vectorised_crossbar_product_equals_a_per_device_loop():
    rng = np.random.default_rng(12)
    settings = PCMSettings(tile_size=5, dac_bits=5, adc_bits=6, adc_range=2.0)
    conductance = rng.uniform(-25, 25, (13, 4)).astype(np.float32)
    compensation = rng.uniform(0.9, 1.1, (3, 4)).astype(np.float32)
    x = rng.standard_normal((6, 13)).astype(np.float32)
    crossbar = Crossbar(conductance, 0.01, compensation, settings)
    expected = per_device_product(x.astype(np.float64), conductance.astype(np.float64),
                                  compensation.astype(np.float64), settings, 0.01)
    np.testing.assert_allclose(crossbar.matmul(x), expected, rtol=1e-5, atol=1e-6)


def test_resnet_runs_on_the_chip_exactly_when_ideal_and_close_when_noisy():
    from minimal.nn.resnet import ResNet, ResNet32
    rng = np.random.default_rng(13)
    small = ResNet(rng, widths=(4, 8, 8), blocks_per_stage=1).eval()
    x = rng.standard_normal((3, 3, 12, 12)).astype(np.float32)
    with no_grad():
        expected = small(x).data
    ideal = PCMModel(small, rng, PCMSettings.ideal()).logits(x, 0.0, rng)
    np.testing.assert_allclose(ideal, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    resnet = ResNet32(rng).eval()
    chip = PCMModel(resnet, rng)
    assert len(chip.programmed) == 1 + 30 + 1                 # every conv kernel and the dense weight
    x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    with no_grad():
        expected = resnet(x).data
    logits = chip.logits(x, 86400.0, rng)
    assert logits.shape == (2, 10) and np.corrcoef(logits.ravel(), expected.ravel())[0, 1] > 0.9
