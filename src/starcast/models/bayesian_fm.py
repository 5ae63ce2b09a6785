"""The Bayesian factorization machine (Gibbs sampling by myFM): a peer, and the lstm's base.

The setting of Rendle, Zhang & Koren (2019), "On the Difficulty of Evaluating Baselines": the
strongest classic baseline for explicit ratings. Features, each block with its own hierarchical
prior (five groups):

* the day of the event, one-hot (a day unseen in the fitting data takes the latest known day
  before it; one before all of them, the first);
* the user, one-hot, and the items the user rated in the fitting data (each 1/sqrt(n));
* the item, one-hot, and the users who rated it in the fitting data (each 1/sqrt(n)).

Rank 32, 300 Gibbs iterations of which the last 250 are averaged. Regression predicts the
posterior mean; the ordered probit predicts star probabilities and their expected star. The
user and item blocks are myFM relation blocks, so a popular item's raters are stored once.

`FactorBase` is the regression FM read as a function of (user, item, day) alone, its implicit
features frozen at fitting time: the posterior mean is a constant per user, item and day plus
the mean over draws of the three blocks' pairwise inner products, each pair a truncated SVD
(`cross_rank` columns). It needs no state at predict time, so serving it is exact. Its draws
come from `fm.chains` independent chains (6 of 50 iterations, the last 25 of each averaged, by
default): the peers' single chain of 300 stays near one mode of the posterior, so that its seed
alone moves test RMSE by 0.004 to 0.03, and averaging chains at the same cost removes most of
that (benchmarks/fm_chains.py).
"""

from __future__ import annotations

import contextlib
import functools
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sps
from scipy.special import ndtr

from starcast.config import FMConfig
from starcast.data.schema import ITEM, RATING, TS, USER, RatingScale

DAY = 86_400
RANK, ITERATIONS, KEPT = 32, 300, 250  # the peers: the setting, one chain
CHAIN_SEEDS = 1000  # chain c of a FactorBase fitted with seed s samples with seed s + 1000 c
SPREAD_ROWS = 5000  # fitting rows the probit's spread is averaged over (scored every draw)


@dataclass
class FMPrediction:
    mean: np.ndarray  # [Q] clipped to the scale
    probabilities: np.ndarray | None  # [Q, K] for the ordered probit
    predict_seconds: float = 0.0


class _Design:
    """Feature blocks of the fitting data, for its own rows and for queries."""

    def __init__(self, known: pl.DataFrame, with_day: bool = True) -> None:
        self.users = {u: k for k, u in enumerate(known[USER].unique(maintain_order=True))}
        self.items = {i: k for k, i in enumerate(known[ITEM].unique(maintain_order=True))}
        nu, ni = len(self.users), len(self.items)
        u, i = self._index(known[USER], self.users), self._index(known[ITEM], self.items)
        rated = sps.csr_matrix((np.ones(len(u)), (u, i)), shape=(nu, ni))
        self.days = np.unique(known[TS].to_numpy() // DAY) if with_day else np.zeros(0, int)
        # one extra empty row per block: a user or item the fitting data does not know
        self.user_block = _block(sps.identity(nu, format="csr"), _implicit(rated))
        self.item_block = _block(sps.identity(ni, format="csr"), _implicit(rated.T.tocsr()))
        sizes = [n for n in (len(self.days), nu, ni, ni, nu) if n]  # day, user, rated, item, raters
        self.grouping = [g for g, n in enumerate(sizes) for _ in range(n)]

    @staticmethod
    def _index(ids: Sequence[str] | pl.Series, table: dict[str, int]) -> np.ndarray:
        unknown = len(table)
        return np.fromiter((table.get(x, unknown) for x in ids), np.int64, len(ids))

    def rows(self, events: pl.DataFrame) -> tuple[sps.csr_matrix, list]:
        relation = _myfm().RelationBlock
        n = events.height
        if len(self.days):
            day = np.searchsorted(self.days, events[TS].to_numpy() // DAY, side="right") - 1
            X = sps.csr_matrix((np.ones(n), (np.arange(n), np.maximum(day, 0))),
                               shape=(n, len(self.days)))
        else:
            X = sps.csr_matrix((n, 0))
        relations = [
            relation(self._index(events[USER], self.users), self.user_block),
            relation(self._index(events[ITEM], self.items), self.item_block),
        ]
        return X, relations


BLOCKS = ("day", "user", "item")
PAIRS = (("user", "item"), ("user", "day"), ("item", "day"))


class FactorBase:
    """The posterior mean of the regression FM at (user, item, day), its features frozen at
    fitting time (the items a user rated and the users who rated an item, then):

        base = w0 + const[user] + const[item] + const[day]
               + sum over block pairs (a, b) of <vec_ab[a], vec_ba[b]>

    Each block's constant holds its linear part and the interactions among its own features;
    each pair's mean inner product over the draws is a truncated SVD. A user or item the
    fitting data did not know contributes nothing of its own; a day takes the latest known.
    """

    def __init__(self, users: list[str], items: list[str], days: np.ndarray, w0: float,
                 arrays: dict[str, np.ndarray], low: float = 0.0) -> None:
        self.users = {u: k for k, u in enumerate(users)}
        self.items = {i: k for k, i in enumerate(items)}
        self.days, self.w0, self.arrays = days, w0, arrays
        self.low = low  # the probit's lowest star (its expected star counts up from it)

    @classmethod
    def fit(cls, known: pl.DataFrame, config: FMConfig, seed: int) -> FactorBase:
        """The regression FM: `config.chains` chains of `config.iterations`."""
        design = _Design(known)
        draws = _Draws(design, config, config.chains, config.iterations, config.burn_in)
        ratings = known[RATING].to_numpy().astype(np.float64)
        return cls._sampled(known, design, design.rows(known), draws, config, seed,
                            _myfm().MyFMRegressor, ratings)

    @classmethod
    def fit_probit(cls, known: pl.DataFrame, config: FMConfig, seed: int,
                   scale: RatingScale) -> FactorBase:
        """The ordered-probit FM: one chain of `config.probit_iterations`. Its cutpoints and
        latent scale settle slowly: six chains of 50 predicted test worse than one of 300 on
        All_Beauty loo (0.42 against 0.36) and Digital_Music loo (0.706, 0.703), better only on
        Digital_Music time (0.781, 0.787); benchmarks/results/fm-mix.log."""
        design = _Design(known)
        draws = _ProbitDraws(design, config, *design.rows(known[spread_rows(known.height, seed)]))
        stars = np.rint(known[RATING].to_numpy() - scale.low).astype(np.int64)
        return cls._sampled(known, design, design.rows(known), draws, config, seed,
                            _myfm().MyFMOrderedProbit, stars, scale.low)

    @classmethod
    def _sampled(cls, known: pl.DataFrame, design: _Design, rows: tuple, draws: _Draws,
                 config: FMConfig, seed: int, kind: type, target: np.ndarray,
                 low: float = 0.0) -> FactorBase:
        X, relations = rows
        for chain in range(draws.chains):
            with _quiet():
                kind(rank=config.rank, random_seed=seed + CHAIN_SEEDS * chain).fit(
                    X, target, X_rel=relations, n_iter=draws.iterations, n_kept_samples=1,
                    grouping=design.grouping, callback=draws,
                )
        arrays = {f"const_{b}": draws.const[b] / draws.n for b in BLOCKS}
        arrays["user_events"] = np.bincount(
            _Design._index(known[USER], design.users), minlength=len(design.users)
        ).astype(np.float64)
        for a, b in PAIRS:
            arrays[f"vec_{a}_{b}"], arrays[f"vec_{b}_{a}"] = _product_factors(
                np.concatenate(draws.vectors[a], axis=1), np.concatenate(draws.vectors[b], axis=1),
                len(draws.vectors[a]), config.cross_rank, seed)
        arrays |= draws.link()
        return cls(list(design.users), list(design.items), design.days, draws.w0 / draws.n,
                   arrays, low)

    def user_events(self, users: Sequence[str] | pl.Series) -> np.ndarray:
        """How many events of each user the FM was fitted on (0: an unknown user)."""
        counts = np.r_[self.arrays["user_events"], 0.0]
        return counts[_Design._index(users, self.users)]

    def predict(self, users: Sequence[str] | pl.Series, items: Sequence[str] | pl.Series,
                ts: np.ndarray) -> np.ndarray:
        """The posterior mean rating (regression), or the probit's expected star."""
        latent = self.latent(users, items, ts)
        if "cutpoints" not in self.arrays:
            return latent
        # P(star > k) = Phi((latent - cutpoint k) / spread k), summed over k: the expected star
        steps = (latent[:, None] - self.arrays["cutpoints"]) / self.arrays["spread"]
        return self.low + ndtr(steps).sum(axis=1)

    def latent(self, users: Sequence[str] | pl.Series, items: Sequence[str] | pl.Series,
               ts: np.ndarray) -> np.ndarray:
        """The mean over draws of the FM's score (for the probit, its latent variable)."""
        day = np.searchsorted(self.days, ts // DAY, side="right") - 1
        rows = {"user": _Design._index(users, self.users),
                "item": _Design._index(items, self.items),
                "day": np.maximum(day, 0)}
        sizes = {"user": len(self.users), "item": len(self.items), "day": len(self.days)}
        known = {b: rows[b] < sizes[b] for b in BLOCKS}
        rows = {b: np.minimum(rows[b], sizes[b] - 1) for b in BLOCKS}
        out = np.full(len(ts), self.w0)
        for b in BLOCKS:
            out += np.where(known[b], self.arrays[f"const_{b}"][rows[b]], 0.0)
        for a, b in PAIRS:
            cross = np.einsum("qr,qr->q", self.arrays[f"vec_{a}_{b}"][rows[a]].astype(np.float64),
                              self.arrays[f"vec_{b}_{a}"][rows[b]].astype(np.float64))
            out += np.where(known[a] & known[b], cross, 0.0)
        return out

    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        return self.arrays | {"days": self.days}, {
            "w0": self.w0, "low": self.low, "users": list(self.users), "items": list(self.items)}

    @classmethod
    def restore(cls, arrays: dict[str, np.ndarray], meta: dict) -> FactorBase:
        rest = {k: v for k, v in arrays.items() if k != "days"}
        return cls(meta["users"], meta["items"], arrays["days"], float(meta["w0"]), rest,
                   float(meta["low"]))


class _Draws:
    """myFM's per-iteration callback: after burn-in, each draw's per-row constants of every
    block are summed, and its block vectors kept (every `thin`-th draw, within a memory
    budget) for the mean of their inner products."""

    def __init__(self, design: _Design, config: FMConfig, chains: int, iterations: int,
                 burn_in: int) -> None:
        self.chains, self.iterations = chains, iterations
        nd, nu, ni = len(design.days), len(design.users), len(design.items)
        # each block: (its rows over its own columns, where those columns start and end)
        self.blocks = {"day": (sps.identity(nd, format="csr"), 0, nd),
                       "user": (design.user_block[:nu], nd, nd + nu + ni),
                       "item": (design.item_block[:ni], nd + nu + ni, nd + 2 * (nu + ni))}
        self.burn_in = min(burn_in, iterations - 1)
        budget = max(1, int(config.memory_mb * 2**20 / (4 * (nd + nu + ni) * config.rank)))
        self.thin = max(1, -(-chains * (iterations - self.burn_in) // budget))
        self.n, self.w0 = 0, 0.0
        self.const = dict.fromkeys(BLOCKS, 0.0)
        self.vectors = {b: [] for b in BLOCKS}

    def __call__(self, i: int, fm, hyper, history) -> tuple[bool, str | None]:
        if i < self.burn_in:
            return False, None
        w, V = np.asarray(fm.w), np.asarray(fm.V)
        keep = (i - self.burn_in) % self.thin == 0
        self.n, self.w0 = self.n + 1, self.w0 + fm.w0
        for name, (block, start, stop) in self.blocks.items():
            vectors, const = _block_sample(block, w[start:stop], V[start:stop])
            self.const[name] = self.const[name] + const
            if keep:
                self.vectors[name].append(vectors.astype(np.float32))
        return False, None

    def link(self) -> dict[str, np.ndarray]:
        """Arrays of the likelihood's link beyond the FM's tables (the regression has none)."""
        return {}


def spread_rows(n: int, seed: int) -> np.ndarray:
    """Which of n fitting rows the probit's spread is averaged over: all, up to SPREAD_ROWS,
    else that many drawn at random. Scoring every row on every draw cost a sixth of the fit
    on 80k rows, and the average of a per-row variance needs no more than a sample."""
    if n <= SPREAD_ROWS:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, SPREAD_ROWS, replace=False))


class _ProbitDraws(_Draws):
    """The probit's draws: besides the FM's, each draw's cutpoints, and the score of each of
    the rows given (a sample of the fitting rows), for the spread of (score - cutpoint)
    across draws."""

    def __init__(self, design: _Design, config: FMConfig, X: sps.csr_matrix,
                 relations: list) -> None:
        super().__init__(design, config, 1, config.probit_iterations, config.probit_burn_in)
        self.X, self.relations = X, relations
        self.cut = self.cut2 = 0.0  # sums over draws, per cutpoint
        self.score = self.score2 = 0.0  # sums over draws, per fitting row
        self.cross = 0.0  # sum over draws of score x cutpoint, per row and cutpoint

    def __call__(self, i: int, fm, hyper, history) -> tuple[bool, str | None]:
        out = super().__call__(i, fm, hyper, history)
        if i >= self.burn_in:
            cut = np.asarray(fm.cutpoints[0], dtype=np.float64)
            score = np.asarray(fm.predict_score(self.X, self.relations), dtype=np.float64)
            self.cut, self.cut2 = self.cut + cut, self.cut2 + cut**2
            self.score, self.score2 = self.score + score, self.score2 + score**2
            self.cross = self.cross + score[:, None] * cut
        return out

    def link(self) -> dict[str, np.ndarray]:
        """The mean cutpoints, and per cutpoint sqrt(1 + s^2), s^2 the variance across draws
        of (score - cutpoint) averaged over the rows (`spread_rows` of the fitting rows):
        averaging Phi over normal draws of its argument is Phi of the mean argument over
        sqrt(1 + variance), and the expected star then needs no per-draw state. (The chain's
        latent scale drifts, so s^2 is far from 0; without it the expected star is
        overconfident and its RMSE 0.01-0.03 worse.)"""
        n = self.n
        cut, score = self.cut / n, self.score / n
        spread = (self.score2 / n - score**2)[:, None] + (self.cut2 / n - cut**2) \
            - 2 * (self.cross / n - score[:, None] * cut)
        return {"cutpoints": cut, "spread": np.sqrt(1 + np.maximum(spread, 0).mean(axis=0))}


def _block_sample(block: sps.csr_matrix, w: np.ndarray, V: np.ndarray):
    """(vectors, constants) of one draw for each row of a block: its features' factor sum,
    and its linear part plus the interactions among its own features."""
    vectors = block @ V
    own = 0.5 * ((vectors**2).sum(axis=1) - block.power(2) @ (V**2).sum(axis=1))
    return vectors, block @ w + own


def _product_factors(
    p: np.ndarray, q: np.ndarray, draws: int, rank: int, seed: int, power: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """(A [users, r], B [items, r]) with A B^T ~ p q^T / draws, the mean over draws of the
    inner products, without forming the users x items matrix: a randomised SVD (Halko,
    Martinsson & Tropp 2011) through products with p and q only."""
    p, q = p.astype(np.float64) / draws, q.astype(np.float64)
    r = min(rank, p.shape[0], q.shape[0])
    sketch = p @ (q.T @ np.random.default_rng(seed).standard_normal((q.shape[0], r + 10)))
    for _ in range(power):  # sharpen the sketch toward the leading singular directions
        basis = np.linalg.qr(sketch)[0]
        sketch = p @ (q.T @ (q @ (p.T @ basis)))
    basis = np.linalg.qr(sketch)[0]
    u, singular, vt = np.linalg.svd((basis.T @ p) @ q.T, full_matrices=False)
    return (basis @ (u[:, :r] * singular[:r])).astype(np.float32), vt[:r].T.astype(np.float32)


def _implicit(rated: sps.csr_matrix) -> sps.csr_matrix:
    """Rows scaled to 1/sqrt(n) per entry (a pair counted once)."""
    rated = rated.copy()
    rated.data[:] = 1.0
    return sps.diags(1 / np.sqrt(np.maximum(rated.getnnz(axis=1), 1))) @ rated


def _block(one_hot: sps.csr_matrix, implicit: sps.csr_matrix) -> sps.csr_matrix:
    rows = sps.hstack([one_hot, implicit], format="csr")
    return sps.vstack([rows, sps.csr_matrix((1, rows.shape[1]))], format="csr")


def fit_predict(
    known: pl.DataFrame, queries: pl.DataFrame, scale: RatingScale, probit: bool, seed: int = 42,
    schedule: tuple[int, int, int] = (1, ITERATIONS, KEPT),
) -> FMPrediction:
    """Fit on `known` (train + valid: nothing from the queries' period), predict `queries`.

    `schedule`: (chains, iterations per chain, draws kept per chain); chain c samples with seed
    `seed + CHAIN_SEEDS * c` and the chains' predictions are averaged (the peers: one of 300).
    """
    myfm = _myfm()
    design = _Design(known)
    X, relations = design.rows(known)
    Xq, relations_q = design.rows(queries)
    ratings = known[RATING].to_numpy().astype(np.float64)
    chains, iterations, kept = schedule
    common = {"X_rel": relations, "n_iter": iterations, "n_kept_samples": kept,
              "grouping": design.grouping}
    target = np.rint(ratings - scale.low).astype(np.int64) if probit else ratings
    answers, seconds = [], 0.0
    for chain in range(chains):
        kind = myfm.MyFMOrderedProbit if probit else myfm.MyFMRegressor
        with _quiet():
            model = kind(rank=RANK, random_seed=seed + CHAIN_SEEDS * chain).fit(X, target, **common)
        start = time.perf_counter()
        answers.append(model.predict_proba(Xq, relations_q) if probit
                       else model.predict(Xq, relations_q))
        seconds += time.perf_counter() - start
    answer = np.mean(answers, axis=0)
    if not probit:
        return FMPrediction(np.clip(answer, scale.low, scale.high), None, seconds)
    levels = scale.low + np.arange(answer.shape[1])
    return FMPrediction(np.clip(answer @ levels, scale.low, scale.high), answer, seconds)


def _myfm():
    """myFM 0.4.0 imports pkg_resources, which warns on every import: not the user's concern."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        import myfm
    return myfm


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """myFM draws a tqdm progress bar on every fit; the benchmark reports progress itself."""
    from tqdm import tqdm

    base = _myfm().base
    bar = base.tqdm
    base.tqdm = functools.partial(tqdm, disable=True)
    try:
        yield
    finally:
        base.tqdm = bar
