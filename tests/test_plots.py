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


def title(figure):
    """The figure's main title: its suptitle, or else the title of its first axes."""
    return figure.get_suptitle() or figure.axes[0].get_title()


def legend_texts(figure):
    """The entries of the figure's one legend, whichever axes holds it."""
    [legend] = [axes.get_legend() for axes in figure.axes if axes.get_legend() is not None] + figure.legends
    return [text.get_text() for text in legend.get_texts()]


@pytest.mark.parametrize("name", list(FIGURES))
def test_figure_is_a_png_named_after_the_paper_figure(name, tmp_path):
    plot, paper_figure, data = FIGURES[name]
    path = tmp_path / "sub" / f"{name}.png"
    figure = plot(*data, path)
    assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 10_000
    assert [p.name for p in tmp_path.joinpath("sub").iterdir()] == [f"{name}.png"]  # no temporary file left
    assert paper_figure in title(figure)
    legend = " | ".join(legend_texts(figure))
    for label in ("standard", "beta") if name != "membrane" else ("standard", "forward noise + beta"):
        assert label in legend


def test_the_landscape_of_the_training_set_is_labelled_as_such(tmp_path):
    """Fig. S7 (evaluate landscape --split train) must not say "test" in its title or axis."""
    _, _, (alphas, losses) = FIGURES["landscape"]
    figure = plots.plot_landscape(alphas, losses, tmp_path / "train.png", split="train")
    assert "Fig. S7" in title(figure) and "test" not in title(figure)
    assert figure.axes[0].get_ylabel() == "train cross-entropy"


SEEDED = [f"m{i} seed {seed}" for seed in (0, 1) for i in range(10)]  # 10 methods × 2 seeds, seed 0 of all first


def test_seeds_of_a_method_share_its_colour_and_differ_in_line_style():
    styles = plots.label_styles(SEEDED + ["pooled"])
    assert len({styles[label][0] for label in SEEDED}) == 10
    for i in range(10):
        (colour_0, style_0), (colour_1, style_1) = styles[f"m{i} seed 0"], styles[f"m{i} seed 1"]
        assert colour_0 == colour_1 and (style_0, style_1) == ("-", "--")
    assert styles["pooled"][1] == "-" and styles["pooled"][0] not in {styles[label][0] for label in SEEDED}


def test_up_to_20_methods_get_distinct_colours():
    styles = plots.label_styles([f"method {i}" for i in range(20)])
    assert len({colour for colour, _ in styles.values()}) == 20


def inside(inner, outer):
    return outer.x0 <= inner.x0 and inner.x1 <= outer.x1 and outer.y0 <= inner.y0 and inner.y1 <= outer.y1


def test_a_long_legend_stands_beside_the_axes_a_short_one_inside(tmp_path):
    rows = {label: {0.0: 0.9, 0.1: 0.5 + 0.02 * i} for i, label in enumerate(SEEDED)}
    for labels, beside in ((SEEDED, True), (SEEDED[:6], False)):
        figure = plots.plot_verified_accuracy({label: rows[label] for label in labels}, tmp_path / "ibp.png")
        axes = figure.axes[0]
        legend = axes.get_legend()
        assert len(legend.get_texts()) == len(labels)
        assert (legend.get_window_extent().x0 > axes.get_window_extent().x1) == beside
        assert inside(legend.get_window_extent(), axes.get_window_extent()) != beside


def test_attack_curves_have_a_panel_per_attack_and_a_legend_entry_per_checkpoint(tmp_path):
    attacks = ("PGA on cross-entropy", "PGA on KL", "random box corner")
    curves = {label: {attack: [0.9, 0.5 - 0.01 * i, 0.3] for attack in attacks} for i, label in enumerate(SEEDED)}
    figure = plots.plot_attack_curves([0, 0.05, 0.1], curves, tmp_path / "attack.png")
    assert title(figure).startswith("Fig. 3, S3, S5c")
    assert [axes.get_title() for axes in figure.axes] == [
        "PGA on cross-entropy (Fig. 3)", "PGA on KL (Fig. S3)", "random box corner (Fig. S5c)"]
    assert all(axes.get_ylim() == (0, 100) and len(axes.get_lines()) == 20 for axes in figure.axes)
    assert legend_texts(figure) == SEEDED
    legend, last = figure.axes[-1].get_legend(), figure.axes[-1]
    assert legend.get_window_extent().x0 > last.get_window_extent().x1


def test_panel_per_checkpoint_draws_the_attacked_record_black_and_the_random_one_red(tmp_path):
    """Fig. S5c/d, S8: a panel per network, titled with its label; the same colours in every panel, one legend."""
    panels = {label: {"PGA on KL": ([0, 1], [90, 40]), "random box corner": ([0, 1], [90, 85])}
              for label in ("beta_rob 0", "beta_rob 0.1", "beta_rob 0.5")}
    figure = plots.plot_panel_per_checkpoint(panels, tmp_path / "s8.png", "Fig. S8", "ζ", "test accuracy (%)",
                                             xticks=([0, 1], ["0", "0.1"]))
    assert (tmp_path / "s8.png").read_bytes()[:8] == PNG_MAGIC and title(figure) == "Fig. S8"
    assert [axes.get_title() for axes in figure.axes] == list(panels)
    for axes in figure.axes:
        assert [(line.get_label(), line.get_color()) for line in axes.get_lines()] == [
            ("PGA on KL", "black"), ("random box corner", "tab:red")]
        assert axes.get_ylim() == (0, 100)
    assert legend_texts(figure) == ["PGA on KL", "random box corner"]


def test_the_mismatch_legend_keeps_off_the_clean_accuracy_marks(tmp_path):
    """ζ = 0 is one value per checkpoint, drawn as a short line at the top left, where a legend placed "best"
    used to sit when it could not see those lines."""
    table = {f"method {k} seed 0": {0.0: [0.9 - 0.002 * k], 0.5: 0.6 + 0.2 * RNG.random(20)} for k in range(6)}
    figure = plots.plot_mismatch_boxes(table, tmp_path / "mismatch.png")
    axes = figure.axes[0]
    legend = axes.get_legend().get_window_extent()
    for k, cells in enumerate(table.values()):
        shift = (k - (len(table) - 1) / 2) * 0.8 / len(table)           # the boxes' places around ζ = 0 (x = 0)
        x, y = axes.transData.transform((shift, 100 * cells[0.0][0]))
        assert not (legend.x0 <= x <= legend.x1 and legend.y0 <= y <= legend.y1), k


def test_ten_methods_at_six_noise_levels_fit_a_page_wide_figure(tmp_path):
    """Table 1's ten rows at its six ζ: 60 boxes in a figure no wider than BOXES_WIDTH_MAX inches (it used to
    grow to 33 inches, which a page shrinks until no label can be read), and taller than the default."""
    zetas = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7)
    table = {f"method {k}": {zeta: 0.9 - zeta * RNG.random(100) for zeta in zetas} for k in range(10)}
    width, height = plots.plot_mismatch_boxes(table, tmp_path / "mismatch.png").get_size_inches()
    assert width == plots.BOXES_WIDTH_MAX and height > 4.5
