"""benchmarks/accuracy.py report: cached runs merge into the recorded tables."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "accuracy.py"


@pytest.fixture
def accuracy(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("accuracy_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "accuracy_benchmark", module)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RESULTS", tmp_path)
    monkeypatch.setattr(module, "RUNS", tmp_path / "accuracy-runs")
    (tmp_path / "accuracy-runs").mkdir()
    return module


def _cache(module, label: str, prediction: np.ndarray, truth: np.ndarray, **valid) -> None:
    run = {"offline": prediction, "online": prediction, "truth": truth, "valid_rmse": np.nan,
           "best_epoch": 0, "fit_seconds": 1.0, **valid}
    np.savez(module.RUNS / f"synthetic.loo.{label}.0.npz", **run)


def _recorded_row(data: str, model: str, rmse: float) -> dict:
    return {"data": data, "protocol": "loo", "model": model, "seeds": [0, 1], "to_beat": None,
            "fit_seconds": 1.0, "valid_rmse": 0.5, "best_epochs": [0, 0], "offline_rmse": rmse,
            "offline_rmse_spread": 0.0, "offline_macro_mae": 1.0, "online_rmse": rmse,
            "online_rmse_spread": 0.0, "online_macro_mae": 1.0,
            "offline_balanced_macro_mae": 1.0, "offline_nll": 1.0, "shares_nll": 1.2,
            "offline_rps": 0.1, "shares_rps": 0.2}


def _comparison(data: str, model: str, against: str) -> dict:
    return {"data": data, "protocol": "loo", "model": model, "against": against,
            "seeds": [0, 1], "offline_diff": -0.01, "offline_ci95": [-0.02, 0.0],
            "online_diff": -0.01, "online_ci95": [-0.02, 0.0]}


def test_report_keeps_recorded_rows_that_were_not_rerun(accuracy, capsys):
    recorded = {
        "rows": [_recorded_row("synthetic", "lstm", 0.9), _recorded_row("synthetic", "bias", 1.1),
                 _recorded_row("synthetic", "mf", 1.2), _recorded_row("elsewhere", "lstm", 0.8)],
        "comparisons": [_comparison("synthetic", "lstm", "bias"),
                        _comparison("synthetic", "lstm", "lstm-no-fm"),
                        _comparison("elsewhere", "lstm", "bias")],
    }
    (accuracy.RESULTS / "accuracy.json").write_text(json.dumps(recorded))
    truth = np.array([1.0, 3.0, 5.0, 4.0])
    _cache(accuracy, "lstm", np.array([1.5, 3.0, 4.5, 4.0]), truth)
    _cache(accuracy, "lstm-no-fm", np.array([2.0, 3.0, 4.0, 4.0]), truth)

    accuracy.report()

    merged = json.loads((accuracy.RESULTS / "accuracy.json").read_text())
    rows = {(r["data"], r["model"]): r for r in merged["rows"]}
    assert set(rows) == {("synthetic", "lstm"), ("synthetic", "lstm-no-fm"),
                         ("synthetic", "bias"), ("synthetic", "mf"), ("elsewhere", "lstm")}
    assert rows["synthetic", "lstm"]["offline_rmse"] == pytest.approx(np.sqrt(0.125))
    assert rows["synthetic", "lstm"]["seeds"] == [0]  # the rerun replaced the recorded row
    assert rows["synthetic", "mf"]["offline_rmse"] == 1.2  # not rerun: as recorded
    pairs = {(c["data"], c["model"], c["against"]): c for c in merged["comparisons"]}
    # both sides rerun: recomputed; neither: kept; only one side: dropped, with a warning
    assert pairs["synthetic", "lstm", "lstm-no-fm"]["offline_diff"] == pytest.approx(
        np.sqrt(0.125) - np.sqrt(0.5))
    assert ("elsewhere", "lstm", "bias") in pairs
    assert ("synthetic", "lstm", "bias") not in pairs
    assert "only one side was rerun" in capsys.readouterr().out
    assert [r["data"] for r in merged["rows"]][-1] == "elsewhere"  # known sets first
    assert "| elsewhere | loo | lstm |" in (accuracy.RESULTS / "accuracy.md").read_text()


def test_report_without_recorded_tables_writes_the_cached_runs(accuracy):
    truth = np.array([2.0, 4.0])
    _cache(accuracy, "bias", np.array([3.0, 3.0]), truth)
    accuracy.report("fresh")
    written = json.loads((accuracy.RESULTS / "fresh.json").read_text())
    assert [(r["model"], r["offline_rmse"]) for r in written["rows"]] == [("bias", 1.0)]
    assert written["comparisons"] == []


def test_report_compares_on_valid_where_both_sides_predicted_it(accuracy):
    truth, valid_truth = np.array([1.0, 3.0, 5.0, 4.0]), np.array([2.0, 4.0, 5.0])
    _cache(accuracy, "lstm", np.array([1.5, 3.0, 4.5, 4.0]), truth)
    _cache(accuracy, "lstm-no-recurrent", np.array([2.0, 3.0, 4.0, 4.0]), truth,
           valid=np.array([3.0, 3.0, 5.0]), valid_truth=valid_truth)
    _cache(accuracy, "bias", np.array([3.0, 3.0, 3.0, 3.0]), truth)
    path = accuracy.RUNS / "synthetic.loo.lstm.0.npz"
    np.savez(path, **dict(np.load(path)), valid=np.array([2.0, 4.0, 4.0]),
             valid_truth=valid_truth)

    accuracy.report("valid")

    written = json.loads((accuracy.RESULTS / "valid.json").read_text())
    pairs = {c["against"]: c for c in written["comparisons"]}
    assert pairs["lstm-no-recurrent"]["valid_diff"] == pytest.approx(
        np.sqrt(1 / 3) - np.sqrt(2 / 3))
    assert "valid_diff" not in pairs["bias"]  # bias ran without valid predictions
    table = (accuracy.RESULTS / "valid.md").read_text()
    assert "valid diff [95%]" in table


def test_report_reads_probabilities_offline_and_online(accuracy):
    truth = np.array([5.0, 1.0])
    even = np.full((2, 5), 0.2)
    halves = np.array([[0.0, 0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 0.0, 0.0, 0.0]])
    _cache(accuracy, "lstm", np.array([4.5, 3.0]), truth, offline_probs=even,
           online_probs=halves, shares=np.full(5, 0.2), offline_balanced=np.array([3.0, 3.0]),
           online_balanced=np.array([5.0, 1.0]))
    (accuracy.RESULTS / "accuracy.json").write_text(json.dumps(
        {"rows": [_recorded_row("synthetic", "mf", 1.2)], "comparisons": []}))

    accuracy.report()

    rows = {r["model"]: r for r in json.loads(
        (accuracy.RESULTS / "accuracy.json").read_text())["rows"]}
    assert rows["lstm"]["offline_nll"] == pytest.approx(np.log(5))
    assert rows["lstm"]["online_nll"] == pytest.approx(np.log(2))
    assert rows["lstm"]["offline_balanced_macro_mae"] == pytest.approx(2.0)
    assert rows["lstm"]["online_balanced_macro_mae"] == 0.0
    table = (accuracy.RESULTS / "accuracy.md").read_text()
    assert f"| 2.0000 / 0.0000 | {np.log(5):.4f} / {np.log(2):.4f} (" in table
    # a row recorded before the online readings shows the offline reading alone
    assert "| 1.0000 | 1.0000 (1.2000) | 0.1000 (0.2000) |" in table
