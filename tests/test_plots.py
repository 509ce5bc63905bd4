"""Every figure function writes a real PNG (and nothing else), titled after its paper figure, with a legend
entry per checkpoint."""
import numpy as np
import pytest

from minimal import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RNG = np.random.default_rng(0)
ALPHAS = np.linspace(-2, 2, 21)
EDGES = np.linspace(-6, 6, 97)

FIGURES = {
    "mismatch": (plots.plot_mismatch_boxes, "Fig. 2", ({
        "standard seed 0": {0.0: [0.91], 0.1: 0.9 + 0.01 * RNG.standard_normal(100), 0.5: 0.8 + 0.05 * RNG.random(100)},
        "beta seed 0": {0.0: [0.92], 0.5: 0.9 + 0.01 * RNG.random(100)},  # a checkpoint without ζ = 0.1 is fine
    },)),
    "attack": (plots.plot_attack_curves, "Fig. 3", ([0, 0.05, 0.5], {
        "standard": {"PGA on cross-entropy": [0.9, 0.5, 0.1], "random box corner": [0.9, 0.88, 0.7]},
        "beta": {"PGA on cross-entropy": [0.92, 0.8, 0.4], "random box corner": [0.92, 0.91, 0.9]},
    })),
    "landscape": (plots.plot_landscape, "Fig. 1", (ALPHAS, {
        "standard": 0.3 + 0.2 * ALPHAS ** 2 + 0.01 * RNG.random((5, 21)),
        "beta": 0.25 + 0.05 * ALPHAS ** 2 + 0.01 * RNG.random((5, 21)),
    })),
    "membrane": (plots.plot_membrane_histogram, "Fig. S10", (EDGES, {
        "standard": np.exp(-EDGES[:-1] ** 2), "forward noise + beta": np.exp(-(EDGES[:-1] + 3) ** 2),
    })),
}


@pytest.mark.parametrize("name", list(FIGURES))
def test_figure_is_a_png_named_after_the_paper_figure(name, tmp_path):
    plot, paper_figure, data = FIGURES[name]
    path = tmp_path / "sub" / f"{name}.png"
    figure = plot(*data, path)
    assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 10_000
    assert [p.name for p in tmp_path.joinpath("sub").iterdir()] == [f"{name}.png"]  # no temporary file left
    axes = figure.axes[0]
    assert paper_figure in axes.get_title()
    legend = " | ".join(text.get_text() for text in axes.get_legend().get_texts())
    for label in ("standard", "beta") if name != "membrane" else ("standard", "forward noise + beta"):
        assert label in legend
