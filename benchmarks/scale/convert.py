"""Does `starcast data convert` hold its memory as the raw dump grows?

    .venv/bin/python benchmarks/scale/convert.py [--lines 1000000,2000000,4000000,8000000]

For each size, a raw Amazon-2018-style JSON dump is generated (one review per line, about 400
bytes, with a review text; 1% of lines repeat an earlier (user, item) pair and 0.1% are broken
JSON), then `starcast data convert DUMP --out DIR` runs in its own process: wall seconds and
peak resident memory. Written to benchmarks/scale/convert.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
from run import _machine, _run  # the scale benchmark's measured child processes

from starcast.data.synth import SynthConfig, generate

OUT = Path(__file__).parent / "convert.json"
TEXT = "A review long enough to weigh what real ones do. " * 6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", default="1000000,2000000,4000000,8000000")
    args = parser.parse_args()
    rows = []
    for lines in map(int, args.lines.split(",")):
        work = Path(tempfile.mkdtemp())
        dump = _dump(lines, work / "reviews.json")
        measured = _run(["data", "convert", dump, "--out", work / "table"])
        report = json.loads((work / "table" / "report.json").read_text())
        rows.append({"lines": lines, "gb_on_disk": dump.stat().st_size / 1e9,
                     "seconds": measured["seconds"], "peak_gb": measured["peak_gb"],
                     "events": report.get("kept"), "report": report})
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "report"}), flush=True)
        OUT.write_text(json.dumps({"machine": _machine(), "command": "starcast data convert "
                                   "reviews.json --out DIR", "rows": rows}, indent=2))
        dump.unlink()


def _dump(lines: int, path: Path) -> Path:
    events = generate(SynthConfig(users=max(lines // 10, 10), items=max(lines // 50, 10),
                                  events=lines, seed=0)).events
    rng = np.random.default_rng(0)
    repeat = rng.random(lines) < 0.01  # an earlier pair again, a day later
    source = rng.integers(0, lines, lines)
    frame = pl.DataFrame({
        "overall": events["rating"],
        "verified": True,
        "reviewerID": np.where(repeat, events["user"].to_numpy()[source], events["user"]),
        "asin": np.where(repeat, events["item"].to_numpy()[source], events["item"]),
        "reviewText": TEXT,
        "unixReviewTime": events["ts"] + repeat * 86_400,
    })
    frame.write_ndjson(path)
    text = path.read_bytes().split(b"\n")
    for i in np.flatnonzero(rng.random(len(text) - 1) < 0.001):
        text[i] = text[i][: len(text[i]) // 2]  # broken JSON, to be counted
    path.write_bytes(b"\n".join(text))
    return path


if __name__ == "__main__":
    main()
