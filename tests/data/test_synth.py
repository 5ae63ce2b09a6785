"""The synthetic generator: exact sizes, invariants, and the structure it promises to plant."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starcast.data import synth
from starcast.data.schema import EVENT_SCHEMA, ITEM_SCHEMA
from starcast.data.synth import SynthConfig, SynthData, generate, write
from starcast.errors import ConfigError, DataError

SMALL = SynthConfig(users=500, items=200, events=10_000, seed=3)


@pytest.fixture(scope="module")
def default_data() -> SynthData:
    return generate(SynthConfig())


@pytest.fixture(scope="module")
def small_data() -> SynthData:
    return generate(SMALL)


def lag1_residual_correlation(events: pl.DataFrame) -> float:
    """Correlation of a user's consecutive ratings after removing item and user means."""
    residual = events.with_columns(r=pl.col("rating") - pl.col("rating").mean().over("item"))
    residual = residual.with_columns(r=pl.col("r") - pl.col("r").mean().over("user"))
    pairs = (
        residual.sort(["user", "ts", "item"])
        .with_columns(prev=pl.col("r").shift(1).over("user"))
        .drop_nulls("prev")
    )
    return float(np.corrcoef(pairs["r"], pairs["prev"])[0, 1])


def assert_invariants(config: SynthConfig, data: SynthData) -> None:
    events, items = data.events, data.items
    assert events.height == config.events
    assert dict(events.schema) == EVENT_SCHEMA
    assert dict(items.schema) == ITEM_SCHEMA
    assert items.height == config.items and items["item"].n_unique() == config.items
    assert events.select(pl.struct("user", "item").is_duplicated().sum()).item() == 0
    assert events["rating"].is_in([1.0, 2.0, 3.0, 4.0, 5.0]).all()
    assert events["ts"].is_sorted()
    assert events["item"].is_in(items["item"].implode()).all()
    end = config.start_ts + config.days * synth.DAY
    assert events.is_empty() or (events["ts"].min() >= config.start_ts and events["ts"].max() < end)


def test_default_config_invariants(default_data: SynthData) -> None:
    assert_invariants(SynthConfig(), default_data)


def test_same_seed_same_frames_other_seed_differs(small_data: SynthData) -> None:
    again = generate(SMALL)
    assert again.events.equals(small_data.events)
    assert again.items.equals(small_data.items)
    other = generate(SynthConfig(users=500, items=200, events=10_000, seed=4))
    assert not other.events.equals(small_data.events)
    assert not other.items.equals(small_data.items)


def test_events_sorted_by_ts_then_user_with_padded_ids(small_data: SynthData) -> None:
    events = small_data.events
    assert events.equals(events.sort(["ts", "user", "item"]))
    assert events["user"].str.contains(r"^u\d{7}$").all()
    assert events["item"].str.contains(r"^i\d{6}$").all()


def test_items_frame_has_features(small_data: SynthData) -> None:
    items = small_data.items
    assert items["item"].is_sorted()
    assert (items["category"].list.len() == 2).all()
    assert (items["price"] > 0).all()
    assert items["title"].str.len_chars().max() < 60
    assert items.null_count().sum_horizontal().item() == 0


def test_rating_marginal_is_j_shaped(default_data: SynthData) -> None:
    shares = default_data.events["rating"].value_counts(normalize=True).sort("rating")
    assert shares["proportion"].to_list() == pytest.approx([0.07, 0.05, 0.09, 0.19, 0.60],
                                                           abs=0.02)


def test_rating_marginal_follows_shares_whatever_the_other_knobs() -> None:
    config = SynthConfig(users=300, items=100, events=5_000, autocorrelation=0.9, drift=0.5,
                         noise_std=0.0, rating_shares=(0.2, 0.2, 0.2, 0.2, 0.2))
    shares = generate(config).events["rating"].value_counts(normalize=True)["proportion"]
    assert shares.to_list() == pytest.approx([0.2] * 5, abs=0.02)


def test_popularity_is_concentrated(default_data: SynthData) -> None:
    per_item = default_data.events.group_by("item").len().sort("len", descending=True)
    top_share = per_item.head(SynthConfig().items // 10)["len"].sum() / default_data.events.height
    assert top_share > 0.3  # a uniform catalogue would give 0.1


def test_events_per_user_heavy_tailed(default_data: SynthData) -> None:
    per_user = default_data.events.group_by("user").len()["len"]
    assert (per_user <= 3).mean() > 0.25
    assert per_user.max() >= 100


def test_consecutive_residuals_autocorrelated(default_data: SynthData) -> None:
    assert lag1_residual_correlation(default_data.events) > 0.1


def test_no_autocorrelation_knob_gives_none() -> None:
    events = generate(SynthConfig(autocorrelation=0.0, drift=0.0)).events
    assert abs(lag1_residual_correlation(events)) < 0.05


def sequence_noise(counts: list[int], **knobs: float) -> tuple[np.ndarray, np.ndarray]:
    config = SynthConfig(**knobs)  # type: ignore[arg-type]
    sizes = np.array(counts)
    user, pos = synth._user_major(sizes)
    return synth._sequence_noise(config, np.random.default_rng(0), sizes, user, pos), pos


def test_sequence_noise_is_ar1_along_each_user() -> None:
    noise, pos = sequence_noise([400] * 50 + [3] * 200, autocorrelation=0.8, drift=0.0,
                                user_bias_std=0.0, short_term_std=2.0)
    step = pos > 0  # consecutive pairs never cross users
    assert np.corrcoef(noise[1:][step[1:]], noise[:-1][step[1:]])[0, 1] == pytest.approx(0.8,
                                                                                      abs=0.03)
    assert noise.std() == pytest.approx(2.0, rel=0.05)
    first = noise[pos == 0]  # users start independent of one another
    assert abs(np.corrcoef(first[1:], first[:-1])[0, 1]) < 0.1


def test_user_bias_is_a_random_walk() -> None:
    noise, pos = sequence_noise([300] * 40, autocorrelation=0.0, drift=1.0,
                                user_bias_std=0.0, short_term_std=0.0)
    step = np.diff(noise)[pos[1:] > 0]
    assert step.std() == pytest.approx(1.0, rel=0.05)
    assert abs(np.corrcoef(step[1:], step[:-1])[0, 1]) < 0.05
    assert np.all(noise[pos == 0] == 0.0)


def test_price_tracks_quality(default_data: SynthData) -> None:
    rated = default_data.events.group_by("item").agg(mean=pl.col("rating").mean(), n=pl.len())
    joined = rated.filter(pl.col("n") >= 20).join(default_data.items, on="item")
    assert np.corrcoef(np.log(joined["price"]), joined["mean"])[0, 1] > 0.2


def test_temporal_split_has_cold_users_and_items(default_data: SynthData) -> None:
    events = default_data.events
    n = events.height
    train, test = events.head(n * 8 // 10), events.slice(n * 9 // 10)
    assert (~test["user"].is_in(train["user"].implode())).sum() > 0
    assert (~test["item"].is_in(train["item"].implode())).sum() > 0


def test_events_follow_item_release_and_user_arrival() -> None:
    config = SynthConfig(users=300, items=100, events=5_000, seed=9)
    catalogue = synth._catalogue(config, synth._streams(config.seed)[0])
    release = np.empty(config.items, np.int64)
    release[catalogue.public_id] = catalogue.release
    events = generate(config).events
    item_number = events["item"].str.slice(1).cast(pl.Int64).to_numpy()
    assert (events["ts"].to_numpy() >= release[item_number]).all()
    # Items released late are only rated late: cold items exist by construction.
    assert release.max() > config.start_ts + config.days * synth.DAY * 0.9


def test_changing_events_keeps_the_catalogue() -> None:
    a = generate(SynthConfig(users=100, items=50, events=500))
    b = generate(SynthConfig(users=100, items=50, events=900))
    assert a.items.equals(b.items)


def test_fewer_events_than_users() -> None:
    config = SynthConfig(users=50, items=5, events=20)
    events = generate(config).events
    assert events.height == 20 and events["user"].n_unique() == 20


def test_saturated_config_fills_every_pair() -> None:
    config = SynthConfig(users=4, items=6, events=24, days=1)
    data = generate(config)
    assert_invariants(config, data)
    assert data.events.group_by("user").len()["len"].to_list() == [6] * 4


def test_earlier_redraw_takes_a_pair_from_a_later_event() -> None:
    user = np.zeros(6, np.int64)
    item = np.array([0, 0, 10, 20, 0, 0])
    owned_key, owner = np.array([10, 20]), np.array([5, 1])
    owned_key, owner, pending = synth._claim(owned_key, owner, np.array([2, 3]), user, item, 100)
    assert owned_key.tolist() == [10, 20]
    assert owner.tolist() == [2, 1]  # event 2 is earlier than 5; event 3 later than 1
    assert pending.tolist() == [3, 5]


def test_repair_frees_a_stuck_user() -> None:
    # Event 1 can only take items 0 or 1, but 0 is taken earlier and 1 later: greedy in time
    # order must move event 2 instead.
    item = np.array([0, 0, 1])
    available = np.array([1, 2, 3])
    synth._repair(np.random.default_rng(0), np.array([3]), np.zeros(3, np.int64), item,
                  available, np.array([0]))
    assert sorted(item.tolist()) == [0, 1, 2]
    assert (item < available).all()


@pytest.mark.parametrize(
    "change",
    [{"events": 11}, {"users": 0}, {"autocorrelation": 1.0}, {"rating_shares": (1.0,)},
     {"drift": -0.1}, {"items": 2.5}],
)
def test_bad_config_raises(change: dict[str, object]) -> None:
    base = {"users": 2, "items": 5, "events": 10}
    with pytest.raises(ConfigError):
        SynthConfig(**(base | change))  # type: ignore[arg-type]


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_write_roundtrip(small_data: SynthData, tmp_path: Path, suffix: str) -> None:
    events_path, items_path = write(small_data, tmp_path / "sub" / f"shop{suffix}")
    assert events_path == tmp_path / "sub" / f"shop{suffix}"
    assert items_path == tmp_path / "sub" / "shop.items.parquet"
    if suffix == ".csv":
        events = pl.read_csv(events_path, schema=EVENT_SCHEMA)
    else:
        events = pl.read_parquet(events_path)
    assert events.equals(small_data.events)
    assert pl.read_parquet(items_path).equals(small_data.items)


def test_write_rejects_other_suffix(small_data: SynthData, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="suffix"):
        write(small_data, tmp_path / "shop.json")
    assert not (tmp_path / "shop.items.parquet").exists()


@st.composite
def small_configs(draw: st.DrawFn) -> SynthConfig:
    users = draw(st.integers(1, 40))
    items = draw(st.integers(1, 40))
    events = draw(st.integers(0, min(users * items, 400)))
    return SynthConfig(
        users=users,
        items=items,
        events=events,
        seed=draw(st.integers(0, 2**32 - 1)),
        days=draw(st.integers(1, 60)),
        autocorrelation=draw(st.floats(-0.9, 0.95)),
    )


@settings(max_examples=60, deadline=None)
@given(small_configs())
def test_invariants_hold_for_random_small_configs(config: SynthConfig) -> None:
    assert_invariants(config, generate(config))
