"""The report: files exist and open, the HTML shows metrics.json's numbers, a browser renders it."""

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
from starcast.evaluation.evaluate import evaluate
from starcast.evaluation.report import fmt, write_report

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
