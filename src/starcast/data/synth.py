"""Synthetic review histories: the default data set for the demo and for scale tests.

The process is written up step by step in docs/synthetic.md. In short: a catalogue of items
with category and brand quality effects and Zipf popularity, released over time; customers
arriving over time with heavy-tailed activity; each event's star rating is a latent score
(item quality + user-item taste + a user bias that drifts along the user's sequence + AR(1)
noise along that sequence + independent noise) cut into stars at the latent's quantiles, so
the star shares match `rating_shares` whatever the other knobs are.

Everything is vectorised numpy; the only Python loops run over positions in a sequence
(at most the per-user cap) or over a fixed number of redraw rounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from starcast.data.schema import EVENT_SCHEMA, ITEM, ITEM_SCHEMA, RATING, TS, USER
from starcast.errors import ConfigError, DataError

DAY = 86_400

# Duplicate (user, item) draws are redrawn from the popularity law a few times, then uniformly
# among released items (which converges much faster for users who rate much of the catalogue),
# and whatever is left is repaired greedily per user. See `_distinct_items`.
_ZIPF_ROUNDS = 8
_UNIFORM_ROUNDS = 32
_SPREAD_ROUNDS = 16

_ADJECTIVES = (
    "Classic", "Premium", "Compact", "Deluxe", "Essential", "Natural", "Pro", "Ultra",
    "Gentle", "Original", "Smart", "Travel", "Vintage", "Eco", "Daily", "Advanced",
)
_NOUNS = (
    "Cream", "Serum", "Headphones", "Album", "Lamp", "Kettle", "Backpack", "Speaker",
    "Shampoo", "Notebook", "Charger", "Blender", "Mug", "Jacket", "Watch", "Candle",
    "Brush", "Vinyl", "Cable", "Pillow",
)


@dataclass(frozen=True)
class SynthConfig:
    """Every knob of the generator; the defaults give a small shop (50k events)."""

    users: int = 2_000
    items: int = 500
    events: int = 50_000
    seed: int = 0
    start_ts: int = 1_420_070_400  # 2015-01-01
    days: int = 1_500  # time span
    categories: int = 20
    brands: int = 100
    zipf_exponent: float = 1.0  # item popularity
    rating_shares: tuple[float, ...] = (0.07, 0.05, 0.09, 0.19, 0.60)  # 1..5 stars
    autocorrelation: float = 0.5  # AR(1) coefficient of a user's consecutive rating noise
    drift: float = 0.05  # per-event std of the user's bias random walk
    # catalogue
    initial_item_share: float = 0.2  # released at start_ts; the rest uniformly over the span
    category_std: float = 0.3
    brand_std: float = 0.3
    item_std: float = 0.4
    price_quality: float = 1.0  # slope of log price on (brand + item) quality
    price_noise: float = 0.3  # std of log price around that
    # customers
    user_growth: float = 1.0  # arrival density grows like t**user_growth
    activity_sigma: float = 2.0  # lognormal sigma of a user's activity weight
    max_events_per_user: int = 2_000
    max_catalogue_share: float = 0.5  # soft cap on the share of the catalogue one user rates
    user_lifetime_days: float = 365.0  # mean of the exponential active period
    gap_shape: float = 0.5  # gamma shape of inter-event gaps; < 1 means bursty
    # rating
    user_bias_std: float = 0.5  # std of a user's starting bias
    taste_rank: int = 4
    taste_std: float = 0.3  # std of the user-item taste (dot product) term
    short_term_std: float = 0.7  # stationary std of the AR(1) noise
    noise_std: float = 0.4  # independent per-event noise

    def __post_init__(self) -> None:
        _validate(self)


@dataclass
class SynthData:
    """Events (user, item, rating, ts; sorted by ts, user, item) and one row per item."""

    events: pl.DataFrame
    items: pl.DataFrame


@dataclass(frozen=True)
class _Catalogue:
    """Item attributes indexed by release rank (internal item i is the i-th released)."""

    release: np.ndarray  # int64 unix seconds, ascending
    cum_weight: np.ndarray  # cumulative popularity in release order
    quality: np.ndarray
    factors: np.ndarray  # items x taste_rank
    category: np.ndarray
    brand: np.ndarray
    price: np.ndarray
    adjective: np.ndarray
    model: np.ndarray
    public_id: np.ndarray  # the number in the item id string


def generate(config: SynthConfig) -> SynthData:
    """Draw a synthetic shop; the same config always gives identical frames."""
    item_rng, user_rng, time_rng, choice_rng, rating_rng = _streams(config.seed)
    catalogue = _catalogue(config, item_rng)
    counts = _events_per_user(config, user_rng)
    user, pos = _user_major(counts)
    ts = _event_times(config, time_rng, counts, user, pos, catalogue.release)
    item = _distinct_items(choice_rng, counts, user, ts, catalogue)
    rating = _ratings(config, rating_rng, counts, user, pos, item, catalogue)
    user_id = user_rng.permutation(config.users)
    return SynthData(
        events=_events_frame(config, user_id[user], catalogue.public_id[item], rating, ts),
        items=_items_frame(config, catalogue),
    )


def _streams(seed: int) -> list[np.random.Generator]:
    # Independent streams per stage, so e.g. changing `events` leaves the catalogue unchanged.
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)]


def write(data: SynthData, out: str | Path) -> tuple[Path, Path]:
    """Write events to `out` (.parquet or .csv) and items beside it as `<stem>.items.parquet`."""
    path = Path(out)
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise DataError(
            f"unsupported suffix {path.suffix!r}: use .parquet or .csv", file=str(path)
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        data.events.write_csv(path)
    else:
        data.events.write_parquet(path)
    items_path = path.with_name(f"{path.stem}.items.parquet")
    data.items.write_parquet(items_path)
    return path, items_path


# --------------------------------------------------------------------------- validation


def _validate(cfg: SynthConfig) -> None:
    ints = ("users", "items", "events", "seed", "start_ts", "days", "categories", "brands",
            "max_events_per_user", "taste_rank")
    for name in ints:
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"SynthConfig.{name} must be an int, got {value!r}")
    checks = (
        (cfg.users >= 1, "users must be >= 1"),
        (cfg.items >= 1, "items must be >= 1"),
        (cfg.events >= 0, "events must be >= 0"),
        (cfg.seed >= 0, "seed must be >= 0"),
        (cfg.days >= 1, "days must be >= 1"),
        (cfg.categories >= 1 and cfg.brands >= 1, "categories and brands must be >= 1"),
        (cfg.max_events_per_user >= 1, "max_events_per_user must be >= 1"),
        (cfg.taste_rank >= 1, "taste_rank must be >= 1"),
        (-1.0 < cfg.autocorrelation < 1.0, "autocorrelation must be in (-1, 1)"),
        (0.0 < cfg.initial_item_share <= 1.0, "initial_item_share must be in (0, 1]"),
        (0.0 < cfg.max_catalogue_share <= 1.0, "max_catalogue_share must be in (0, 1]"),
        (cfg.user_lifetime_days > 0 and cfg.gap_shape > 0,
         "user_lifetime_days and gap_shape must be > 0"),
        (cfg.user_growth > -1.0, "user_growth must be > -1"),
    )
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"SynthConfig: {message}")
    non_negative = ("zipf_exponent", "drift", "category_std", "brand_std", "item_std",
                    "price_noise", "activity_sigma", "user_bias_std", "taste_std",
                    "short_term_std", "noise_std")
    for name in non_negative:
        value = getattr(cfg, name)
        if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise ConfigError(f"SynthConfig.{name} must be a finite number >= 0, got {value!r}")
    shares = cfg.rating_shares
    if len(shares) < 2 or any(not (s >= 0) for s in shares) or not sum(shares) > 0:
        raise ConfigError("SynthConfig.rating_shares needs >= 2 non-negative shares, sum > 0")
    capacity = cfg.users * min(cfg.items, cfg.max_events_per_user)
    if cfg.events > capacity:
        raise ConfigError(
            f"SynthConfig: {cfg.events} events cannot be distinct (user, item) pairs with "
            f"{cfg.users} users x min(items, max_events_per_user) = {capacity}"
        )


def _per_user_cap(cfg: SynthConfig) -> int:
    # Nobody rates the whole catalogue unless the config leaves no other way to fit the events.
    hard = min(cfg.items, cfg.max_events_per_user)
    soft = max(1, int(cfg.max_catalogue_share * cfg.items), math.ceil(cfg.events / cfg.users))
    return min(hard, soft)


# --------------------------------------------------------------------------- catalogue


def _catalogue(cfg: SynthConfig, rng: np.random.Generator) -> _Catalogue:
    n = cfg.items
    n_initial = max(1, round(cfg.initial_item_share * n))
    later = np.sort(rng.integers(0, cfg.days * DAY, n - n_initial))
    release = cfg.start_ts + np.concatenate([np.zeros(n_initial, np.int64), later])
    # Popularity rank is independent of release order, so late items can become hits.
    rank = rng.permutation(n)
    cum_weight = np.cumsum((rank + 1.0) ** -cfg.zipf_exponent)
    category = rng.choice(cfg.categories, n, p=rng.dirichlet(np.ones(cfg.categories)))
    brand_weight = (np.arange(cfg.brands) + 1.0) ** -0.8  # a few big brands, a long tail
    brand = rng.choice(cfg.brands, n, p=brand_weight / brand_weight.sum())
    category_effect = rng.normal(0.0, cfg.category_std, cfg.categories)
    brand_effect = rng.normal(0.0, cfg.brand_std, cfg.brands)
    own = rng.normal(0.0, cfg.item_std, n)
    quality = category_effect[category] + brand_effect[brand] + own
    # Better brands and items cost more, around a per-category price level.
    category_price = rng.normal(math.log(25.0), 0.8, cfg.categories)
    log_price = (category_price[category] + cfg.price_quality * (brand_effect[brand] + own)
                 + rng.normal(0.0, cfg.price_noise, n))
    price = np.maximum(np.round(np.exp(log_price), 2), 0.01)
    # Taste factors cluster by category, so a user's taste is partly a category preference.
    category_factors = rng.standard_normal((cfg.categories, cfg.taste_rank))
    factors = (category_factors[category] + rng.standard_normal((n, cfg.taste_rank))) / math.sqrt(2)
    return _Catalogue(
        release=release,
        cum_weight=cum_weight,
        quality=quality,
        factors=factors,
        category=category,
        brand=brand,
        price=price,
        adjective=rng.integers(0, len(_ADJECTIVES), n),
        model=rng.integers(100, 10_000, n),
        public_id=rng.permutation(n),
    )


def _items_frame(cfg: SynthConfig, cat: _Catalogue) -> pl.DataFrame:
    departments = max(1, math.ceil(cfg.categories / 5))
    width = max(2, len(str(cfg.categories - 1)))
    category_names = np.array([f"Category {c:0{width}d}" for c in range(cfg.categories)])
    department_names = np.array([f"Department {c % departments}" for c in range(cfg.categories)])
    brand_names = np.array([f"Brand {b:03d}" for b in range(cfg.brands)])
    frame = pl.DataFrame({
        ITEM: _names("i", cfg.items, 6).gather(cat.public_id),
        "department": department_names[cat.category],
        "category_name": category_names[cat.category],
        "brand": brand_names[cat.brand],
        "price": cat.price,
        "adjective": np.array(_ADJECTIVES)[cat.adjective],
        "noun": np.array(_NOUNS)[cat.category % len(_NOUNS)],
        "model": cat.model,
    })
    return frame.select(
        pl.col(ITEM),
        pl.concat_list("department", "category_name").alias("category"),
        pl.col("brand"),
        pl.col("price"),
        pl.concat_str("brand", "adjective", "noun", pl.col("model").cast(pl.Utf8),
                      separator=" ").alias("title"),
    ).cast(ITEM_SCHEMA).sort(ITEM)


# --------------------------------------------------------------------------- customers and time


def _events_per_user(cfg: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """Events per user, sorted descending (internal user u is the u-th most active)."""
    log_weight = cfg.activity_sigma * rng.standard_normal(cfg.users)
    counts = np.zeros(cfg.users, np.int64)
    if cfg.events < cfg.users:
        # Gumbel top-k: weighted sampling of distinct users, one event each.
        keys = log_weight + rng.gumbel(size=cfg.users)
        if cfg.events:
            counts[np.argpartition(-keys, cfg.events - 1)[: cfg.events]] = 1
    else:
        extra_cap = _per_user_cap(cfg) - 1
        counts = 1 + _spread(rng, cfg.events - cfg.users, np.exp(log_weight), extra_cap)
    return np.sort(counts)[::-1].copy()


def _spread(rng: np.random.Generator, total: int, weight: np.ndarray, cap: int) -> np.ndarray:
    """`total` units over users in proportion to weight, at most `cap` each; exact total."""
    counts = np.zeros(weight.size, np.int64)
    for _ in range(_SPREAD_ROUNDS):
        remaining = total - int(counts.sum())
        if remaining == 0:
            return counts
        room = cap - counts
        open_weight = np.where(room > 0, weight, 0.0)
        # The small shrink keeps float rounding from pushing sum(p[:-1]) past 1, which numpy
        # rejects; the last user absorbs the (negligible) leftover mass.
        p = open_weight / (open_weight.sum() * (1.0 + 1e-9))
        counts += np.minimum(rng.multinomial(remaining, p), room)  # overflow: next round
    # Nearly saturated configs: fill the remaining room, most active users first.
    remaining = total - int(counts.sum())
    order = np.argsort(-weight, kind="stable")
    room = (cap - counts)[order]
    before = np.cumsum(room) - room
    counts[order] += np.clip(remaining - before, 0, room)
    return counts


def _user_major(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per event (grouped by user, in sequence order): internal user and position."""
    user = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    start = np.cumsum(counts) - counts
    pos = np.arange(user.size, dtype=np.int64) - start[user]
    return user, pos


def _event_times(
    cfg: SynthConfig,
    rng: np.random.Generator,
    counts: np.ndarray,
    user: np.ndarray,
    pos: np.ndarray,
    release: np.ndarray,
) -> np.ndarray:
    """Unix seconds of each event, ascending within each user, first event at arrival."""
    span = cfg.days * DAY
    arrival = span * rng.random(counts.size) ** (1.0 / (1.0 + cfg.user_growth))
    lifetime = rng.exponential(cfg.user_lifetime_days * DAY, counts.size)
    window = np.clip(np.minimum(lifetime, span - 1 - arrival), 0.0, None)
    # A Dirichlet split of the active window: gamma gaps, normalised per user (the user's
    # first gap is the idle tail after its last event, so the window end is not an event).
    cum = np.concatenate(([0.0], np.cumsum(rng.gamma(cfg.gap_shape, size=user.size))))
    first = (np.cumsum(counts) - counts)[user]
    total = np.maximum(cum[first + counts[user]] - cum[first], 1e-300)
    fraction = (cum[1:] - cum[first + 1]) / total
    ts = cfg.start_ts + np.floor(arrival[user] + window[user] * fraction).astype(np.int64)
    # The k-th event of a user needs k released items to choose distinct ones from: nudge it
    # to the k-th release if it came earlier. Both sequences ascend, so order is kept.
    return np.maximum(ts, release[pos])


# --------------------------------------------------------------------------- item choice


def _distinct_items(
    rng: np.random.Generator, counts: np.ndarray, user: np.ndarray, ts: np.ndarray,
    cat: _Catalogue,
) -> np.ndarray:
    """An item per event, by popularity among items released by then; no (user, item) twice.

    Each (user, item) pair is owned by its earliest event; the other events holding it are
    redrawn. A redraw that lands on a pair owned by a later event takes the pair over and
    the later event is redrawn instead, so a user can never get stuck (see `_repair`).
    Only the redrawn events are checked each round, against a sorted table of owned pairs.
    """
    n_items = cat.release.size
    available = np.searchsorted(cat.release, ts, side="right")
    item = _draw(rng, available, cat.cum_weight, uniform=False)
    owned_key, owner, pending = _owners(user * n_items + item, np.arange(user.size))
    for round_ in range(_ZIPF_ROUNDS + _UNIFORM_ROUNDS):
        if pending.size == 0:
            return item
        item[pending] = _draw(rng, available[pending], cat.cum_weight, round_ >= _ZIPF_ROUNDS)
        owned_key, owner, pending = _claim(owned_key, owner, pending, user, item, n_items)
    _repair(rng, counts, user, item, available, np.unique(user[pending]))
    return item


def _draw(
    rng: np.random.Generator, available: np.ndarray, cum_weight: np.ndarray, uniform: bool
) -> np.ndarray:
    if uniform:
        return np.minimum((rng.random(available.size) * available).astype(np.int64),
                          available - 1)
    target = rng.random(available.size) * cum_weight[available - 1]
    return np.minimum(np.searchsorted(cum_weight, target, side="right"), available - 1)


def _owners(key: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct keys (sorted), the earliest event holding each, and all other events.

    `event` must ascend, so that the first position of a key is its earliest event.
    """
    if key.size == 0:
        return key, event, event
    order = np.argsort(key)  # unstable is fine: the earliest is taken by min below
    sorted_key = key[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_key[1:] != sorted_key[:-1])))
    first = np.minimum.reduceat(order, starts)
    rest = np.ones(key.size, bool)
    rest[first] = False
    return sorted_key[starts], event[first], event[rest]


def _claim(
    owned_key: np.ndarray,
    owner: np.ndarray,
    pending: np.ndarray,
    user: np.ndarray,
    item: np.ndarray,
    n_items: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Settle redrawn events against the owned pairs; return the table and who redraws next."""
    key, claimant, losers = _owners(user[pending] * n_items + item[pending], pending)
    slot = np.searchsorted(owned_key, key)
    taken = slot < owned_key.size
    taken[taken] = owned_key[slot[taken]] == key[taken]
    held, rival = slot[taken], claimant[taken]
    wins = rival < owner[held]  # an earlier event takes the pair over
    displaced = owner[held[wins]]
    owner[held[wins]] = rival[wins]
    free = ~taken  # new pairs; keys are sorted and distinct, so one insert keeps the order
    owned_key = np.insert(owned_key, slot[free], key[free])
    owner = np.insert(owner, slot[free], claimant[free])
    # Sorted, so position order is event (time) order again for the next `_owners`.
    return owned_key, owner, np.sort(np.concatenate([losers, rival[~wins], displaced]))


def _repair(
    rng: np.random.Generator,
    counts: np.ndarray,
    user: np.ndarray,
    item: np.ndarray,
    available: np.ndarray,
    stuck: np.ndarray,
) -> None:
    # Rare (tiny or saturated configs): the k-th event of a user always has >= k released
    # items, so keeping first uses and replacing repeats with an unused one always works.
    start = np.cumsum(counts) - counts
    for u in stuck:
        used: set[int] = set()
        for e in range(start[u], start[u] + counts[u]):
            if int(item[e]) in used:
                free = np.setdiff1d(np.arange(available[e]), np.fromiter(used, np.int64))
                item[e] = free[rng.integers(free.size)]
            used.add(int(item[e]))


# --------------------------------------------------------------------------- ratings


def _ratings(
    cfg: SynthConfig,
    rng: np.random.Generator,
    counts: np.ndarray,
    user: np.ndarray,
    pos: np.ndarray,
    item: np.ndarray,
    cat: _Catalogue,
) -> np.ndarray:
    user_factors = rng.standard_normal((cfg.taste_rank, counts.size))
    item_factors = np.ascontiguousarray(cat.factors.T)
    score = cat.quality[item]
    scale = cfg.taste_std / math.sqrt(cfg.taste_rank)
    for k in range(cfg.taste_rank):  # one factor at a time keeps memory at one event array
        score += scale * user_factors[k][user] * item_factors[k][item]
    score += cfg.noise_std * rng.standard_normal(user.size)
    score += _sequence_noise(cfg, rng, counts, user, pos)
    return _stars(score, cfg.rating_shares)


def _sequence_noise(
    cfg: SynthConfig,
    rng: np.random.Generator,
    counts: np.ndarray,
    user: np.ndarray,
    pos: np.ndarray,
) -> np.ndarray:
    """User bias random walk + AR(1) noise, each along the user's own event sequence.

    Laid out position-major: block k holds the k-th event of every user with more than k
    events. Users are sorted by count descending, so block k is a prefix-aligned subset of
    block k - 1 and one slice operation advances every user's recursion by one step. The
    loop runs over positions (at most the per-user cap), never over users or events.
    """
    if user.size == 0:
        return np.zeros(0)
    width = np.searchsorted(-counts, -np.arange(counts[0]), side="left")
    offset = np.concatenate(([0], np.cumsum(width)))
    phi = cfg.autocorrelation
    first = width[0]
    ar = rng.standard_normal(user.size)
    ar[:first] *= cfg.short_term_std  # stationary start
    ar[first:] *= cfg.short_term_std * math.sqrt(1.0 - phi * phi)
    walk = rng.standard_normal(user.size)
    walk[:first] *= cfg.user_bias_std  # the user's starting bias
    walk[first:] *= cfg.drift
    for k in range(1, width.size):
        prev, here, w = offset[k - 1], offset[k], width[k]
        ar[here:here + w] += phi * ar[prev:prev + w]
        walk[here:here + w] += walk[prev:prev + w]
    walk += ar
    return walk[offset[pos] + user]


def _stars(score: np.ndarray, shares: tuple[float, ...]) -> np.ndarray:
    """Cut the latent at its own quantiles so star shares match `shares` exactly (up to ties)."""
    if score.size == 0:
        return np.zeros(0)
    p = np.asarray(shares, float)
    cuts = np.quantile(score, np.cumsum(p / p.sum())[:-1])
    return 1.0 + np.searchsorted(cuts, score, side="left")


def _events_frame(
    cfg: SynthConfig, user: np.ndarray, item: np.ndarray, rating: np.ndarray, ts: np.ndarray
) -> pl.DataFrame:
    order = _time_order(cfg, user, item, ts)
    return pl.DataFrame({
        USER: _names("u", cfg.users, 7).gather(user[order]),
        ITEM: _names("i", cfg.items, 6).gather(item[order]),
        RATING: rating[order],
        TS: ts[order],
    }).cast(EVENT_SCHEMA)


def _time_order(cfg: SynthConfig, user: np.ndarray, item: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Argsort by (ts, user, item): one int64 key when it fits, else a multi-key sort."""
    if cfg.days * DAY * cfg.users * cfg.items < 2**63:
        # (user, item) pairs are distinct, so the key is unique and any sort is deterministic.
        key = ((ts - cfg.start_ts) * cfg.users + user) * cfg.items + item
        return np.argsort(key)
    return np.lexsort((item, user, ts))


def _names(prefix: str, count: int, min_width: int) -> pl.Series:
    # Format each id once and gather: far cheaper than formatting per event. One width for
    # all, so string order equals numeric order.
    width = max(min_width, len(str(count - 1)))
    digits = pl.int_range(count, eager=True).cast(pl.Utf8).str.zfill(width)
    return prefix + digits
