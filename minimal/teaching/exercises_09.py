"""Graders of notebook 09 (analog hardware, the PCM noise model): 9.1 the programming noise σ_P(g_T), 9.2 the
drift g_D(t), 9.3 the read noise σ_R — each against minimal/pcm.py."""
import numpy as np

from ..pcm import G_MAX, T_FIRST_READ, T_READ, drifted_conductance, programming_noise_std, read_noise_std
from .grading import compare_arrays, grader

TARGETS = np.linspace(0.0, G_MAX, 26)               # µS, from an empty device to g_max
TIMES = np.array([0.0, 25.0, 3600.0, 86400.0, 365 * 86400.0])


# ---------------------------------------------------------------------------------------------------- 9.1
@grader("9.1")
def check_programming_noise(sigma_programming):
    """sigma_programming(g_target) -> σ_P in µS: max(−1.1731 ĝ² + 1.9650 ĝ + 0.2635, 0), ĝ = g_T / g_max."""
    g = TARGETS / G_MAX
    polynomial = -1.1731 * g ** 2 + 1.9650 * g + 0.2635
    compare_arrays("9.1", f"σ_P at g_T = {TARGETS[0]:g} … {G_MAX:g} µS", sigma_programming(TARGETS),
                   programming_noise_std(TARGETS), [
                       ("the polynomial is in the normalised conductance ĝ = g_T / g_max, not in µS",
                        np.maximum(-1.1731 * TARGETS ** 2 + 1.9650 * TARGETS + 0.2635, 0)),
                       ("σ_P is in µS already (the fit is for g_max = 25 µS): do not multiply by g_max",
                        G_MAX * np.maximum(polynomial, 0))])
    return f"σ_P from {programming_noise_std(0.0):.4f} µS (empty device) to a peak of " \
           f"{programming_noise_std(TARGETS).max():.4f} µS"


# ---------------------------------------------------------------------------------------------------- 9.2
@grader("9.2")
def check_drift(drifted):
    """drifted(g_programmed, nu, t) -> g_P · ((t_c + t) / t_c)^(−ν), t_c = T_FIRST_READ (t since programming)."""
    rng = np.random.default_rng(0)
    g_programmed, nu = rng.uniform(0, G_MAX, 5)[:, None], rng.uniform(0.02, 0.1, 5)[:, None]
    got = drifted(g_programmed, nu, TIMES[None, :])
    compare_arrays("9.2", "g_D for 5 devices at t = 0 s … 1 year", got, drifted_conductance(g_programmed, nu, TIMES),
                   [("(t / t_c)^(−ν) is the paper's form with t counted from t_c; here t is the time since "
                     "programming, so the ratio is (t_c + t) / t_c, which is 1 at t = 0",
                     g_programmed * (np.maximum(TIMES, 1e-9) / T_FIRST_READ) ** (-nu)),
                    ("the exponent is −ν: a conductance decays with time", g_programmed
                     * ((T_FIRST_READ + TIMES) / T_FIRST_READ) ** nu)], rtol=1e-6)
    return "g_P · ((t_c + t) / t_c)^(−ν): 1 at t = 0, then a slow power-law decay"


# ---------------------------------------------------------------------------------------------------- 9.3
@grader("9.3")
def check_read_noise(sigma_read):
    """sigma_read(g_drifted, g_target, t) -> g_D · Q · sqrt(log((t_c + t + t_r) / t_r)),
    Q = min(0.0088 / ĝ^0.65, 0.2)."""
    g_target = TARGETS[1:, None]
    g_drifted = 0.9 * g_target
    got = sigma_read(g_drifted, g_target, TIMES[None, :])
    q = np.minimum(0.0088 / (g_target / G_MAX) ** 0.65, 0.2)
    expected = read_noise_std(g_drifted, g_target, TIMES[None, :])
    compare_arrays("9.3", "σ_R at g_T = 1 … 25 µS and t = 0 s … 1 year", got, expected, [
        ("Q is capped at 0.2: min(0.0088 / ĝ^0.65, 0.2)",
         g_drifted * 0.0088 / (g_target / G_MAX) ** 0.65 * np.sqrt(np.log((T_FIRST_READ + TIMES + T_READ) / T_READ))),
        ("Q depends on the target ĝ = g_T / g_max, the noise scales with the drifted g_D",
         g_target * q * np.sqrt(np.log((T_FIRST_READ + TIMES + T_READ) / T_READ))),
        ("the 1/f noise accumulates from programming: log((t_c + t + t_r) / t_r), t_r = 250 ns",
         g_drifted * q * np.sqrt(np.log((TIMES + T_READ) / T_READ))),
        ("the square root of the log is missing", g_drifted * q * np.log((T_FIRST_READ + TIMES + T_READ) / T_READ))])
    return f"σ_R / g_D from {float((expected / g_drifted).min()):.4f} to {float((expected / g_drifted).max()):.4f}"
