"""Rating-prediction metrics. Errors are computed on predictions as given (already in scale)."""

from __future__ import annotations

import numpy as np


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(y_true) - np.asarray(y_pred)) ** 2)))


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(y_true) - np.asarray(y_pred))))


def per_class_mae(y_true: np.ndarray, y_pred: np.ndarray) -> dict[int, float]:
    """MAE of the events of each true star class (true ratings rounded to whole stars)."""
    classes = np.rint(np.asarray(y_true)).astype(int)
    errors = np.abs(np.asarray(y_true) - np.asarray(y_pred))
    return {int(k): float(errors[classes == k].mean()) for k in np.unique(classes)}


def macro_mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean over true star classes of their MAE, so rare 1-3 star reviews weigh as much as 5s."""
    return float(np.mean(list(per_class_mae(y_true, y_pred).values())))


def summary(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    return {
        "n": int(len(y_true)),
        "rmse": rmse(y_true, y_pred),
        "mae": mae(y_true, y_pred),
        "macro_mae": macro_mae(y_true, y_pred),
    }
