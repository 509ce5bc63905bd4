"""A phase-change-memory (PCM) crossbar, simulated: the paper's "PCM noise model" (Supplementary) in NumPy.

An analog in-memory-computing chip stores each weight matrix W (in × out) as conductances and multiplies by it
with Ohm's and Kirchhoff's laws. What happens to a weight on its way there, one short function per step:

    W ──clip to ±n·σ──► map to a differential pair: W ∝ g⁺ − g⁻, 0 ≤ g ≤ g_max = 25 µS (the layer's max|W| ↦ g_max)
      ──program──► g_P = g_T + N(0, σ_P(g_T)),  σ_P = max(−1.1731 ĝ² + 1.9650 ĝ + 0.2635, 0) µS, ĝ = g_T / g_max
      ──drift────► g_D(t) = g_P · ((t_c + t) / t_c)^(−ν),  ν ~ N(μ_ν(g_T), σ_ν(g_T)) per device
      ──read─────► g_R(t) = g_D(t) + N(0, σ_R),  σ_R = g_D · Q(g_T) · sqrt(log((t_c + t + t_r) / t_r))
                   Q = min(0.0088 / ĝ^0.65, 0.2), t_r = 250 ns   (1/f noise accumulated since programming)

t is the time since programming ended (t_inference); t_c = 20 s is when the devices were first read, the
reference time of the drift fit.

Where these lines differ from the formulas as the paper prints them (DESIGN.md §4), and why:
- drift: the paper writes g(t) = g_P (t/t_c)^(−ν), with t counted from programming, so that the factor is 1 at
  the first read, t = t_c. Here t counts from the end of programming with t = 0 taken as that first read, so
  the time since programming is t_c + t and the factor is ((t_c + t)/t_c)^(−ν): 1 at t = 0, then as the paper's.
- read noise: the paper's σ(t) = g(t)·Q·sqrt(log((t + t_r)/t_r)), with its t, is here log((t_c + t + t_r)/t_r):
  the same time since programming, t_c + t.
- Q and σ_P take ĝ = g_T / g_max, the normalised target conductance: the paper states that its statistical
  models assume normalised conductances; σ_P is then scaled back to µS. The drift-exponent statistics μ_ν, σ_ν
  (in `drift_exponent_statistics`) are the ones fitted on measured PCM devices by Nandakumar et al. / Joshi et
  al. (2020), which the paper's simulator uses.

The matrix-vector product on the chip:

    DAC:   each input vector is scaled by its own max |x| and quantised to `dac_bits` (signed)
    tiles: W is cut into 256 × 256 tiles; each tile computes x_q · (g⁺ − g⁻) on its own
    ADC:   each tile's column currents are clipped to ±`adc_range` (in units of g_max × a full-scale input)
           and quantised to `adc_bits`; the tile outputs are summed digitally
    GDC:   global drift compensation: every tile is read once with an all-ones input right after programming
           (stored); at time t the same read gives a factor α(t) = Σ|y(t_c)| / Σ|y(t)| that rescales the tile's
           outputs, which undoes the average drift (not the device-to-device spread of ν, which is what hurts)

Then the outputs are scaled back to weight units (max|W| / g_max) and by the input scale. Biases, pooling,
ReLU and batch norm stay digital.

Using it: `chip = PCMModel(model, rng)` programs every weight matrix (every parameter with ≥ 2 axes: dense
weights and conv kernels) once; `chip.params_at(t, rng)` reads the chip at time t and returns a parameter dict in
which those weights are `Crossbar`s. The models' `forward(x, params)` calls `functional.linear` / `conv2d`, which
hand the product to `Crossbar.matmul` / `Crossbar.conv2d` — the same model code, run on simulated hardware.
`chip.accuracy(split, t, rng)` does that over a data split.
"""
from dataclasses import dataclass

import numpy as np

from .autodiff import no_grad
from .cli import progress_bar
from .kernels import conv as conv_kernels
from .kernels.blas import prepare_blas_for_evaluation

G_MAX = 25.0          # µS, the largest target conductance
T_READ = 250e-9       # s, t_r of the 1/f read-noise fit
T_FIRST_READ = 20.0   # s, t_c: the first read after programming, reference time of the drift fit
TILE_SIZE = 256       # rows and columns of one crossbar tile
ROWS_PER_PASS = 2048  # input vectors per NumPy pass: speed and memory only, results do not depend on it
SAMPLES_PER_CONV_PASS = 16  # images whose patches are cut at once (the same: speed and memory only)


@dataclass
class PCMSettings:
    """What the simulated chip does. Switch a noise source off with its flag; bits=None means an exact
    (unquantised) converter; clip_sigmas=None maps the weights without clipping."""
    g_max: float = G_MAX
    clip_sigmas: float = 2.5          # weights clipped to ±clip_sigmas·std(W) of their layer before mapping
    programming_noise: bool = True
    drift: bool = True
    read_noise: bool = True
    drift_compensation: bool = True   # GDC
    dac_bits: int = 8
    adc_bits: int = 8
    adc_range: float = 10.0           # ADC full scale, in units of g_max × full-scale input
    tile_size: int = TILE_SIZE
    t_first_read: float = T_FIRST_READ
    t_read: float = T_READ

    @classmethod
    def ideal(cls, **changes):
        """A noiseless, exact chip (for tests: it must give the float network's outputs)."""
        settings = dict(clip_sigmas=None, programming_noise=False, drift=False, read_noise=False,
                        dac_bits=None, adc_bits=None)
        return cls(**{**settings, **changes})


# ---------------------------------------------------------------------------------------------------- device physics
def clip_weights(weight, clip_sigmas):
    """W clipped to ±n·std(W) (n = clip_sigmas); None leaves it as it is."""
    if clip_sigmas is None:
        return weight
    bound = clip_sigmas * weight.std()
    return np.clip(weight, -bound, bound)


def target_conductances(weight, g_max):
    """The differential pair: g⁺ holds the positive weights, g⁻ the negative ones, both in [0, g_max] µS.

    Returns (g_plus, g_minus, weight_per_siemens) with W = (g⁺ − g⁻) · weight_per_siemens.
    """
    w_max = np.abs(weight).max()
    weight_per_siemens = w_max / g_max if w_max > 0 else 1.0
    g_plus = np.maximum(weight, 0) / weight_per_siemens
    g_minus = np.maximum(-weight, 0) / weight_per_siemens
    return g_plus, g_minus, weight_per_siemens


def programming_noise_std(g_target, g_max=G_MAX):
    """σ_P(g_T) in µS: the paper's polynomial in the normalised conductance ĝ = g_T / g_max (fitted for 25 µS)."""
    g = g_target / g_max
    return np.maximum(-1.1731 * g ** 2 + 1.9650 * g + 0.2635, 0.0) * (g_max / G_MAX)


def programmed_conductance(g_target, normal, g_max=G_MAX):
    """g_P = g_T + σ_P(g_T)·N(0, 1), never below 0 (a device cannot conduct negatively). `normal`: N(0, 1) draws."""
    return np.maximum(g_target + programming_noise_std(g_target, g_max) * normal, 0.0)


def drift_exponent_statistics(g_target, g_max=G_MAX):
    """(μ_ν, σ_ν) of the drift exponent ν of devices programmed to g_T: low conductances drift more."""
    log_g = np.log(np.maximum(g_target / g_max, 1e-7))
    mean = np.clip(-0.0155 * log_g + 0.0244, 0.049, 0.1)
    std = np.clip(-0.0125 * log_g - 0.0059, 0.008, 0.045)
    return mean, std


def drift_exponent(g_target, normal, g_max=G_MAX):
    """ν = |μ_ν + σ_ν·N(0, 1)| per device (a conductance only decays: ν ≥ 0)."""
    mean, std = drift_exponent_statistics(g_target, g_max)
    return np.abs(mean + std * normal)


def drifted_conductance(g_programmed, nu, t, t_first_read=T_FIRST_READ):
    """g_D(t) = g_P · ((t_c + t) / t_c)^(−ν): t seconds after programming; t = 0 is the first read."""
    return g_programmed * ((t_first_read + t) / t_first_read) ** (-nu)


def read_noise_std(g_drifted, g_target, t, g_max=G_MAX, t_first_read=T_FIRST_READ, t_read=T_READ):
    """σ_R = g_D · Q(g_T) · sqrt(log((t_c + t + t_r) / t_r)), Q = min(0.0088 / ĝ^0.65, 0.2): 1/f noise."""
    q = np.minimum(0.0088 / np.maximum(g_target / g_max, 1e-7) ** 0.65, 0.2)
    return g_drifted * q * np.sqrt(np.log((t_first_read + t + t_read) / t_read))


def read_conductance(g_drifted, g_target, t, normal, g_max=G_MAX, t_first_read=T_FIRST_READ, t_read=T_READ):
    """One read at time t: g_D + σ_R·N(0, 1), never below 0."""
    sigma = read_noise_std(g_drifted, g_target, t, g_max, t_first_read, t_read)
    return np.maximum(g_drifted + sigma * normal, 0.0)


# ---------------------------------------------------------------------------------------------------- converters
def quantise(values, bits, full_scale):
    """Round to the nearest of the 2·(2^(bits−1) − 1) + 1 signed levels in [−full_scale, full_scale], clipping
    what is outside; bits=None: exact."""
    if bits is None:
        return values
    levels = 2 ** (bits - 1) - 1
    step = full_scale / levels
    return np.clip(np.round(values / step), -levels, levels) * step


def dac(x, bits):
    """Each row (one input vector) scaled to max |x| = 1, then quantised: x ≈ codes · step, step per row.

    Returns (codes, step, full_scale): with bits, codes are the integers −L..L (L = 2^(bits−1) − 1, full scale L);
    bits=None gives the exact scaled inputs (full scale 1).
    """
    scale = np.abs(x).max(axis=1, keepdims=True)
    scale[scale == 0] = 1.0
    if bits is None:
        return x / scale, scale, 1.0
    levels = 2 ** (bits - 1) - 1
    codes = np.rint(x * (levels / scale))
    return codes, scale / levels, float(levels)


def adc(currents, bits, full_scale):
    """A tile's column currents, clipped and quantised."""
    return quantise(currents, bits, full_scale)


# ---------------------------------------------------------------------------------------------------- the chip
class ProgrammedMatrix:
    """One weight matrix (in × out) as programmed PCM devices: targets g_T, programmed g_P and drift exponents
    ν for both halves of the differential pair. Nothing here changes after programming; reading at a time t
    gives a Crossbar."""

    def __init__(self, weight, settings, rng):
        """weight: a dense weight (in, out) or a conv kernel (out, in, kh, kw), stored as (in·kh·kw, out)."""
        self.settings = settings
        weight = np.asarray(weight, dtype=np.float64)
        self.kernel_shape = weight.shape if weight.ndim == 4 else None
        matrix = kernel_as_matrix(weight) if weight.ndim == 4 else weight
        clipped = clip_weights(matrix, settings.clip_sigmas)
        g_plus, g_minus, self.weight_per_siemens = target_conductances(clipped, settings.g_max)
        self.g_target = np.stack([g_plus, g_minus])                      # (2, in, out): g⁺ and g⁻
        self.g_programmed = self._program(rng)
        self.nu = drift_exponent(self.g_target, rng.standard_normal(self.g_target.shape), settings.g_max)
        self.reference_read = self.all_ones_read(self.conductances_at(0.0, rng))   # GDC calibration, at t_c

    def _program(self, rng):
        if not self.settings.programming_noise:
            return self.g_target.copy()
        return programmed_conductance(self.g_target, rng.standard_normal(self.g_target.shape), self.settings.g_max)

    def conductances_at(self, t, rng):
        """g⁺, g⁻ as read at time t (drift, then read noise), shape (2, in, out)."""
        s = self.settings
        g = drifted_conductance(self.g_programmed, self.nu, t, s.t_first_read) if s.drift else self.g_programmed
        if s.read_noise:
            g = read_conductance(g, self.g_target, t, rng.standard_normal(g.shape), s.g_max, s.t_first_read,
                                 s.t_read)
        return g

    def read_at(self, t, rng):
        """The crossbar at time t, with its global drift compensation calibrated against the first read."""
        g = self.conductances_at(t, rng)
        compensation = np.ones_like(self.reference_read)
        if self.settings.drift_compensation:
            now = self.all_ones_read(g)
            compensation = np.divide(self.reference_read, now, out=compensation, where=now > 0)
        differential = (g[0] - g[1]).astype(np.float32)
        return Crossbar(differential, self.weight_per_siemens, compensation.astype(np.float32), self.settings,
                        self.kernel_shape)

    def all_ones_read(self, g):
        """GDC's reference read: Σ_j |Σ_i (g⁺ − g⁻)_ij| of each tile (all-ones input, summed column currents),
        spread over the tile's columns: shape (row tiles, out). α(t) = this at t_c / this at t."""
        _, rows, columns = g.shape
        size = self.settings.tile_size
        total = np.zeros((len(tile_slices(rows, size)), columns))
        for i, tile_rows in enumerate(tile_slices(rows, size)):
            for tile_columns in tile_slices(columns, size):
                total[i, tile_columns] = np.abs((g[0] - g[1])[tile_rows, tile_columns].sum(axis=0)).sum()
        return total


class Crossbar:
    """A weight matrix on the simulated chip at one moment: the differential conductances G = g⁺ − g⁻ (in × out,
    µS, float32 like the network), what one µS means in weight units, and the per-tile drift-compensation
    factors α. Its products go through DAC → tiles → ADC → GDC → digital sum, as the module docstring describes.
    A conv kernel (out, in, kh, kw) is held as the matrix (in·kh·kw, out) and remembers its kernel_shape."""

    def __init__(self, conductance, weight_per_siemens, compensation, settings, kernel_shape=None):
        self.conductance = conductance
        self.weight_per_siemens = weight_per_siemens
        self.compensation = compensation
        self.settings = settings
        self.kernel_shape = kernel_shape

    @property
    def shape(self):
        return self.conductance.shape

    def matmul(self, x):
        """y ≈ x W for a batch of row vectors x (N, in), a few thousand rows at a time (memory stays small)."""
        x = np.asarray(getattr(x, "data", x))
        if x.ndim != 2 or x.shape[1] != self.shape[0]:
            raise ValueError(f"crossbar of shape {self.shape} cannot multiply an input of shape {x.shape}")
        prepare_blas_for_evaluation()   # its thread count, and warmed up (kernels/blas.py says why)
        return np.concatenate([self._matmul_rows(x[start:start + ROWS_PER_PASS])
                               for start in range(0, len(x), ROWS_PER_PASS)]).astype(x.dtype, copy=False)

    def _matmul_rows(self, x):
        s = self.settings
        codes, step, input_full_scale = dac(np.asarray(x, dtype=self.conductance.dtype), s.dac_bits)
        adc_full_scale = s.adc_range * s.g_max * input_full_scale     # column current of a full-scale read
        y = np.zeros((x.shape[0], self.shape[1]), dtype=self.conductance.dtype)
        for i, rows in enumerate(tile_slices(self.shape[0], s.tile_size)):
            currents = codes[:, rows] @ self.conductance[rows]         # Kirchhoff: Σ_i input_i · G_ij
            y += adc(currents, s.adc_bits, adc_full_scale) * self.compensation[i]
        return y * (step * self.weight_per_siemens)

    def conv2d(self, x, stride=1, padding=0):
        """A convolution as crossbar products: every input patch is one input vector (im2col), a few samples
        at a time."""
        if self.kernel_shape is None:
            raise ValueError(f"this crossbar holds a dense weight of shape {self.shape}, not a conv kernel")
        x = np.asarray(getattr(x, "data", x))
        out_channels, _, kh, kw = self.kernel_shape
        outputs = []
        for start in range(0, len(x), SAMPLES_PER_CONV_PASS):
            patches, out_h, out_w = image_patches(x[start:start + SAMPLES_PER_CONV_PASS], kh, kw, stride, padding)
            y = self.matmul(patches)                                       # (n·out_h·out_w, out_channels)
            outputs.append(y.reshape(-1, out_h, out_w, out_channels).transpose(0, 3, 1, 2))
        return np.concatenate(outputs)


def tile_slices(size, tile_size):
    """The index ranges of consecutive tiles along an axis of `size` entries."""
    return [slice(start, min(start + tile_size, size)) for start in range(0, size, tile_size)]


def image_patches(x, kh, kw, stride=1, padding=0):
    """Every input patch as one input vector: (N, C, H, W) -> (N·out_h·out_w, C·kh·kw), rows ordered (n, i, j),
    columns (c, u, v) — the order of a kernel reshaped to (out, C·kh·kw). The convolution's own patch rows
    (minimal/kernels/conv.py, columns (u, v, c)) are cut, then each row's columns put in that order."""
    rows, (out_h, out_w) = conv_kernels.patch_rows(x, (kh, kw), stride, padding)    # (N·out_h·out_w, kh·kw·C)
    channels = np.shape(x)[1]
    patches = rows.reshape(len(rows), kh, kw, channels).transpose(0, 3, 1, 2).reshape(len(rows), -1)
    return patches, out_h, out_w


def kernel_as_matrix(kernel):
    """(out, C, kh, kw) -> (C·kh·kw, out): the layout a crossbar stores a conv kernel in."""
    return kernel.reshape(kernel.shape[0], -1).T


# ---------------------------------------------------------------------------------------------------- a whole model
def is_crossbar_weight(array):
    """Dense weights (in, out) and conv kernels (out, in, kh, kw) go on crossbars; biases and norms stay digital."""
    return array.ndim in (2, 4)


class PCMModel:
    """A model deployed on simulated PCM: every dense weight and conv kernel programmed once (one chip, one rng
    draw of programming noise and drift exponents). Read it at any time since programming with `params_at`."""

    def __init__(self, model, rng, settings=None):
        self.model = model
        self.settings = settings or PCMSettings()
        self.programmed = {name: ProgrammedMatrix(p.data, self.settings, rng)
                           for name, p in model.named_parameters() if is_crossbar_weight(p.data)}

    def params_at(self, t, rng):
        """name -> Crossbar for every programmed weight, read t seconds after programming: the model's `params`."""
        return {name: matrix.read_at(t, rng) for name, matrix in self.programmed.items()}

    def logits(self, x, t, rng, params=None):
        with no_grad():
            out = self.model(x, params=params or self.params_at(t, rng))
        return np.asarray(getattr(out, "data", out))

    def accuracy(self, split, t, rng, batch_size=200):
        """Test accuracy of the chip read at time t (one read of every device for the whole split)."""
        self.model.eval()
        params = self.params_at(t, rng)
        correct = 0
        for start in range(0, len(split), batch_size):
            x, y = split.x[start:start + batch_size], split.y[start:start + batch_size]
            correct += int((self.logits(x, t, rng, params).argmax(axis=1) == y).sum())
        return correct / len(split)


def chip_accuracies(model, split, times, rngs, batch_size=200, desc=None):
    """Fig. 4's measurement: accuracies (chips, times). Chip k is programmed once from rngs[k] (programming noise
    and drift exponents drawn once) and read at every time since programming, as one device would age."""
    accuracies = np.empty((len(rngs), len(times)))
    for chip_index in progress_bar(range(len(rngs)), desc=desc, unit="chip"):
        rng = rngs[chip_index]
        chip = PCMModel(model, rng)
        for column, t in enumerate(times):
            accuracies[chip_index, column] = chip.accuracy(split, t, rng, batch_size)
    return accuracies
