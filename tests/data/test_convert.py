"""Streaming conversion of a dump into a Parquet event table."""

import gzip
import json

import polars as pl
import pytest

from starcast import read_events
from starcast.data.convert import convert
from starcast.errors import DataError


def test_a_real_dump_becomes_the_same_events_in_parquet(tmp_path, data_dir) -> None:
    raw = data_dir / "amazon" / "All_Beauty_5.json.gz"
    done = convert(raw, tmp_path / "out", chunk_lines=1_000)
    assert done.chunks == 6  # 5,269 lines in chunks of 1,000
    parquet = pl.read_parquet(done.events)
    expected = read_events(raw).events.sort(["ts", "user", "item"])
    assert parquet.equals(expected.select(parquet.columns))
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert (report["lines_read"], report["duplicates_removed"]) == (5_269, 1_177)
    # and reading the Parquet table gives the same events as the JSON path
    again = read_events(done.events).events.sort(["ts", "user", "item"])
    assert again.equals(expected.select(again.columns))


def test_duplicates_across_chunks_and_bad_lines_are_handled(tmp_path) -> None:
    lines = [json.dumps({"overall": float(1 + k % 5), "reviewerID": f"u{k % 300}",
                         "asin": f"i{k % 70}", "unixReviewTime": 1_000 + k})
             for k in range(3_000)]
    lines[1_234] = "{not json"
    # the same pair again much later in the file, with an earlier timestamp: the first wins
    lines.append(json.dumps({"overall": 1.0, "reviewerID": "u0", "asin": "i0",
                             "unixReviewTime": 999}))
    raw = tmp_path / "reviews.json.gz"
    with gzip.open(raw, "wt") as f:
        f.write("\n".join(lines) + "\n")
    done = convert(raw, tmp_path / "out", chunk_lines=400)
    assert done.chunks == 8  # larger than one chunk: streamed
    parquet = pl.read_parquet(done.events)
    expected = read_events(raw).events.sort(["ts", "user", "item"])
    assert parquet.equals(expected.select(parquet.columns))
    assert done.report.bad_total == 1 and done.report.lines_read == 3_001
    assert done.report.kept == parquet.height
    assert parquet.filter((pl.col("user") == "u0") & (pl.col("item") == "i0"))["ts"].min() > 999


def test_users_de_duplicated_in_groups_merge_into_the_same_events(tmp_path, data_dir) -> None:
    raw = data_dir / "amazon" / "All_Beauty_5.json.gz"
    done = convert(raw, tmp_path / "out", chunk_lines=1_000, group_events=1_000)  # 6 groups
    parquet = pl.read_parquet(done.events)
    assert parquet["ts"].is_sorted()
    assert done.report.duplicates_removed == 1_177
    expected = read_events(raw).events.sort(["ts", "user", "item"])
    assert parquet.sort(["ts", "user", "item"]).equals(expected.select(parquet.columns))
    assert not (tmp_path / "out" / "_staging").exists()


def test_a_non_empty_output_folder_is_refused_without_overwrite(tmp_path) -> None:
    raw = tmp_path / "r.json"
    raw.write_text(json.dumps({"reviewerID": "u", "asin": "i", "overall": 5,
                               "unixReviewTime": 10}) + "\n")
    out = tmp_path / "out"
    (out / "_staging").mkdir(parents=True)
    keep = out / "_staging" / "mine.txt"
    keep.write_text("not yours")
    with pytest.raises(DataError, match="not empty"):
        convert(raw, out)
    assert keep.read_text() == "not yours"
    assert convert(raw, out, overwrite=True).report.kept == 1
