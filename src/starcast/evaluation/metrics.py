"""Rating-prediction metrics. Errors are computed on predictions as given (already in scale).

True ratings are rounded to whole stars to form classes; a prediction's class is its rounded
value. Star classes run from `low` to `high` of the rating scale.
"""

from __future__ import annotations

import numpy as np

BOOTSTRAP_SAMPLES = 1000


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(y_true) - np.asarray(y_pred)) ** 2)))


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(y_true) - np.asarray(y_pred))))


def _by_class(y_true: np.ndarray, y_pred: np.ndarray, metric) -> dict[int, float]:
    classes = np.rint(np.asarray(y_true)).astype(int)
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return {int(k): metric(y_true[classes == k], y_pred[classes == k]) for k in np.unique(classes)}


def per_class_mae(y_true: np.ndarray, y_pred: np.ndarray) -> dict[int, float]:
    """MAE of the events of each true star class (true ratings rounded to whole stars)."""
    return _by_class(y_true, y_pred, mae)


def per_class_rmse(y_true: np.ndarray, y_pred: np.ndarray) -> dict[int, float]:
    return _by_class(y_true, y_pred, rmse)


def macro_mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean over true star classes of their MAE, so rare 1-3 star reviews weigh as much as 5s."""
    return float(np.mean(list(per_class_mae(y_true, y_pred).values())))


def confusion(y_true: np.ndarray, y_pred: np.ndarray, stars: np.ndarray) -> np.ndarray:
    """Counts [true star, rounded predicted star] over the star classes `stars`."""
    low = int(stars[0])
    t = np.clip(np.rint(y_true).astype(int), low, int(stars[-1])) - low
    p = np.clip(np.rint(y_pred).astype(int), low, int(stars[-1])) - low
    out = np.zeros((len(stars), len(stars)), dtype=np.int64)
    np.add.at(out, (t, p), 1)
    return out


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Share of events whose rounded prediction is the true star."""
    return float(np.mean(np.rint(y_true) == np.rint(y_pred)))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, stars: np.ndarray) -> float:
    """Mean F1 of the rounded prediction over the star classes present in truth or prediction."""
    counts = confusion(y_true, y_pred, stars)
    tp = np.diag(counts).astype(float)
    precision = np.divide(tp, counts.sum(0), out=np.zeros_like(tp), where=counts.sum(0) > 0)
    recall = np.divide(tp, counts.sum(1), out=np.zeros_like(tp), where=counts.sum(1) > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp),
                   where=(precision + recall) > 0)
    present = (counts.sum(0) + counts.sum(1)) > 0
    return float(f1[present].mean())


def bootstrap_interval(
    y_true: np.ndarray, y_pred: np.ndarray, metric, seed: int = 0,
    samples: int = BOOTSTRAP_SAMPLES,
) -> tuple[float, float]:
    """95% percentile interval of `metric` over resamples of the events (with replacement)."""
    return _interval([metric(y_true[idx], y_pred[idx])
                      for idx in _resamples(len(y_true), seed, samples)])


def paired_bootstrap_interval(
    y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, metric=None, seed: int = 0,
    samples: int = BOOTSTRAP_SAMPLES,
) -> tuple[float, float]:
    """95% interval of metric(a) - metric(b) over resamples of the events, both models on the
    same resampled events (paired: what they share of the noise cancels). Predictions may be
    [runs, events] (several seeds): the metric is then the mean over runs."""
    metric = rmse if metric is None else metric

    def mean_metric(y: np.ndarray, pred: np.ndarray) -> float:
        return float(np.mean([metric(y, p) for p in np.atleast_2d(pred)]))

    return _interval([mean_metric(y_true[idx], pred_a[..., idx])
                      - mean_metric(y_true[idx], pred_b[..., idx])
                      for idx in _resamples(len(y_true), seed, samples)])


def _resamples(n: int, seed: int, samples: int) -> np.ndarray:
    """[samples, n] event indices drawn with replacement."""
    return np.random.default_rng(seed).integers(0, n, (samples, n))


def _interval(values: list[float]) -> tuple[float, float]:
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def negative_log_likelihood(y_true: np.ndarray, probabilities: np.ndarray, low: int) -> float:
    """Mean -log p(true star) under the predicted star probabilities (columns low..high)."""
    column = np.clip(np.rint(y_true).astype(int) - low, 0, probabilities.shape[1] - 1)
    p = probabilities[np.arange(len(y_true)), column]
    return float(-np.mean(np.log(np.clip(p, 1e-12, 1.0))))


def ranked_probability_score(y_true: np.ndarray, probabilities: np.ndarray, low: int) -> float:
    """Mean over events of sum_k (P(r <= k) - [true <= k])^2: a proper score that, unlike the
    log loss, counts how far off in stars the probability mass is."""
    column = np.clip(np.rint(y_true).astype(int) - low, 0, probabilities.shape[1] - 1)
    truth = np.arange(probabilities.shape[1])[None, :] >= column[:, None]
    return float(np.mean(np.sum((np.cumsum(probabilities, axis=1) - truth) ** 2, axis=1)))


def recall(y_true: np.ndarray, y_pred: np.ndarray, stars: np.ndarray) -> dict[str, float]:
    """Per true star: the share of its events whose rounded prediction is that star."""
    counts = confusion(y_true, y_pred, stars)
    return {str(int(s)): float(counts[k, k] / counts[k].sum())
            for k, s in enumerate(stars) if counts[k].sum() > 0}


def probability_metrics(
    y_true: np.ndarray, probabilities: np.ndarray, low: int, shares: np.ndarray | None = None
) -> dict:
    """NLL, ranked probability score and the reliability table of star probabilities; with
    `shares` (the training stars' frequencies) the same scores of predicting just those."""
    out = {"nll": negative_log_likelihood(y_true, probabilities, low),
           "rps": ranked_probability_score(y_true, probabilities, low),
           "calibration": calibration(y_true, probabilities, low)}
    if shares is not None:
        constant = np.tile(np.asarray(shares, dtype=float), (len(y_true), 1))
        out["nll_training_shares"] = negative_log_likelihood(y_true, constant, low)
        out["rps_training_shares"] = ranked_probability_score(y_true, constant, low)
    return out


def calibration(
    y_true: np.ndarray, probabilities: np.ndarray, low: int, bins: int = 10
) -> list[dict]:
    """Reliability table over all (event, star) probabilities: mean predicted vs observed rate."""
    stars = low + np.arange(probabilities.shape[1])
    observed = (np.rint(y_true)[:, None] == stars[None, :]).astype(float).ravel()
    predicted = probabilities.ravel()
    which = np.minimum((predicted * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        inside = which == b
        if inside.any():
            rows.append({
                "bin": f"{b / bins:.2f}-{(b + 1) / bins:.2f}",
                "count": int(inside.sum()),
                "mean_predicted": float(predicted[inside].mean()),
                "observed": float(observed[inside].mean()),
            })
    return rows


def summary(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    return {
        "n": int(len(y_true)),
        "rmse": rmse(y_true, y_pred),
        "mae": mae(y_true, y_pred),
        "macro_mae": macro_mae(y_true, y_pred),
    }


def full_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    stars: np.ndarray,
    probabilities: np.ndarray | None = None,
    seed: int = 0,
    shares: np.ndarray | None = None,
) -> dict:
    """Every headline metric of one prediction set (one reading), JSON-ready; with star
    `probabilities` their scores too (`shares`: see `probability_metrics`)."""
    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    out = summary(y_true, y_pred) | {
        "rmse_ci95": bootstrap_interval(y_true, y_pred, rmse, seed),
        "macro_mae_ci95": bootstrap_interval(y_true, y_pred, macro_mae, seed),
        "per_class_rmse": _str_keys(per_class_rmse(y_true, y_pred)),
        "per_class_mae": _str_keys(per_class_mae(y_true, y_pred)),
        "recall": recall(y_true, y_pred, stars),
        "accuracy": accuracy(y_true, y_pred),
        "macro_f1": macro_f1(y_true, y_pred, stars),
        "confusion": confusion(y_true, y_pred, stars).tolist(),
        "stars": [int(s) for s in stars],
    }
    if probabilities is not None:
        out |= probability_metrics(y_true, probabilities, int(stars[0]), shares)
    return out


def _str_keys(d: dict[int, float]) -> dict[str, float]:
    return {str(k): v for k, v in d.items()}
