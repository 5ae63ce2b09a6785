import numpy as np
import polars as pl
import pytest
import torch

from starcast.config import SeedConfig, TrainConfig
from starcast.models.seed import SeedModel, training_windows, visible_windows


def events(rows):
    return pl.DataFrame(
        rows, schema={"user": pl.Utf8, "item": pl.Utf8, "rating": pl.Float64, "ts": pl.Int64},
        orient="row",
    )


def queries(rows):
    return pl.DataFrame(rows, schema={"user": pl.Utf8, "item": pl.Utf8, "ts": pl.Int64},
                        orient="row")


def synthetic(n_users=40, per_user=8, seed=0):
    """Users with a personal mean rating, so the previous ratings carry signal."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        level = rng.integers(1, 6)
        for k in range(per_user):
            rating = float(np.clip(level + rng.integers(-1, 2), 1, 5))
            rows.append((f"u{u}", f"i{rng.integers(0, 15)}_{k}", rating, 10 * k + u % 3))
    return events(rows)


def split(frame):
    """Last event of each user in valid, the rest in train."""
    ranked = frame.sort(["user", "ts", "item"]).with_columns(
        (pl.int_range(pl.len()).over("user") == pl.len().over("user") - 1).alias("_last"))
    return (ranked.filter(~pl.col("_last")).drop("_last"),
            ranked.filter(pl.col("_last")).drop("_last"))


def fit(train, valid=None, epochs=4, seed=0, patience=5):
    return SeedModel(SeedConfig(patience=patience), TrainConfig(seed=seed, epochs=epochs)).fit(
        train, valid)


def test_training_windows_left_padded_in_ts_item_order():
    frame = events([
        ("a", "y", 3.0, 2), ("b", "x", 1.0, 1), ("a", "x", 5.0, 1), ("a", "w", 4.0, 2),
        ("a", "z", 2.0, 3),
    ])
    windows, ratings = training_windows(frame, 3)
    # a sorted by (ts, item): x@1=5, w@2=4, y@2=3, z@3=2; then b: x@1=1
    np.testing.assert_array_equal(ratings, [5, 4, 3, 2, 1])
    np.testing.assert_array_equal(windows, [
        [0, 0, 0],  # a's first event: all-zero window, kept
        [0, 0, 5],
        [0, 5, 4],
        [5, 4, 3],  # only the last 3
        [0, 0, 0],  # b's first event sees nothing of a
    ])


def test_visible_windows_hand_computed():
    history = events([
        ("a", "x", 5.0, 1), ("a", "y", 3.0, 2), ("a", "w", 4.0, 2), ("a", "z", 2.0, 3),
        ("a", "v", 1.0, 0), ("b", "x", 2.0, 0),
    ])
    q = queries([
        ("a", "y", 2),   # equal ts visible, own (a, y) excluded: v, x, w
        ("a", "q", 2),   # equal ts visible and ordered by item: v, x, w, y
        ("a", "x", 3),   # own (a, x) excluded even though earlier: v, w, y, z
        ("a", "x", -1),  # nothing visible yet
        ("c", "x", 9),   # unknown user
        ("b", "y", 0),
    ])
    np.testing.assert_array_equal(visible_windows(history, q, 4), [
        [0, 1, 5, 4],
        [1, 5, 4, 3],
        [1, 4, 3, 2],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 2],
    ])
    np.testing.assert_array_equal(visible_windows(history, q[:2], 2), [[5, 4], [4, 3]])


def test_visible_windows_skips_repeated_own_pair():
    history = events([("a", "x", 5.0, 1), ("a", "y", 4.0, 2), ("a", "x", 1.0, 3),
                      ("a", "z", 3.0, 4)])
    q = queries([("a", "x", 9), ("a", "y", 9)])
    np.testing.assert_array_equal(visible_windows(history, q, 2), [[4, 3], [1, 3]])


def test_keras_initialisation():
    model = SeedModel(train=TrainConfig(epochs=0)).fit(synthetic(n_users=3, per_user=3))
    net = model.net_
    h = 50
    for layer in range(2):
        b_ih = getattr(net.lstm, f"bias_ih_l{layer}").detach()
        b_hh = getattr(net.lstm, f"bias_hh_l{layer}").detach()
        total = b_ih + b_hh
        assert torch.all(total[h : 2 * h] == 1) and torch.all(total[:h] == 0)
        assert torch.all(total[2 * h :] == 0)
        w_hh = getattr(net.lstm, f"weight_hh_l{layer}").detach()  # (4h, h)
        assert w_hh.shape == (4 * h, h)
        torch.testing.assert_close(w_hh.T @ w_hh, torch.eye(h), atol=1e-5, rtol=0)
        w_ih = getattr(net.lstm, f"weight_ih_l{layer}").detach()
        fan_in = w_ih.shape[1]
        assert w_ih.abs().max() <= np.sqrt(6 / (fan_in + 4 * h))
        assert w_ih.abs().max() > 0.5 * np.sqrt(6 / (fan_in + 4 * h))  # uniform, not tiny
    assert torch.all(net.dense.bias == 0)
    assert net.dense.weight.abs().max() <= np.sqrt(6 / (h + 1))


def test_predictions_contract_and_deterministic():
    train, valid = split(synthetic())
    q = queries([("u3", "i1_0", 999), ("nobody", "new", 5), ("u0", "new", 0), ("u7", "i2_1", 55)])
    history = pl.concat([train, valid])
    first = fit(train, valid, epochs=3).predict(history, q)
    second = fit(train, valid, epochs=3).predict(history, q)
    assert first["user"].to_list() == ["u3", "nobody", "u0", "u7"]
    assert first["prediction"].is_finite().all()
    assert ((first["prediction"] >= 1) & (first["prediction"] <= 5)).all()
    assert first["cold"].to_list() == [False, True, True, False]
    np.testing.assert_array_equal(first["prediction"].to_numpy(), second["prediction"].to_numpy())
    other = fit(train, valid, epochs=3, seed=1).predict(history, q)
    assert not np.array_equal(first["prediction"].to_numpy(), other["prediction"].to_numpy())


def test_predict_leaves_parameters_and_reads_training_without_history():
    train, valid = split(synthetic())
    model = fit(train, valid, epochs=2)
    before = {k: v.clone() for k, v in model.net_.state_dict().items()}
    q = valid.select("user", "item", "ts")
    empty = model.predict(None, q)
    for key, value in model.net_.state_dict().items():
        assert torch.equal(value, before[key]), key
    np.testing.assert_array_equal(empty["prediction"].to_numpy(),
                                  model.predict(train, q)["prediction"].to_numpy())


def test_early_stopping_restores_best_epoch():
    train, valid = split(synthetic(seed=3))
    model = fit(train, valid, epochs=40, patience=2)
    scores = [h["valid_rmse"] for h in model.history_]
    assert len(scores) < 40  # it stopped early
    best = int(np.argmin(scores))
    assert best < len(scores) - 1 and model.best_epoch_ == best + 1
    out = model.predict(pl.concat([train, valid]), valid.select("user", "item", "ts"))
    rmse = np.sqrt(np.mean((out["prediction"].to_numpy() - valid["rating"].to_numpy()) ** 2))
    assert rmse == pytest.approx(scores[best], abs=1e-5)
    assert rmse < scores[-1]
    assert set(model.history_[0]) == {"epoch", "loss", "valid_rmse", "seconds"}
    assert model.events_per_second_ > 0


def test_learns_personal_levels():
    """Low-rating users get lower predictions than high-rating users: the window is read."""
    train, valid = split(synthetic(n_users=60))
    model = fit(train, valid, epochs=15)
    levels = train.group_by("user").agg(pl.col("rating").mean())
    q = valid.select("user", "item", "ts").join(levels, on="user")
    out = model.predict(train, q)["prediction"].to_numpy()
    assert np.corrcoef(out, q["rating"].to_numpy())[0, 1] > 0.8


def test_state_round_trip():
    train, valid = split(synthetic())
    model = fit(train, valid, epochs=1)
    q = valid.select("user", "item", "ts")
    tensors, meta = model.get_state()
    again = SeedModel(train=TrainConfig(epochs=1)).set_state(tensors, meta)
    for history in (None, pl.concat([train, valid])):
        np.testing.assert_array_equal(again.predict(history, q)["prediction"].to_numpy(),
                                      model.predict(history, q)["prediction"].to_numpy())
