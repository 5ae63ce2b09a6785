"""Write an evaluation: metrics.json, one PNG per plot, and a self-contained report.html.

The HTML embeds the PNGs (base64) and renders its tables from the same dictionary that is
written to metrics.json, with every number shown to 4 decimals, so the two never disagree.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from starcast.evaluation import plots
from starcast.evaluation.evaluate import Evaluation
from starcast.jsonsafe import finite


def write_report(evaluation: Evaluation, directory: str | Path) -> dict[str, Path]:
    """Write the report files into `directory`; returns their paths by name."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    metrics = finite(evaluation.metrics | {"training_log": evaluation.training_log})
    paths = {"metrics": out / "metrics.json"}
    paths["metrics"].write_text(json.dumps(metrics, indent=2))
    images = {}
    for name, figure in _figures(evaluation).items():
        path = out / f"{name}.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        paths[name], images[name] = path, path.read_bytes()
    paths["report"] = out / "report.html"
    paths["report"].write_text(render_html(metrics, images))
    return paths


def _figures(evaluation: Evaluation) -> dict[str, Any]:
    overall, slices = evaluation.metrics["overall"], evaluation.metrics["slices"]
    frame = evaluation.predictions
    figures = {
        "distribution": plots.rating_distribution(
            frame["truth"].to_numpy(), frame["prediction"].to_numpy(), overall["stars"]
        ),
        "confusion": plots.confusion_matrix(overall["confusion"], overall["stars"]),
        "error_by_history": plots.error_by_slice(
            slices["history"], "Error by the user's earlier events"
        ),
        "error_by_slice": plots.error_by_slice(slices["cold_start"], "Error by cold-start slice"),
    }
    if "balanced" in overall:
        figures["readings_by_star"] = plots.readings_by_star(
            overall["per_class_mae"], overall["balanced"]["per_class_mae"])
    if "calibration" in overall:
        figures["calibration"] = plots.calibration_curve(overall["calibration"])
    if evaluation.training_log.get("epochs"):
        figures["training_curves"] = plots.training_curves(evaluation.training_log)
    return figures


CAPTIONS = {  # what each plot is for: what to look for in it
    "distribution": "Share of each star in the truth and in the rounded expected-star "
                    "predictions. Look for the low stars: the expected star rarely says 1-2.",
    "confusion": "Where each true star's predictions went (rows sum to 1). A strong diagonal "
                 "is good; a bright last column means everything is read as the top star.",
    "error_by_history": "Error by how many earlier reviews of the customer were visible. Error "
                        "should fall as history grows; hatched bars have fewer than 20 events.",
    "error_by_slice": "Error for new customers, new items, both, and warm pairs. Cold slices "
                      "are expected to be worse; hatched bars have fewer than 20 events.",
    "readings_by_star": "MAE per true star for both readings. The balanced reading should be "
                        "far better on the rare low stars, at some cost on the common top star.",
    "calibration": "Predicted probability of a star against how often it happened. Points on "
                   "the diagonal are honest probabilities; below it, over-confident.",
    "training_curves": "Training loss and valid RMSE per epoch; the dotted line is the epoch "
                       "kept (0: the untrained network, biases and fold-in, won on valid).",
}


def fmt(value: Any) -> str:
    """How every number appears in the report."""
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list | tuple) and len(value) == 2:
        return f"[{fmt(value[0])}, {fmt(value[1])}]"
    return html.escape(str(value))


def headline(metrics: dict[str, Any]) -> list[tuple[str, Any]]:
    """The summary rows shown first (and printed by the CLI)."""
    o = metrics["overall"]
    rows = [("events", o["n"]), ("RMSE", o["rmse"]), ("RMSE 95% CI", o["rmse_ci95"]),
            ("MAE", o["mae"]), ("macro-MAE", o["macro_mae"]),
            ("macro-MAE 95% CI", o["macro_mae_ci95"]), ("accuracy (rounded)", o["accuracy"]),
            ("macro-F1 (rounded)", o["macro_f1"])]
    if "balanced" in o:
        b = o["balanced"]
        rows += [("balanced: MAE", b["mae"]), ("balanced: macro-MAE", b["macro_mae"]),
                 ("balanced: macro-MAE 95% CI", b["macro_mae_ci95"])]
    if "nll" in o:
        rows.append(("negative log-likelihood", o["nll"]))
        rows.append(("ranked probability score", o["rps"]))
    if "nll_training_shares" in o:
        rows += [("NLL of the training star shares", o["nll_training_shares"]),
                 ("RPS of the training star shares", o["rps_training_shares"])]
    return rows


def render_html(metrics: dict[str, Any], images: dict[str, bytes]) -> str:
    o = metrics["overall"]
    balanced = o.get("balanced", {})
    per_class = [{"star": s, "count": sum(o["confusion"][i]),
                  "rmse": o["per_class_rmse"].get(str(s)), "mae": o["per_class_mae"].get(str(s)),
                  "recall": o["recall"].get(str(s))}
                 | ({"balanced: mae": balanced["per_class_mae"].get(str(s)),
                     "balanced: recall": balanced["recall"].get(str(s))} if balanced else {})
                 for i, s in enumerate(o["stars"]) if str(s) in o["per_class_mae"]]
    about = metrics.get("about", {})
    baseline = metrics.get("baseline") or {}
    rows = [{"metric": k, "value": v} | ({"bias baseline": _baseline_value(k, baseline)}
                                        if baseline else {})
            for k, v in headline(metrics)]
    sections = [
        f"<h1>starcast evaluation: {html.escape(metrics['model'])}</h1>",
        "<p>" + "; ".join(f"{html.escape(str(k))}: {html.escape(str(v))}"
                          for k, v in about.items()) + "</p>",
        _table(rows, "Overall"),
        _table(per_class, "Per true star"),
        *(_table(rows, f"Slice: {kind.replace('_', ' ')}") for kind, rows in
          metrics["slices"].items()),
    ]
    if balanced:
        sections.append(_table([{"true star": s} | {f"read {t}": n for t, n in
                                                     zip(o["stars"], row, strict=True)}
                                for s, row in zip(o["stars"], balanced["confusion"],
                                                  strict=True)],
                               "Confusion of the balanced reading"))
    if "calibration" in o:
        sections.append(_table(o["calibration"], "Calibration of star probabilities"))
    sections += [
        f'<figure><img alt="{name}" src="data:image/png;base64,'
        f'{base64.b64encode(data).decode()}"><figcaption>'
        f'{html.escape(CAPTIONS.get(name, name))}</figcaption></figure>'
        for name, data in images.items()
    ]
    style = ("body{font-family:sans-serif;margin:2em;max-width:60em}table{border-collapse:"
             "collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;"
             "text-align:right}figure{display:inline-block;margin:1em;max-width:36em}"
             "figcaption{font-size:.9em;color:#444}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>starcast evaluation"
            f"</title><style>{style}</style></head><body>{''.join(sections)}</body></html>")


BASELINE_KEYS = {"RMSE": "rmse", "MAE": "mae", "macro-MAE": "macro_mae",
                 "balanced: macro-MAE": "balanced_macro_mae"}


def _baseline_value(metric: str, baseline: dict[str, Any]) -> Any:
    return baseline.get(BASELINE_KEYS.get(metric, ""), "")


def _table(rows: list[dict[str, Any]], title: str) -> str:
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{fmt(v)}</td>" for v in r.values()) + "</tr>"
                   for r in rows)
    return f"<h2>{html.escape(title)}</h2><table><tr>{head}</tr>{body}</table>"
