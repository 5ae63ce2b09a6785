"""The `starcast` command line: parse, call one library function, render."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from starcast.data.readers import ColumnMap, ReadResult, read_events
from starcast.data.report import ReadReport
from starcast.errors import ConfigError, StarcastError

app = typer.Typer(no_args_is_help=True, help="Predict star ratings from time-ordered reviews.")
data_app = typer.Typer(no_args_is_help=True, help="Read, inspect and generate review data.")
app.add_typer(data_app, name="data")
console = Console(stderr=True)  # reports, progress, warnings (silenced by --quiet)
errors = Console(stderr=True)  # the one error line, always
out = Console()
reading = {"allow_truncated": False}  # set by the global --allow-truncated


def _version(value: bool) -> None:
    if value:
        from starcast import __version__

        out.print(f"starcast {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    verbose: Annotated[bool, typer.Option(
        "-v", "--verbose", help="Log more: every epoch, library messages at INFO.")] = False,
    quiet: Annotated[bool, typer.Option(
        "-q", "--quiet", help="Only results and errors: no reports, progress or warnings.")
    ] = False,
    allow_truncated: Annotated[bool, typer.Option(
        help="Keep the lines before the break of a truncated .gz (counted in the report).")
    ] = False,
) -> None:
    """Predict star ratings from time-ordered reviews."""
    import logging

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    console.quiet = quiet
    reading["allow_truncated"] = allow_truncated
    reading["verbose"] = verbose

FormatOpt = Annotated[str | None, typer.Option("--format", help="Input format (default: detect).")]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Stop at the first bad row.")]
UserCol = Annotated[str, typer.Option("--user-col", help="CSV/Parquet user column.")]
ItemCol = Annotated[str, typer.Option("--item-col", help="CSV/Parquet item column.")]
RatingCol = Annotated[str, typer.Option("--rating-col", help="CSV/Parquet rating column.")]
TsCol = Annotated[str, typer.Option("--ts-col", help="CSV/Parquet timestamp column.")]
ModelDir = Annotated[Path, typer.Option("--model", help="Model directory from `starcast train`.")]
History = Annotated[Path | None, typer.Option(
    "--history", help="The customers' reviews the predictions may read (each query sees those "
    "with ts up to its own, never its own pair), e.g. train + valid, or everything known. "
    "Without it a prediction knows only what the model was trained on, which is far worse "
    "for customers whose reviews came later.")]


def _history_or_warn(history: Path | None, fmt: str | None, strict: bool):
    if history is None:
        console.print("[yellow]warning:[/] no --history: predictions read only what the model "
                      "was trained on (see --help)")
        return None
    return _read_plain(history, fmt, strict)
CostsOpt = Annotated[str | None, typer.Option(
    "--costs", help="The balanced reading's costs: per-star weights '1,4,4,2,1' or a matrix "
    "'0,1,2,3,4;1,0,1,2,3;...' (row: star read, column: true star). Default: the model's.")]


def _costs(text: str | None) -> list | None:
    """'--costs' as numbers: one row (per-star weights) or rows split by ';' (a matrix)."""
    if text is None:
        return None
    try:
        rows = [[float(v) for v in row.split(",")] for row in text.split(";")]
    except ValueError as err:
        raise ConfigError(f"--costs: {err}") from None
    return rows[0] if len(rows) == 1 else rows


def _read(
    path: Path, fmt: str | None, strict: bool, user: str, item: str, rating: str, ts: str
) -> ReadResult:
    result = read_events(path, format=fmt, strict=strict, columns=ColumnMap(user, item, rating, ts),
                         allow_truncated=reading["allow_truncated"])
    _render_report(result.report)
    return result


def _render_report(report: ReadReport, rows: str = "events", key: str = "(user, item)") -> None:
    console.print(
        f"[bold]{report.source}[/] ({report.format}): {report.lines_read:,} lines read, "
        f"{report.bad_total:,} bad, {report.duplicates_removed:,} duplicate {key} removed, "
        f"{report.kept:,} {rows}"
    )
    if report.blank_lines:
        console.print(f"  {report.blank_lines:,} of the lines read are blank")
    for note, count in report.notes.most_common():
        console.print(f"  {count:,} rows: {note}")
    if report.ts_unit not in (None, "seconds"):
        console.print(f"  ts in {report.ts_unit}: converted to seconds")
    if report.truncated_at is not None:
        console.print(f"  [yellow]truncated:[/] the file breaks off at byte "
                      f"{report.truncated_at:,}; the lines before it are kept")
    for reason, count in report.bad.most_common():
        console.print(f"  skipped {count:,}: {reason}")
    for example in report.examples:
        console.print(f"  e.g. {example}")


def _table(rows: list[dict], title: str) -> Table:
    table = Table(title=title)
    for key in rows[0]:
        table.add_column(key, justify="left" if key == "model" else "right")
    for row in rows:
        table.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row.values()))
    return table


@app.command()
def demo(
    events: Annotated[int, typer.Option(help="Synthetic events to generate.")] = 60_000,
    seed: Annotated[int, typer.Option(help="Seed for data and models.")] = 0,
) -> None:
    """Generate synthetic reviews, split them in time, fit the models, compare them on test."""
    from starcast.demo import DemoConfig, run_demo

    with console.status("starting") as status:
        rows = run_demo(DemoConfig(events=events, seed=seed), step=status.update)
    out.print(_table(rows, "starcast demo: synthetic data, `time` split, test set"))


@app.command()
def split(
    data: Annotated[Path, typer.Argument(help="Review file (any supported format).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for train/valid/test.csv.")],
    protocol: Annotated[str, typer.Option(help="loo | time")] = "time",
    fmt: FormatOpt = None,
    strict: StrictOpt = False,
    user_col: UserCol = "user",
    item_col: ItemCol = "item",
    rating_col: RatingCol = "rating",
    ts_col: TsCol = "ts",
) -> None:
    """Split reviews in time and write train.csv, valid.csv and test.csv."""
    from starcast.data.splits import split_events

    _check_protocol(protocol)
    events = _read(data, fmt, strict, user_col, item_col, rating_col, ts_col).events
    parts = split_events(events, protocol)
    for name, path in parts.write(out_dir).items():
        out.print(f"{name}: {getattr(parts, name).height:,} events -> {path}")


@data_app.command("inspect")
def inspect(
    data: Annotated[Path, typer.Argument(help="Review file (any supported format).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    fmt: FormatOpt = None,
    strict: StrictOpt = False,
    user_col: UserCol = "user",
    item_col: ItemCol = "item",
    rating_col: RatingCol = "rating",
    ts_col: TsCol = "ts",
) -> None:
    """Events, users, items, rating imbalance, activity, time span and cold-start shares (of
    an item-metadata file: items and how many have each feature)."""
    from starcast.data import formats
    from starcast.data.inspect import inspect_events, inspect_items, summary_lines

    if formats.resolve_format(data, fmt, formats.EVENT_FORMATS + formats.ITEM_FORMATS) in (
            formats.ITEM_FORMATS):
        items = _read_items_result(data, fmt, strict)
        facts = inspect_items(items.items, items.report)
    else:
        result = _read(data, fmt, strict, user_col, item_col, rating_col, ts_col)
        facts = inspect_events(result.events, result.report)
    if as_json:
        print(json.dumps(facts, indent=2))
        return
    for line in summary_lines(facts):
        out.print(line, highlight=False)


@data_app.command("convert")
def convert(
    data: Annotated[Path, typer.Argument(help="Review file (any supported format), any size.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for events.parquet.")],
    items: Annotated[Path | None, typer.Option(help="Item metadata to convert too.")] = None,
    chunk_lines: Annotated[int, typer.Option(help="Lines parsed per chunk.")] = 200_000,
    overwrite: Annotated[bool, typer.Option(
        help="Write into a non-empty --out (replacing what a conversion writes).")] = False,
    fmt: FormatOpt = None,
    strict: StrictOpt = False,
    user_col: UserCol = "user",
    item_col: ItemCol = "item",
    rating_col: RatingCol = "rating",
    ts_col: TsCol = "ts",
) -> None:
    """Stream a dump into a Parquet event table (+ items), chunk by chunk, de-duplicated."""
    from starcast.data.convert import convert as run

    with console.status(f"converting {data.name}"):
        done = run(data, out_dir, items=items, format=fmt, strict=strict,
                   columns=ColumnMap(user_col, item_col, rating_col, ts_col),
                   chunk_lines=chunk_lines, overwrite=overwrite,
                   allow_truncated=reading["allow_truncated"])
    _render_report(done.report)
    out.print(f"{done.report.kept:,} events in {done.chunks} chunks -> {done.events}")
    if done.items:
        out.print(f"items -> {done.items}")


@data_app.command("synth")
def synth(
    out_path: Annotated[Path, typer.Option("--out", help="Events file (.parquet or .csv).")],
    users: int = 2_000,
    items: int = 500,
    events: int = 50_000,
    seed: int = 0,
) -> None:
    """Generate synthetic reviews (items written beside them as <stem>.items.parquet)."""
    from starcast.data.synth import SynthConfig, generate, write

    with console.status(f"generating {events:,} events"):
        paths = write(generate(SynthConfig(users, items, events, seed=seed)), out_path)
    out.print(f"events -> {paths[0]}\nitems -> {paths[1]}")


def _training_progress(progress: Progress):
    task = progress.add_task("training", total=None)
    state: dict = {"valid": "valid RMSE -", "last": 0, "refit": False}

    def on_update(info: dict) -> None:
        if info["epoch"] < state["last"]:  # counting from 1 again: the refit on train + valid
            state["refit"], state["valid"] = True, "refit on train + valid"
        state["last"] = info["epoch"]
        if info.get("epoch_end"):
            if not state["refit"]:
                state["valid"] = f"valid RMSE {info['valid_rmse']:.4f}"
            if reading.get("verbose"):
                console.log(f"epoch {info['epoch']}: loss {info['loss']:.4f}, {state['valid']}")
        progress.update(
            task, description=f"epoch {info['epoch']}  loss {info['loss']:.4f}  {state['valid']}")

    return on_update


def _training_summary(log: dict, model: str, seconds: float) -> str:
    """One line: the chosen epoch against the untrained network, the refit, the time."""
    epochs = log.get("epochs") or []
    valid = {e["epoch"]: e.get("valid_rmse") for e in epochs}
    best = log.get("best_epoch")
    parts = [model]
    if valid.get(0) is not None and best is not None:
        if best == 0:
            trained = [v for k, v in valid.items() if k > 0 and v is not None]
            parts.append(f"kept the untrained network (valid RMSE {valid[0]:.4f}"
                         + (f"; best trained epoch {min(trained):.4f}" if trained else "")
                         + ")")
        else:
            parts.append(f"kept epoch {best} of {len(epochs) - 1} (valid RMSE "
                         f"{valid[best]:.4f}; untrained {valid[0]:.4f}; item tables "
                         f"{log.get('item_tables', 'learned')}; "
                         + ("reads" if log.get("recurrent", True) else "without")
                         + " the sequence state)")
    elif epochs:
        parts.append(f"{len(epochs)} epochs, no valid events to choose by")
    refit = log.get("refit_epochs") or []
    if refit:
        parts.append(f"refit on train + valid: {len(refit)} epochs")
    if log.get("blend"):
        parts.append("FM weight " + "/".join(f"{w:.2f}" for w in log["blend"]))
    if log.get("fm_mix") is not None:
        parts.append(f"regression FM's share {log['fm_mix']:.2f} (probit {1 - log['fm_mix']:.2f})")
    return ", ".join(parts) + f"; {seconds:.0f} s"


@app.command()
def train(
    out_dir: Annotated[Path, typer.Option("--out", help="Model directory to write.")],
    train_path: Annotated[Path | None, typer.Option("--train", help="Training events.")] = None,
    valid_path: Annotated[Path | None, typer.Option("--valid", help="Validation events.")] = None,
    data: Annotated[Path | None, typer.Option(help="Raw reviews to split internally.")] = None,
    items: Annotated[
        Path | None, typer.Option(help="Item features (category, brand, price), any format.")
    ] = None,
    split_protocol: Annotated[
        str, typer.Option("--split", help="loo | time (with --data)")
    ] = "time",
    model: Annotated[
        str | None, typer.Option(help="lstm | transformer | seed | bias | mf | mean")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the training run.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Override the epoch count.")] = None,
    device: Annotated[
        str | None, typer.Option(help="auto | cpu | cuda (auto: CUDA when present).")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="Torch threads (default 1).")] = None,
    precision: Annotated[
        str | None, typer.Option(help="auto | fp32 | bf16 (auto: bf16 autocast on CUDA).")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="JSON or TOML run configuration.")] = None,
    fmt: FormatOpt = None,
    strict: StrictOpt = False,
    nproc: Annotated[
        int | None, typer.Option(help="Train data-parallel in N local processes (torchrun).")
    ] = None,
    distributed: Annotated[
        bool, typer.Option(help="This process is one rank of a torchrun job.")
    ] = False,
) -> None:
    """Fit a model on TRAIN (early stopping on VALID) or on a split of --data; save it."""
    from starcast.config import StarcastConfig, load_config
    from starcast.forecaster import Forecaster
    from starcast.training import distributed as dist

    if nproc is not None:
        command = dist.torchrun_command(_without_nproc(sys.argv[1:]), nproc)
        raise typer.Exit(subprocess.call(command))
    run = load_config(config) if config else StarcastConfig()
    # every setting is checked before any data is read
    try:
        forecaster = Forecaster(model, run, seed=seed, epochs=epochs, device=device,
                                threads=threads, precision=precision)
    except ConfigError as err:  # a setting checked against the rating scale: name its file
        if config is None:
            raise
        raise ConfigError(f"{config}: {err}") from err
    with dist.process_group(distributed, device or run.train.device) as cluster:
        console.quiet = out.quiet = console.quiet or not cluster.main  # one rank speaks
        if data is not None:
            parts = _split(data, split_protocol, fmt, strict)
            train_events, valid_events = parts.train, parts.valid
        elif train_path is not None:
            train_events = _read_plain(train_path, fmt, strict)
            valid_events = _read_plain(valid_path, fmt, strict) if valid_path else None
        else:
            raise ConfigError("give --train (and --valid) or --data with --split")
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
            console=console,
        ) as progress:
            forecaster.progress = _training_progress(progress)
            started = time.perf_counter()
            forecaster.fit(train_events, valid_events, _read_items(items, strict))
        if cluster.main:  # every rank holds the same weights; one writes them
            forecaster.save(out_dir)
    summary = _training_summary(forecaster.training_log, forecaster.config.model,
                                time.perf_counter() - started)
    console.print(summary, highlight=False, soft_wrap=True)
    out.print(f"{forecaster.config.model} model -> {out_dir}")


def _without_nproc(args: list[str]) -> list[str]:
    """The command line as given, less `--nproc N` (torchrun's children get --distributed)."""
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            kept.append(arg)
    return kept


@app.command()
def predict(
    model: ModelDir,
    queries: Annotated[Path, typer.Option(help="CSV/Parquet with user,item,ts.")],
    out_path: Annotated[Path, typer.Option("--out", help="Predictions CSV.")],
    history: History = None,
    costs: CostsOpt = None,
    fmt: FormatOpt = None,
    strict: StrictOpt = False,
) -> None:
    """One prediction per query, in order: user,item,ts,prediction,balanced,cold,p1..p5.

    prediction: the expected star (least squared error); balanced: the star of least
    expected cost, each true star weighted by the inverse of its training share unless
    --costs says otherwise (for the rare low-star reviews)."""
    from starcast.data.queries import read_queries
    from starcast.forecaster import Forecaster
    from starcast.models.stars import StarCosts

    forecaster = Forecaster.load(model)
    reading = StarCosts.parse(_costs(costs), forecaster.scale.stars, "--costs") if costs else None
    events = _history_or_warn(history, fmt, strict)
    predictions = forecaster.predict(events, read_queries(queries), reading)
    predictions.write_csv(out_path)
    out.print(f"{predictions.height:,} predictions -> {out_path}")


@app.command()
def evaluate(
    model: ModelDir,
    report: Annotated[Path, typer.Option(help="Directory for metrics.json, plots, report.html.")],
    queries: Annotated[
        Path | None, typer.Option(help="Events to predict, with their true ratings.")
    ] = None,
    history: History = None,
    data: Annotated[Path | None, typer.Option(help="Raw reviews: their test split.")] = None,
    split_protocol: Annotated[str, typer.Option("--split", help="loo | time")] = "time",
    offline: Annotated[
        bool, typer.Option(help="With --data: history is train + valid, not all events.")
    ] = False,
    costs: CostsOpt = None,
    fmt: FormatOpt = None,
    strict: StrictOpt = False,
) -> None:
    """Metrics, slices and plots of a model on test events: DIR/report.html and metrics.json.

    Both readings side by side: the expected star and the balanced star."""
    from starcast.evaluation.evaluate import evaluate as run
    from starcast.evaluation.report import fmt as show
    from starcast.evaluation.report import headline, write_report
    from starcast.forecaster import Forecaster
    from starcast.models.stars import StarCosts

    forecaster = Forecaster.load(model)
    reading = StarCosts.parse(_costs(costs), forecaster.scale.stars, "--costs") if costs else None
    if data is not None:
        parts = _split(data, split_protocol, fmt, strict)
        test, events = parts.test, _history(parts, offline)
    elif queries is not None:
        test = _read_plain(queries, fmt, strict)
        events = _history_or_warn(history, fmt, strict)
    else:
        raise ConfigError("give --queries (and --history) or --data with --split")
    with console.status("evaluating"):
        about = {"model directory": str(model),
                 "data": str(data if data is not None else queries),
                 "history": ("train + valid" if offline else "all events") if data is not None
                 else str(history) if history else "none"}
        evaluation = run(forecaster, events, test, costs=reading, about=about)
        paths = write_report(evaluation, report)
    table = Table(title=f"{evaluation.metrics['model']} on {test.height:,} events")
    table.add_column("metric", justify="left")
    table.add_column("value", justify="right")
    for name, value in headline(evaluation.metrics):
        table.add_row(name, show(value))
    out.print(table)
    out.print(f"report -> {paths['report']}")


@app.command()
def benchmark(
    data: Annotated[Path, typer.Option(help="Raw reviews (any supported format).")],
    split_protocol: Annotated[str, typer.Option("--split", help="loo | time")] = "time",
    models: Annotated[
        str, typer.Option(help="Comma-separated models.")
    ] = "bias,mf,seed,lstm,transformer",
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for tables and plot.")] = Path(
        "benchmark"
    ),
    seed: Annotated[int, typer.Option(help="Seed of every training run.")] = 0,
    offline: Annotated[bool, typer.Option(help="History: train + valid, not all events.")] = False,
    peers: Annotated[
        bool | None,
        typer.Option(help="Surprise SVD/SVD++ and the Bayesian FM (regression, ordered probit), "
                     "fitted on train + valid (default: when installed)."),
    ] = None,
    fmt: FormatOpt = None,
    strict: StrictOpt = False,
) -> None:
    """Fit several models on one split and compare them on the same test rows."""
    from starcast.evaluation.benchmark import run_benchmark, write_benchmark
    from starcast.forecaster import MODELS

    names = [m.strip() for m in models.split(",") if m.strip()]
    unknown = [m for m in names if m not in MODELS]
    if unknown or not names:
        raise ConfigError(f"--models: unknown {unknown}; choose from {', '.join(MODELS)}")
    parts = _split(data, split_protocol, fmt, strict)
    with console.status(f"fitting {', '.join(names)}"):
        rows = run_benchmark(parts, names, _history(parts, offline), seed, peers)
    about = {"data": str(data), "split": split_protocol, "seed": seed,
             "history": "train+valid" if offline else "all events (visibility rule)",
             "test_events": parts.test.height}
    paths = write_benchmark(rows, out_dir, about)
    title = f"{data.name}, {split_protocol} split, {parts.test.height:,} test events"
    out.print(_table(rows, title))
    out.print(f"tables -> {paths['markdown']}, {paths['json']}; plot -> {paths['plot']}")


state_app = typer.Typer(no_args_is_help=True, help="The service's state store.")
app.add_typer(state_app, name="state")


@app.command()
def serve(
    model: ModelDir,
    state: Annotated[Path, typer.Option(help="SQLite state file (created when missing).")],
    history: Annotated[
        Path | None, typer.Option(help="Events to compute the states from (new state file).")
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    token_file: Annotated[Path | None, typer.Option(
        help="File holding the bearer token that write endpoints require.")] = None,
    token: Annotated[str | None, typer.Option(
        envvar="STARCAST_TOKEN", help="The token itself (visible in `ps`: prefer --token-file "
        "or the STARCAST_TOKEN variable).")] = None,
    insecure: Annotated[bool, typer.Option(
        "--insecure", help="Bind a non-loopback address with writes open to anyone.")] = False,
    future_tolerance: Annotated[int, typer.Option(
        help="Seconds an event's ts may lie ahead of this clock.")] = 86_400,
    workers: Annotated[int, typer.Option(help="Server processes (one core each).")] = 1,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
    fmt: FormatOpt = None,
    strict: StrictOpt = False,
) -> None:
    """Serve predictions over HTTP, keeping every customer's state current (docs at /docs)."""
    import os

    import torch
    import uvicorn

    torch.set_num_threads(1)  # one core per server process
    from starcast.serving.app import LOOPBACK_HOSTS, app_from_files
    from starcast.serving.protocol import HeaderDeadline

    secret = _token(token, token_file)
    if secret is None and not _loopback(host) and not insecure:
        raise StarcastError(f"refusing to bind {host} with writes open to anyone: give a token "
                            "(--token-file or STARCAST_TOKEN), or --insecure")
    events = _read_plain(history, fmt, strict) if history else None
    # bound to loopback, only local names are accepted as Host (no DNS rebinding)
    hosts = (*LOOPBACK_HOSTS, host) if _loopback(host) else None
    service = app_from_files(model, state, events, secret, future_tolerance, hosts)
    if secret is None:
        console.print("[yellow]warning:[/] no token: anyone who reaches this port can write "
                      "events (give --token-file or STARCAST_TOKEN)", soft_wrap=True)
    console.print(f"listening on http://{host}:{port} (API docs at /docs; Ctrl+C stops)",
                  soft_wrap=True)
    options = {"host": host, "port": port, "access_log": access_log,
               "log_level": "info" if access_log else "warning",
               "timeout_keep_alive": 5, "h11_max_incomplete_event_size": 64 * 1024,
               "http": HeaderDeadline}  # (request headers within 10 s, see serving.protocol)
    if workers == 1:
        uvicorn.run(service, **options)
        return
    os.environ.update(STARCAST_MODEL=str(model), STARCAST_STATE=str(state),
                      STARCAST_FUTURE_TOLERANCE=str(future_tolerance),
                      STARCAST_PARENT=str(os.getpid()))
    if hosts is not None:
        os.environ["STARCAST_ALLOWED_HOSTS"] = ",".join(hosts)
    if secret is not None:
        os.environ["STARCAST_TOKEN"] = secret
    uvicorn.run("starcast.serving.app:app_from_environment", factory=True, workers=workers,
                **options)


def _token(token: str | None, token_file: Path | None) -> str | None:
    if token_file is None:
        return token or None
    try:
        secret = token_file.read_text().strip()
    except OSError as err:
        raise StarcastError(f"{token_file}: cannot read the token: {err.strerror}") from None
    if not secret:
        raise StarcastError(f"{token_file}: the token file is empty")
    return secret


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@state_app.command("init")
def state_init(
    model: ModelDir,
    history: Annotated[Path, typer.Option(help="Events to compute the states from.")],
    state: Annotated[Path, typer.Option(help="New SQLite state file.")],
    fmt: FormatOpt = None,
    strict: StrictOpt = False,
) -> None:
    """Compute every user's and item's state from a history file, in batch."""
    from starcast.forecaster import Forecaster, model_version
    from starcast.serving.online import OnlineForecaster
    from starcast.serving.store import Store

    events = _read_plain(history, fmt, strict)
    with console.status("computing states"):
        forecaster = Forecaster.load(model)
        store = Store(state)
        store.bind(model_version(model))
        n = OnlineForecaster(forecaster, store).initialise(events)
    out.print(f"{n:,} events -> {state}")


def _check_protocol(protocol: str) -> None:
    from starcast.data.splits import PROTOCOLS

    if protocol not in PROTOCOLS:
        raise ConfigError(f"--split/--protocol {protocol!r}: choose one of "
                          f"{', '.join(PROTOCOLS)}")


def _split(data: Path, protocol: str, fmt: str | None, strict: bool):
    from starcast.data.splits import split_events

    _check_protocol(protocol)  # (before the data is read)
    return split_events(_read_plain(data, fmt, strict), protocol)


def _history(parts, offline: bool):
    """All events (each query sees only what the visibility rule allows), or train + valid."""
    import polars as pl

    known = [parts.train, parts.valid] if offline else [parts.train, parts.valid, parts.test]
    return pl.concat(known)


def _read_plain(path: Path, fmt: str | None, strict: bool):
    return _read(path, fmt, strict, "user", "item", "rating", "ts").events


def _read_items(path: Path | None, strict: bool):
    return None if path is None else _read_items_result(path, None, strict).items


def _read_items_result(path: Path, fmt: str | None, strict: bool):
    from starcast.data.readers import read_items

    result = read_items(path, format=fmt, strict=strict,
                        allow_truncated=reading["allow_truncated"])
    _render_report(result.report, rows="items", key="item")
    return result


def main() -> None:
    """Entry point: library errors become one clear line and exit code 2."""
    try:
        app()
    except StarcastError as err:
        errors.print(f"[red]error:[/] {escape(str(err))}", soft_wrap=True, highlight=False)
        raise SystemExit(2) from None
