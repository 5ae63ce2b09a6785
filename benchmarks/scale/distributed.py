"""One machine, three ways to use its cores for one training epoch of the default lstm.

    .venv/bin/python benchmarks/scale/distributed.py [--events 1000000] [--repeats 2]

On the same synthetic events (users = events / 10, items = events / 50), the whole
`starcast train --data events.parquet --split time --epochs 1` command (reading, features,
one epoch, valid, the refit epoch), as 1 process x 1 thread, 1 process x 2 threads and
`--nproc 2` (2 torchrun ranks x 1 thread, gloo), interleaved over repeats. Peak memory is the
largest single process (each rank holds the whole data). Written to
benchmarks/scale/distributed.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from run import _machine, _run  # the scale benchmark's measured child processes

OUT = Path(__file__).parent / "distributed.json"
WAYS = {
    "1 process x 1 thread": ["--threads", "1"],
    "1 process x 2 threads": ["--threads", "2"],
    "2 processes x 1 thread (--nproc 2)": ["--threads", "1", "--nproc", "2"],
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    data = work / "events.parquet"
    _run(["data", "synth", "--users", args.events // 10, "--items", args.events // 50,
          "--events", args.events, "--out", data])
    runs: dict[str, list[dict]] = {way: [] for way in WAYS}
    for repeat in range(args.repeats):
        for way, flags in WAYS.items():
            out = work / f"model-{list(WAYS).index(way)}-{repeat}"
            measured = _run(["train", "--data", data, "--split", "time", "--epochs", "1",
                             "--out", out, *flags])
            log = json.loads((out / "model.json").read_text())["training_log"]
            runs[way].append({"seconds": measured["seconds"], "peak_gb": measured["peak_gb"],
                              "valid_rmse_epoch1": log["epochs"][1]["valid_rmse"]})
            print(way, json.dumps(runs[way][-1]), flush=True)
    base = statistics.median(r["seconds"] for r in runs["1 process x 1 thread"])
    summary = {way: {"median_seconds": statistics.median(r["seconds"] for r in rows),
                     "speedup_vs_1x1": base / statistics.median(r["seconds"] for r in rows),
                     "runs": rows} for way, rows in runs.items()}
    OUT.write_text(json.dumps({"machine": _machine(), "events": args.events,
                               "command": "starcast train --data events.parquet --split time "
                                          "--epochs 1 --out M [flags]",
                               "ways": summary}, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
