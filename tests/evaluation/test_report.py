"""The report: files exist and open, the HTML shows metrics.json's numbers, a browser renders it."""

import html
import json
import shutil
import subprocess

import matplotlib.image
import polars as pl
import pytest

from starcast import Forecaster
from starcast.config import LSTMConfig, StarcastConfig
from starcast.data.splits import split_events
from starcast.data.synth import SynthConfig, generate
from starcast.evaluation import plots
from starcast.evaluation.evaluate import evaluate
from starcast.evaluation.report import CAPTIONS, fmt, write_report

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """An ordinal lstm (so probabilities, NLL and calibration appear) on small synthetic data."""
    data = generate(SynthConfig(users=150, items=60, events=3_000, seed=5))
    split = split_events(data.events, "time")
    config = StarcastConfig(lstm=LSTMConfig(head="ordinal", significance=0.0))
    model = Forecaster(config=config, seed=0, epochs=2).fit(split.train, split.valid)
    history = pl.concat([split.train, split.valid, split.test])
    directory = tmp_path_factory.mktemp("report")
    return write_report(evaluate(model, history, split.test), directory)


def test_every_file_is_written_and_opens(report) -> None:
    expected = {"metrics", "report", "distribution", "confusion", "error_by_history",
                "error_by_slice", "calibration", "training_curves", "readings_by_star"}
    assert set(report) == expected
    for name, path in report.items():
        if path.suffix == ".png":
            assert matplotlib.image.imread(path).shape[0] > 100, name
    metrics = json.loads(report["metrics"].read_text())
    assert {"nll", "calibration", "rmse_ci95"} <= set(metrics["overall"])
    assert metrics["training_log"]["epochs"][0]["epoch"] == 0


def test_the_html_holds_the_numbers_of_metrics_json(report) -> None:
    page = report["report"].read_text()
    metrics = json.loads(report["metrics"].read_text())
    overall = metrics["overall"]
    for value in (overall["rmse"], overall["macro_mae"], overall["nll"], overall["macro_f1"]):
        assert fmt(value) in page
    assert fmt(overall["rmse_ci95"]) in page
    for kind, rows in metrics["slices"].items():
        for row in rows:
            assert fmt(row["rmse"]) in page, (kind, row)
    plots = [p for p in report.values() if p.suffix == ".png"]
    assert page.count("data:image/png;base64,") == len(plots) == 7  # every plot embedded


def test_a_headless_browser_renders_the_report(report) -> None:
    browser = next((b for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no chromium on this machine (Debian: apt install chromium)")
    done = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
         report["report"].as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "<table>" in done.stdout and "starcast evaluation" in done.stdout
    assert "Uncaught" not in done.stderr


def test_the_report_says_what_it_measured_and_what_to_look_for(report) -> None:
    metrics = json.loads(report["metrics"].read_text())
    assert {"starcast", "evaluated_at"} <= set(metrics["about"])
    baseline = metrics["baseline"]
    assert baseline["model"].startswith("bias") and baseline["rmse"] > 0
    page = report["report"].read_text()
    assert "bias baseline" in page and fmt(baseline["rmse"]) in page
    for caption in CAPTIONS.values():  # every plot's caption, in the page
        assert html.escape(caption) in page


def test_thin_slices_are_marked_and_close_models_are_not_drawn_from_zero() -> None:
    rows = [{"slice": "warm", "count": 500, "rmse": 0.9, "mae": 0.7},
            {"slice": "both", "count": 3, "rmse": 2.0, "mae": 1.8}]
    figure = plots.error_by_slice(rows, "t")
    labels = [t.get_text() for t in figure.axes[0].get_xticklabels()]
    assert labels[1].endswith("few)") and not labels[0].endswith("few)")
    assert [bool(p.get_hatch()) for p in figure.axes[0].patches] == [False, True, False, True]
    models = [{"model": "a", "rmse": 0.712, "macro_mae": 1.30},
              {"model": "b", "rmse": 0.730, "macro_mae": 1.32}]
    figure = plots.model_comparison(models)
    low, high = figure.axes[0].get_ylim()
    assert 0.6 < low < 0.712 and high > 0.730
