import json
import os

import polars as pl
import pytest
from typer.testing import CliRunner

from starcast.cli import app
from starcast.errors import StarcastError
from starcast.evaluation.metrics import macro_mae

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def test_inspect_json_reports_the_all_beauty_counts(data_dir):
    result = invoke("data", "inspect", data_dir / "amazon" / "All_Beauty_5.json.gz", "--json")
    facts = json.loads(result.stdout[result.stdout.index("{") :])
    assert facts["source"]["lines_read"] == 5269
    assert facts["source"]["duplicates_removed"] == 1177
    assert (facts["events"], facts["users"], facts["items"]) == (4092, 991, 85)
    assert 0 < facts["cold_start"]["time"]["user"] <= 1


def test_synth_split_train_predict_round_trip(tmp_path):
    data = tmp_path / "events.parquet"
    invoke("data", "synth", "--users", 100, "--items", 40, "--events", 1500, "--out", data)
    invoke("split", data, "--protocol", "time", "--out", tmp_path / "split")
    for name in ("train", "valid", "test"):
        assert pl.read_csv(tmp_path / "split" / f"{name}.csv").columns == [
            "user",
            "item",
            "rating",
            "ts",
        ]
    invoke(
        "train",
        "--train",
        tmp_path / "split/train.csv",
        "--valid",
        tmp_path / "split/valid.csv",
        "--items",
        tmp_path / "events.items.parquet",
        "--out",
        tmp_path / "model",
        "--epochs",
        1,
    )
    state = json.loads((tmp_path / "model" / "model.json").read_text())["state"]
    assert len(state["side_items"]) == 40  # every item of the features file, trained or not
    invoke(
        "predict",
        "--model",
        tmp_path / "model",
        "--history",
        tmp_path / "split/train.csv",
        "--queries",
        tmp_path / "split/test.csv",
        "--out",
        tmp_path / "pred.csv",
    )
    pred = pl.read_csv(tmp_path / "pred.csv")
    test = pl.read_csv(tmp_path / "split/test.csv")
    assert pred.height == test.height
    assert pred["user"].cast(str).to_list() == test["user"].cast(str).to_list()
    assert pred["prediction"].is_between(1, 5).all()


def train_bias_on_all_beauty(data_dir, out):
    beauty = data_dir / "amazon" / "All_Beauty_5.json.gz"
    invoke("train", "--data", beauty, "--split", "loo", "--model", "bias", "--out", out)


def test_train_from_raw_data_with_internal_split(tmp_path, data_dir):
    train_bias_on_all_beauty(data_dir, tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").is_file()


def test_bad_queries_name_the_file_and_line(tmp_path, data_dir):
    train_bias_on_all_beauty(data_dir, tmp_path / "m")
    bad = tmp_path / "q.csv"
    bad.write_text("user,item,ts\na,b,1\nc,d,soon\n")
    result = runner.invoke(
        app,
        [
            "predict",
            "--model",
            str(tmp_path / "m"),
            "--queries",
            str(bad),
            "--out",
            str(tmp_path / "p.csv"),
        ],
    )
    assert result.exit_code != 0
    assert "q.csv:3" in str(result.exception) and "'ts'" in str(result.exception)


def test_evaluate_report_matches_predict_output(tmp_path):
    data = tmp_path / "events.parquet"
    invoke("data", "synth", "--users", 100, "--items", 40, "--events", 2000, "--out", data)
    invoke("split", data, "--protocol", "time", "--out", tmp_path / "split")
    split = tmp_path / "split"
    invoke("train", "--train", split / "train.csv", "--valid", split / "valid.csv",
           "--out", tmp_path / "model", "--epochs", 1)
    invoke("predict", "--model", tmp_path / "model", "--history", split / "train.csv",
           "--queries", split / "test.csv", "--out", tmp_path / "pred.csv")
    result = invoke("evaluate", "--model", tmp_path / "model", "--history", split / "train.csv",
                    "--queries", split / "test.csv", "--report", tmp_path / "report")
    assert "macro-MAE" in result.stdout
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    pred = pl.read_csv(tmp_path / "pred.csv")["prediction"].to_numpy()
    truth = pl.read_csv(split / "test.csv")["rating"].to_numpy()
    assert metrics["overall"]["rmse"] == pytest.approx(float(((pred - truth) ** 2).mean() ** 0.5))
    assert (tmp_path / "report" / "report.html").is_file()
    # both readings side by side, and the probabilities scored against the star shares
    balanced = pl.read_csv(tmp_path / "pred.csv")["balanced"].to_numpy()
    assert metrics["overall"]["balanced"]["macro_mae"] == pytest.approx(
        macro_mae(truth, balanced))
    assert {"nll", "rps", "nll_training_shares", "recall"} <= set(metrics["overall"])
    assert "balanced: macro-MAE" in result.stdout
    assert (tmp_path / "report" / "readings_by_star.png").is_file()


def test_predict_costs_are_read_and_bad_ones_refused_before_any_data(tmp_path):
    data = tmp_path / "events.parquet"
    invoke("data", "synth", "--users", 60, "--items", 30, "--events", 1000, "--out", data)
    invoke("train", "--data", data, "--model", "bias", "--out", tmp_path / "m")
    args = ["predict", "--model", tmp_path / "m", "--history", data, "--queries", data]
    invoke(*args, "--costs", "1,1,1,1,1000", "--out", tmp_path / "p.csv")
    assert set(pl.read_csv(tmp_path / "p.csv")["balanced"].unique()) == {5.0}
    result = runner.invoke(app, [str(a) for a in [*args, "--costs", "1,2,3", "--out",
                                                  tmp_path / "q.csv"]])
    # (main() turns a StarcastError into its one line and exit 2)
    assert isinstance(result.exception, StarcastError)
    assert "--costs" in str(result.exception) and "5 numbers" in str(result.exception)
    assert not (tmp_path / "q.csv").exists()


def test_evaluate_and_benchmark_on_a_raw_file(tmp_path, data_dir):
    raw = data_dir / "amazon" / "All_Beauty_5.json.gz"
    train_bias_on_all_beauty(data_dir, tmp_path / "m")
    invoke("evaluate", "--model", tmp_path / "m", "--data", raw, "--split", "loo",
           "--report", tmp_path / "r")
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["overall"]["n"] == 976  # All_Beauty users with >= 3 events
    invoke("benchmark", "--data", raw, "--split", "loo", "--models", "mean,bias",
           "--out", tmp_path / "b", "--no-peers")
    rows = json.loads((tmp_path / "b" / "benchmark.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["mean", "bias"]
    assert rows[1]["rmse"] < rows[0]["rmse"]
    assert (tmp_path / "b" / "comparison.png").is_file()
    assert "| bias |" in (tmp_path / "b" / "benchmark.md").read_text()


def test_state_init_computes_states_from_a_history_file(tmp_path):
    import sqlite3

    data = tmp_path / "events.parquet"
    invoke("data", "synth", "--users", 80, "--items", 30, "--events", 1200, "--out", data)
    invoke("train", "--data", data, "--split", "time", "--out", tmp_path / "m", "--epochs", 1)
    result = invoke("state", "init", "--model", tmp_path / "m", "--history", data,
                    "--state", tmp_path / "s.db")
    assert "events ->" in result.stdout
    with sqlite3.connect(tmp_path / "s.db") as db:
        assert db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 1200
        assert db.execute("SELECT COUNT(*) FROM users WHERE h IS NOT NULL").fetchone()[0] == 80


def test_data_convert_writes_a_parquet_event_table(tmp_path, data_dir):
    raw = data_dir / "amazon" / "Digital_Music_5.partial.json.gz"
    meta = data_dir / "amazon" / "meta_Digital_Music.partial.json.gz"
    result = invoke("data", "convert", raw, "--out", tmp_path / "t", "--items", meta,
                    "--chunk-lines", 2000)
    assert "6,908 events in 4 chunks" in result.stdout
    assert pl.read_parquet(tmp_path / "t" / "events.parquet").height == 6_908
    assert pl.read_parquet(tmp_path / "t" / "items.parquet").height == 7_419


def test_train_takes_a_device_and_says_clearly_when_cuda_is_missing(tmp_path, data_dir):
    import subprocess
    import sys

    import torch

    raw = data_dir / "amazon" / "All_Beauty_5.json.gz"
    invoke("train", "--data", raw, "--split", "loo", "--model", "bias", "--device", "cpu",
           "--out", tmp_path / "m")
    assert (tmp_path / "m" / "model.json").is_file()
    if torch.cuda.is_available():
        pytest.skip("CUDA is present: the missing-CUDA message cannot be shown here")
    done = subprocess.run([sys.executable, "-m", "starcast", "train", "--data", str(raw),
                           "--split", "loo", "--model", "mf", "--device", "cuda",
                           "--out", str(tmp_path / "c")], capture_output=True, text=True)
    assert done.returncode == 2 and "CUDA is not available" in done.stderr


@pytest.mark.parametrize("problem", ["text state", "missing directory", "truncated weights",
                                     "open on a public address"])
def test_serve_start_errors_are_one_line_and_exit_2(tmp_path, problem):
    import subprocess
    import sys

    data = tmp_path / "events.parquet"
    invoke("data", "synth", "--users", 40, "--items", 20, "--events", 600, "--out", data)
    invoke("train", "--data", data, "--model", "bias", "--out", tmp_path / "m")
    state = tmp_path / "s.db"
    extra = []
    if problem == "text state":
        state = tmp_path / "notes.txt"
        state.write_text("remember the milk\n" * 20)
    elif problem == "missing directory":
        state = tmp_path / "nope" / "s.db"
    elif problem == "truncated weights":
        weights = tmp_path / "m" / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:50])
    else:
        extra = ["--host", "0.0.0.0"]
    result = subprocess.run(
        [sys.executable, "-m", "starcast", "serve", "--model", str(tmp_path / "m"),
         "--state", str(state), "--port", "1", *extra],
        capture_output=True, text=True, timeout=120, env={**os.environ, "STARCAST_TOKEN": ""})
    assert result.returncode == 2, result.stderr + result.stdout
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) <= 2 and lines[0].startswith("error:"), lines
    assert "Traceback" not in result.stderr


def test_version_and_readable_inspect_of_events_and_item_files(tmp_path, data_dir):
    from starcast import __version__

    assert invoke("--version").stdout.strip() == f"starcast {__version__}"
    raw = data_dir / "amazon" / "All_Beauty_5.json.gz"
    text = invoke("data", "inspect", raw).stdout
    assert text.startswith("4,092 events, 991 users, 85 items") and "{" not in text
    assert json.loads(invoke("data", "inspect", raw, "--json").stdout)["events"] == 4092
    meta = invoke("data", "inspect", data_dir / "amazon" / "meta_Digital_Music.partial.json.gz")
    assert "items; with category" in meta.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "nope"], "unknown model 'nope'"),
    (["--device", "tpu"], "train.device must be one of"),
    (["--split", "random"], "--split/--protocol 'random'"),
])
def test_train_settings_are_checked_before_any_data_is_read(tmp_path, args, message):
    missing = tmp_path / "not-there.json.gz"  # were it read first, this would be the error
    result = runner.invoke(app, ["train", "--data", str(missing), "--out", str(tmp_path / "m"),
                                 *args])
    assert isinstance(result.exception, StarcastError) and message in str(result.exception)


@pytest.mark.parametrize(("table", "message"), [
    ("[lstm]\ndropout = 3.0\n", "lstm.dropout must be in [0, 1), got 3.0"),
    ("[transformer]\ndropout = 3.0\n", "transformer.dropout must be in [0, 1), got 3.0"),
    ("[transformer]\nheads = 3\n", "transformer.hidden (32) must be a multiple of"),
    ("[transformer]\ncontext = 0\n", "transformer.context must be at least 1"),
    ("[lstm.fm]\nrank = 0\n", "fm.rank must be at least 1"),
])
def test_bad_config_values_are_named(tmp_path, table, message):
    config = tmp_path / "c.toml"
    config.write_text(table)
    result = runner.invoke(app, ["train", "--data", str(tmp_path / "x"), "--out",
                                 str(tmp_path / "m"), "--config", str(config)])
    assert message in str(result.exception)
    assert str(result.exception).startswith(f"{config}.")  # the file, then the table


def test_training_ends_with_a_summary_and_predict_warns_without_history(tmp_path):
    data = tmp_path / "events.parquet"
    invoke("data", "synth", "--users", 60, "--items", 30, "--events", 1500, "--out", data)
    result = invoke("train", "--data", data, "--out", tmp_path / "m", "--epochs", 1)
    summary = [line for line in result.output.splitlines() if line.startswith("lstm, ")]
    assert summary and ("kept" in summary[0]) and summary[0].rstrip().endswith(" s")
    warned = invoke("predict", "--model", tmp_path / "m", "--queries", data,
                    "--out", tmp_path / "p.csv")
    assert "no --history" in warned.output
    quiet = invoke("-q", "predict", "--model", tmp_path / "m", "--queries", data,
                   "--out", tmp_path / "p.csv", "--history", data)
    assert "lines read" not in quiet.output and "predictions ->" in quiet.output


def test_train_refuses_costs_of_the_wrong_star_count_naming_the_config_file(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text("[stars]\ncosts = [1, 2, 3]\n")
    result = runner.invoke(app, ["train", "--data", str(tmp_path / "absent.csv"), "--config",
                                 str(config), "--out", str(tmp_path / "m")])
    assert isinstance(result.exception, StarcastError)  # before any data is read
    assert str(result.exception).startswith(f"{config}: stars.costs: expected 5 numbers")
