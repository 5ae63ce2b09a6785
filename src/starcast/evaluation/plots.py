"""The report's figures, each a function of the evaluation's numbers (Matplotlib, no display)."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display is ever needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def rating_distribution(truth: np.ndarray, prediction: np.ndarray, stars: list[int]) -> Figure:
    """Share of each star in the truth and in the rounded predictions, side by side."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.4
    x = np.arange(len(stars))
    bars = ((-width / 2, truth, "true"), (width / 2, prediction, "predicted"))
    for offset, values, label in bars:
        rounded = np.clip(np.rint(values), stars[0], stars[-1]).astype(int)
        share = np.array([np.mean(rounded == s) for s in stars])
        ax.bar(x + offset, share, width, label=label)
    ax.set(xticks=x, xticklabels=[str(s) for s in stars], xlabel="stars", ylabel="share",
           title="True vs predicted ratings (rounded)")
    ax.legend()
    return _tight(fig)


def confusion_matrix(counts: list[list[int]], stars: list[int]) -> Figure:
    """Row-normalised: each true star's row shows where its predictions went."""
    counts = np.asarray(counts, dtype=float)
    rows = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    image = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    for (i, j), value in np.ndenumerate(rows):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center",
                color="white" if value > 0.5 else "black", fontsize=8)
    labels = [str(s) for s in stars]
    ax.set(xticks=range(len(stars)), yticks=range(len(stars)), xticklabels=labels,
           yticklabels=labels, xlabel="predicted (rounded)", ylabel="true",
           title="Confusion matrix (row-normalised)")
    fig.colorbar(image, ax=ax, fraction=0.046)
    return _tight(fig)


FEW = 20  # a slice with fewer events is drawn hatched: its error is mostly noise


def error_by_slice(rows: list[dict[str, Any]], title: str) -> Figure:
    """RMSE and MAE per slice, with the slice's count on the axis; slices of fewer than FEW
    events hatched and marked."""
    labels = [f"{r['slice']}\n(n={r['count']}{', few' if r['count'] < FEW else ''})"
              for r in rows]
    few = [r["count"] < FEW for r in rows]
    return _paired_bars(labels, rows, ("rmse", "RMSE"), ("mae", "MAE"), title, few=few)


def readings_by_star(expected: dict[str, float], balanced: dict[str, float]) -> Figure:
    """MAE per true star of both readings: the expected star and the balanced one."""
    stars = sorted(expected, key=int)
    rows = [{"expected": expected[k], "balanced": balanced.get(k, float("nan"))} for k in stars]
    return _paired_bars(stars, rows, ("expected", "expected star (prediction)"),
                        ("balanced", "balanced star"), "MAE per true star, both readings",
                        xlabel="true star", ylabel="MAE")


def model_comparison(rows: list[dict[str, Any]]) -> Figure:
    """Test RMSE and macro-MAE of every model of a benchmark, side by side in two panels, each
    axis zoomed to its values (models often differ by 0.01-0.02: from 0 the bars would look
    equal), with the value on each bar."""
    labels = [r["model"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.1 * len(rows) + 4), 4.2))
    for ax, (key, name) in zip(axes, (("rmse", "RMSE"), ("macro_mae", "macro-MAE")),
                               strict=True):
        values = np.array([r[key] for r in rows], dtype=float)
        bars = ax.bar(np.arange(len(rows)), values, 0.6, color="C0" if key == "rmse" else "C1")
        low, high = float(np.nanmin(values)), float(np.nanmax(values))
        pad = max(high - low, 0.01) * 0.6
        ax.set_ylim(max(0.0, low - pad), high + pad)
        ax.bar_label(bars, fmt="%.4f", fontsize=7, padding=2)
        ax.set_xticks(np.arange(len(rows)), labels, rotation=30, ha="right")
        ax.set(ylabel=f"test {name} (axis not from 0)", title=name)
    fig.suptitle("Models on the same test rows (lower is better)")
    return _tight(fig)


def _paired_bars(
    labels: list[str], rows: list[dict[str, Any]], first: tuple[str, str],
    second: tuple[str, str], title: str, xlabel: str = "", ylabel: str = "error",
    few: list[bool] | None = None,
) -> Figure:
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(rows)), 3.5))
    x = np.arange(len(rows))
    for offset, (key, name) in ((-0.2, first), (0.2, second)):
        bars = ax.bar(x + offset, [r[key] for r in rows], 0.4, label=name)
        for bar, thin in zip(bars, few or [False] * len(rows), strict=True):
            if thin:
                bar.set_hatch("//")
                bar.set_alpha(0.45)
    ax.set(xticks=x, xticklabels=labels, xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend()
    return _tight(fig)


def calibration_curve(table: list[dict[str, Any]]) -> Figure:
    """Observed frequency of a star against the probability the model gave it."""
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect")
    ax.plot([r["mean_predicted"] for r in table], [r["observed"] for r in table], marker="o",
            label="model")
    ax.set(xlabel="predicted probability", ylabel="observed frequency", xlim=(0, 1), ylim=(0, 1),
           title="Calibration of star probabilities")
    ax.legend()
    return _tight(fig)


def training_curves(log: dict[str, Any]) -> Figure:
    """Training loss and valid RMSE per epoch (the refit's loss, when there was one)."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    epochs = [e for e in log.get("epochs", []) if e.get("loss") is not None]
    ax.plot([e["epoch"] for e in epochs], [e["loss"] for e in epochs], marker="o", label="loss")
    refit = [e for e in log.get("refit_epochs", []) if e.get("loss") is not None]
    if refit:
        ax.plot([e["epoch"] for e in refit], [e["loss"] for e in refit], marker="s",
                label="loss (refit on train + valid)")
    valid = [e for e in log.get("epochs", []) if e.get("valid_rmse") is not None]
    if valid:
        twin = ax.twinx()
        twin.plot([e["epoch"] for e in valid], [e["valid_rmse"] for e in valid], color="C3",
                  marker="^", label="valid RMSE")
        twin.set_ylabel("valid RMSE")
        twin.legend(loc="upper right")
    best = log.get("best_epoch")
    if best is not None and best >= 0 and log.get("epochs"):
        ax.axvline(best, color="grey", linestyle=":", label=f"chosen: epoch {best}")
    ax.set(xlabel="epoch", ylabel="training loss", title="Training curves")
    ax.legend(loc="upper left")
    return _tight(fig)


def _tight(fig: Figure) -> Figure:
    fig.tight_layout()
    return fig

