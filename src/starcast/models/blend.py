"""The network's prediction moved toward a Bayesian FM's, by weights fitted on valid.

    prediction = network + weight[group] * (fm - network)
    fm = mix * regression FM + (1 - mix) * ordered-probit FM's expected star

The two FMs share features and differ in likelihood; their share `mix` is fitted on valid
first, the same way as the weights.

The two disagree most where one of them knows something the other does not: the FM knows
who rated what (and the day), the network reads the order and the history that arrives after
fitting. The weight is fitted on valid (stacking, with both models fitted on train only), for
users the FM was fitted on and for users it was not; a group with too few valid events takes
the weight of all of them. It is the weight's posterior mean under a flat prior on [0, 1]
(least squares is its Gaussian likelihood): where valid pins the weight down, that is the
least-squares weight clipped to [0, 1]; where a few hundred valid events cannot tell, it stays
near the middle instead of at a bound. (On Digital_Music `time`, 307 usable valid events put
the least-squares weight at -0.29 +- 0.24 for new users, clipped to 0; the FM was the better
of the two on test there.)

Where the history holds reviews of the user that the FM was not fitted on, the network
answers alone: it is the one that reads them, and the FM's picture of the user is older than
the history. (Fitted weights there did not carry over: on All_Beauty `time` valid asked for
0.76, and the test period's drop in ratings made the FM's answers for those users 1.74 RMSE
against the network's 0.78.)
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch
from scipy.special import erfcx, ndtr

from starcast.config import FMConfig
from starcast.data.schema import ITEM, TS, USER, RatingScale
from starcast.models import fm_process
from starcast.models.bayesian_fm import FactorBase

GROUPS = 2
Ids = Sequence[str] | pl.Series
Pair = tuple[FactorBase, FactorBase | None]  # the regression FM, the probit if configured
MIN_GROUP = 50  # valid events a group needs for a weight of its own, else the pooled one
NO_VALID = 0.5  # without valid events to fit a weight: the plain average of the two
FLAT = 1e-3  # log-density slope across [0, 1] under which the truncated mean is read linearly
TAIL = 5.0  # standard deviations below 0 beyond which the truncated mean goes through erfcx


@dataclass
class FactorBlend:
    factors: FactorBase  # the regression FM
    weights: np.ndarray  # [2]: users unknown to the FM, users it was fitted on
    probit: FactorBase | None = None  # the ordered-probit FM, if one stands beside it
    mix: float = 1.0  # the regression FM's share of the two FMs' answer

    @classmethod
    def fit(cls, known: pl.DataFrame, config: FMConfig, seed: int, scale: RatingScale,
            weights: np.ndarray | None = None, mix: float | None = None) -> FactorBlend:
        """The FMs fitted on `known`, with these weights and share (default: NO_VALID)."""
        return cls.of(fitted_pair(known, config, seed, scale), weights, mix)

    @classmethod
    def of(cls, pair: Pair, weights: np.ndarray | None = None,
           mix: float | None = None) -> FactorBlend:
        """Fitted FMs (`fitting`), with these weights and share (default: NO_VALID)."""
        factors, probit = pair
        chosen = np.full(GROUPS, NO_VALID) if weights is None else weights
        share = 1.0 if probit is None else NO_VALID if mix is None else mix
        return cls(factors, chosen, probit, share)

    def fm(self, queries: pl.DataFrame) -> np.ndarray:
        return self._fm(queries[USER], queries[ITEM], queries[TS].to_numpy())

    def _fm(self, users: Ids, items: Ids, ts: np.ndarray) -> np.ndarray:
        regression = self.factors.predict(users, items, ts)
        if self.probit is None:
            return regression
        return self.mix * regression + (1 - self.mix) * self.probit.predict(users, items, ts)

    def weight(self, users: Ids, visible: np.ndarray) -> np.ndarray:
        """Each query's weight, from its user and the user's visible history events."""
        fitted_on = self.factors.user_events(users)
        return np.where(visible > fitted_on, 0.0, self.weights[(fitted_on > 0).astype(int)])

    def apply(self, network: np.ndarray, users: Ids, items: Ids, ts: np.ndarray,
              visible: np.ndarray) -> np.ndarray:
        """Blended predictions for queries (users, items, ts); `visible`: each query's user's
        visible history events. Plain id sequences do: the service builds no frame for this."""
        return network + self.weight(users, visible) * (self._fm(users, items, ts) - network)

    def fitted_mix(self, queries: pl.DataFrame, truth: np.ndarray) -> float:
        """The regression FM's share fitted on these (valid) queries, the same way as the
        weights: both FMs know the same events, so every query counts."""
        if self.probit is None:
            return 1.0
        ids = (queries[USER], queries[ITEM], queries[TS].to_numpy())
        probit = self.probit.predict(*ids)
        return _weight(self.factors.predict(*ids) - probit, truth - probit)

    def fitted_weights(self, network: np.ndarray, queries: pl.DataFrame, visible: np.ndarray,
                       truth: np.ndarray) -> np.ndarray:
        """The weights fitted on these (valid) queries, from the queries whose history holds
        nothing new to the FM."""
        gap, residual = self.fm(queries) - network, truth - network
        fitted_on = self.factors.user_events(queries[USER])
        usable = visible <= fitted_on

        def fitted(rows: np.ndarray, fallback: float) -> float:
            return _weight(gap[rows], residual[rows]) if rows.sum() >= MIN_GROUP else fallback

        pooled = fitted(usable, NO_VALID)
        return np.array([fitted(usable & (fitted_on == 0), pooled),
                         fitted(usable & (fitted_on > 0), pooled)])

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        tensors, meta = _tensors("fm.", self.factors)
        meta |= {"weights": self.weights.tolist(), "mix": self.mix}
        if self.probit is not None:
            probit_tensors, meta["probit"] = _tensors("fm_probit.", self.probit)
            tensors |= probit_tensors
        return tensors, meta

    @classmethod
    def restore(cls, tensors: dict[str, torch.Tensor], meta: dict) -> FactorBlend:
        probit = _restored("fm_probit.", tensors, meta["probit"]) if "probit" in meta else None
        return cls(_restored("fm.", tensors, meta), np.asarray(meta["weights"], dtype=float),
                   probit, float(meta["mix"]))


@contextlib.contextmanager
def fitting(rounds: Sequence[pl.DataFrame], config: FMConfig, seed: int, scale: RatingScale,
            parallel: bool | None = None) -> Iterator[Callable[[int], Pair]]:
    """`pair(i)`: the FMs fitted on `rounds[i]`, once each. With two cores (default:
    `spare_core()`) every round's probit starts at once in a second process (`fm_process`),
    in turn, while this one goes on (the caller's network, the regression FMs); without,
    `pair` fits both. The answers do not depend on it: each chain has its own seed."""
    aside = config.probit and (spare_core() if parallel is None else parallel)
    calls = [("fit_probit", (known, config, seed, scale)) for known in rounds] if aside else []
    with (fm_process.aside(calls) if calls else contextlib.nullcontext()) as probits:

        @functools.cache
        def fitted(i: int) -> Pair:
            regression = FactorBase.fit(rounds[i], config, seed)  # (before waiting for the child)
            if not config.probit:
                return regression, None
            if probits is None:
                return regression, FactorBase.fit_probit(rounds[i], config, seed, scale)
            return regression, probits.result(i)

        yield lambda i: fitted(range(len(rounds))[i])


def fitted_pair(known: pl.DataFrame, config: FMConfig, seed: int, scale: RatingScale,
                parallel: bool | None = None) -> Pair:
    """The FMs fitted on `known` (the two at once on two cores, as in `fitting`)."""
    with fitting([known], config, seed, scale, parallel) as pair:
        return pair(0)


def spare_core() -> bool:
    """Whether this process may use a second core."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (cores or 1) >= 2


def _tensors(prefix: str, base: FactorBase) -> tuple[dict[str, torch.Tensor], dict]:
    arrays, meta = base.state()
    return {prefix + k: torch.from_numpy(np.ascontiguousarray(v))
            for k, v in arrays.items()}, meta


def _restored(prefix: str, tensors: dict[str, torch.Tensor], meta: dict) -> FactorBase:
    arrays = {k[len(prefix):]: v.numpy() for k, v in tensors.items() if k.startswith(prefix)}
    return FactorBase.restore(arrays, meta)


def _weight(gap: np.ndarray, residual: np.ndarray) -> float:
    """The posterior mean of w in residual = w * gap + noise, under a flat prior on [0, 1]:
    the least-squares weight's normal likelihood truncated to [0, 1]."""
    denominator = float(gap @ gap)
    if denominator <= 0 or len(gap) < 2:
        return NO_VALID
    least_squares = float(gap @ residual) / denominator
    noise = residual - least_squares * gap
    spread = float(np.sqrt(noise @ noise / (len(gap) - 1) / denominator))
    if spread <= 0:
        return float(np.clip(least_squares, 0.0, 1.0))
    if least_squares > 0.5:  # the mirror image, so that the tails below stay in range
        return 1.0 - _truncated_mean(1.0 - least_squares, spread)
    return _truncated_mean(least_squares, spread)


def _truncated_mean(mean: float, sd: float) -> float:
    """E[x | 0 <= x <= 1] for x ~ N(mean, sd^2), mean <= 0.5: mean + sd * (density difference
    / mass) at the bounds; far in the upper tail through erfcx, the scaled complementary error
    function, where the plain densities and masses underflow."""
    tilt = (0.5 - mean) / sd**2  # the log density's slope across [0, 1]
    if tilt < FLAT:  # nearly the prior: the mean of a slightly tilted uniform
        return 0.5 - tilt / 12
    low, high = -mean / sd, (1.0 - mean) / sd  # |low| <= high
    if low < TAIL:
        mass = ndtr(high) - ndtr(low)
        shift = (np.exp(-0.5 * low**2) - np.exp(-0.5 * high**2)) / np.sqrt(2 * np.pi) / mass
    else:
        fall = np.exp(0.5 * (low**2 - high**2))  # density at high over density at low
        mills = erfcx(low / np.sqrt(2))  # mass above low over density at low, times sqrt(pi/2)
        mass_ratio = erfcx(high / np.sqrt(2)) / mills * fall  # mass above high over above low
        shift = np.sqrt(2 / np.pi) / mills * (1 - fall) / (1 - mass_ratio)
    return float(np.clip(mean + sd * shift, 0.0, 1.0))
