"""Star probabilities around a point prediction, and the two readings of them.

Most ratings are the top star, so the expected star (the RMSE-optimal point) sits near it for
almost everyone and the 1-3 star reviews are predicted worst. A distribution over stars serves
both needs: the point prediction for RMSE, and a *balanced* reading for the rare stars.

The distribution is an ordered logit around the model's (clipped) point prediction m:

    P(r <= k) = sigmoid((cut_k - slope * m) / spread)
    log spread = w . (1, log1p n, cold, log v)

n is the customer's visible history events, cold whether the item is new to the model (the
spread widens where the point prediction knows less), and v the variance of the customer's
visible ratings, shrunk toward the training ratings' variance by PRIOR_EVENTS pseudo-events:
one who always gives 5 stars gets a narrow distribution, one who gives all kinds a wide one.
It is fitted by maximum likelihood on predictions the model made of events it was not fitted
on (valid, predicted by the model fitted on train), so it learns how wrong the model is, not
how well it fits.

A logit's tails fall exponentially, so a star far from the point prediction gets almost no
probability, and one such event costs more log loss than a hundred ordinary ones. The
distribution therefore keeps a share e of events that no prediction foresees, spread evenly
over the stars:

    p = (1 - e) * ordered logit + e / K

e is the posterior mean under a flat prior on [0, 1] given the held-out events (the logit's
parameters at their fitted values). Because p is linear in e, that is the exact posterior
predictive of this mixture, where the maximum-likelihood e is often 0: a few hundred held-out
events that happen to hold no surprise do not show that surprises never come. (All_Beauty
`time`, whose test period brings 20% one-star reviews against 0.3% before it: offline test NLL
4.97 -> 2.21 at e of about 0.007; `loo` 0.205 -> 0.174; elsewhere within 0.002:
benchmarks/results/accuracy.md.) A model with probabilities of its own (the ordinal head)
keeps a share the same way, from its own held-out probabilities (`with_surprise`).

The balanced reading is the star k minimising the expected cost sum_j p_j C[k, j]; by default
C[k, j] = |k - j| / share_j, each true star counting in inverse proportion to its share of the
training ratings (the cost behind macro-averaged MAE).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.integrate import trapezoid
from scipy.optimize import brentq, minimize

from starcast.config import cost_rows
from starcast.errors import ConfigError

MIN_EVENTS = 20  # fewer held-out events than this leave the spread fixed (cuts and slope only)
PRIOR_EVENTS = 2.0  # pseudo-events of the training variance in a customer's rating variance
SURPRISE_GRID = 801  # points of the posterior of the surprise share, across its bulk
SURPRISE_WIDTH = 20.0  # the bulk: this many of the posterior's scales beside its mode


@dataclass
class StarCosts:
    """C[k, j]: the cost of reading star k+1 when the truth is star j+1."""

    matrix: np.ndarray

    @classmethod
    def inverse_share(cls, shares: np.ndarray) -> StarCosts:
        """|k - j| / share_j (`star_shares`)."""
        return cls.of_weights(1.0 / np.asarray(shares, dtype=np.float64))

    @classmethod
    def of_weights(cls, weights: np.ndarray) -> StarCosts:
        """|k - j| * weights_j: absolute error, true star j counting `weights_j` times."""
        stars = np.arange(len(weights))
        distance = np.abs(stars[:, None] - stars[None, :]).astype(np.float64)
        return cls(distance * np.asarray(weights, dtype=np.float64)[None, :])

    @classmethod
    def parse(cls, value: object, stars: int, where: str = "costs") -> StarCosts:
        """Per-star weights (K numbers) or a K x K matrix, as given by a user."""
        if isinstance(value, StarCosts):
            value = value.matrix
        if isinstance(value, np.ndarray):
            value = value.tolist()
        array = np.asarray(cost_rows(value, where), dtype=np.float64)
        if array.shape not in ((1, stars), (stars, stars)):
            size = array.shape[1] if len(array) == 1 else f"{len(array)}x{len(array)}"
            raise ConfigError(f"{where}: expected {stars} numbers or a {stars}x{stars} matrix, "
                              f"got {size}")
        return cls.of_weights(array[0]) if len(array) == 1 else cls(array)

    def expected(self, probabilities: np.ndarray) -> np.ndarray:
        """[N, K]: the expected cost of reading each star."""
        return probabilities @ self.matrix.T

    def balanced(self, probabilities: np.ndarray, low: float) -> np.ndarray:
        """The star with the least expected cost, per row (ties: the lower star)."""
        return low + np.argmin(self.expected(probabilities), axis=1).astype(np.float64)


def star_index(ratings: np.ndarray, low: float, stars: int) -> np.ndarray:
    """Each rating's star as an index 0..K-1 (rounded, clipped to the scale)."""
    return np.clip(np.rint(np.asarray(ratings) - low).astype(np.int64), 0, stars - 1)


def star_shares(ratings: np.ndarray, low: float, stars: int) -> np.ndarray:
    """[K]: each star's share of `ratings`; a star never seen counts as one rating."""
    counts = np.maximum(np.bincount(star_index(ratings, low, stars), minlength=stars), 1)
    return counts / counts.sum()


def share_variance(shares: np.ndarray, low: float) -> float:
    """The variance of ratings distributed over the stars low, low + 1, ... by `shares`."""
    levels = low + np.arange(len(shares))
    return float(shares @ (levels - shares @ levels) ** 2)


@dataclass
class StarContext:
    """Per query, what widens or narrows its distribution besides the point prediction."""

    visible: np.ndarray  # the customer's visible history events
    item_cold: np.ndarray  # bool: the item is new to the model
    rating_sum: np.ndarray  # the sum of those events' ratings
    rating_sq: np.ndarray  # and of their squares

    def design(self, prior_var: float) -> np.ndarray:
        """[N, 4]: 1, log1p(n), item cold, log of the shrunk rating variance."""
        n = np.asarray(self.visible, dtype=np.float64)
        spread = self.rating_sq - self.rating_sum**2 / np.maximum(n, 1)
        variance = (np.maximum(spread, 0) + PRIOR_EVENTS * prior_var) / (n + PRIOR_EVENTS)
        return np.column_stack([np.ones(len(n)), np.log1p(n),
                                np.asarray(self.item_cold, dtype=np.float64),
                                np.log(np.maximum(variance, 1e-6))])


@dataclass
class StarCalibration:
    """The distribution of the module docstring: the ordered logit's `cuts` [K-1], `slope`,
    `spread` [4] (the weights of StarContext.design), `prior_var`, and the `surprise` share e."""

    cuts: np.ndarray
    slope: float
    spread: np.ndarray
    prior_var: float
    surprise: float = 0.0

    @classmethod
    def fit(
        cls, mean: np.ndarray, ratings: np.ndarray, context: StarContext, prior_var: float,
        low: float, stars: int,
    ) -> StarCalibration:
        """Maximum likelihood over held-out (prediction, true rating) pairs, then the
        surprise share's posterior mean given them."""
        index = star_index(ratings, low, stars)
        free_spread = len(index) >= MIN_EVENTS
        design = context.design(prior_var)
        width = design.shape[1]
        start = np.r_[float(np.mean(mean)) - 1.5, np.full(stars - 2, np.log(3.0 / (stars - 1))),
                      1.0, np.zeros(width)]  # cuts 3 stars apart end to end

        def unpack(theta: np.ndarray) -> StarCalibration:
            cuts = np.r_[theta[0], theta[0] + np.cumsum(np.exp(theta[1 : stars - 1]))]
            spread = theta[stars:] if free_spread else np.zeros(width)
            return cls(cuts, float(theta[stars - 1]), spread, prior_var)

        mean_t, design_t = torch.from_numpy(np.asarray(mean, np.float64)), torch.from_numpy(design)
        rows = torch.arange(len(index))
        index_t = torch.from_numpy(index)

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            # the exact gradient (autograd): 9 parameters by finite differences cost 10 passes
            t = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
            cuts = torch.cat([t[:1], t[0] + torch.cumsum(torch.exp(t[1 : stars - 1]), 0)])
            spread = t[stars:] if free_spread else torch.zeros(width, dtype=torch.float64)
            p = _probabilities(cuts, t[stars - 1], spread, mean_t, design_t)
            value = -torch.log(p[rows, index_t]).mean()
            value.backward()
            return value.item(), t.grad.numpy()

        fitted = unpack(minimize(loss, start, jac=True, method="L-BFGS-B").x)
        logit = fitted._from_design(mean, design)[np.arange(len(index)), index]  # (e = 0 yet)
        fitted.surprise = surprise_share(logit, stars)
        return fitted

    def probabilities(self, mean: np.ndarray, context: StarContext) -> np.ndarray:
        """[N, K]: P(star k) per query, non-negative and summing to 1."""
        return self._from_design(mean, context.design(self.prior_var))

    def _from_design(self, mean: np.ndarray, design: np.ndarray) -> np.ndarray:
        as_tensor = lambda a: torch.as_tensor(np.asarray(a, np.float64))  # noqa: E731
        logit = _probabilities(as_tensor(self.cuts), torch.tensor(self.slope, dtype=torch.float64),
                               as_tensor(self.spread), as_tensor(mean), as_tensor(design)).numpy()
        return with_surprise(logit, self.surprise)

    def state(self) -> dict:
        return {"cuts": self.cuts.tolist(), "slope": self.slope, "spread": self.spread.tolist(),
                "prior_var": self.prior_var, "surprise": self.surprise}

    @classmethod
    def restore(cls, meta: dict) -> StarCalibration:
        # (models saved before the surprise share read as the plain logit)
        return cls(np.asarray(meta["cuts"]), float(meta["slope"]), np.asarray(meta["spread"]),
                   float(meta["prior_var"]), float(meta.get("surprise", 0.0)))


def with_surprise(probabilities: np.ndarray, share: float) -> np.ndarray:
    """[N, K]: the share e of events no prediction foresees, spread evenly over the stars."""
    return (1.0 - share) * probabilities + share / probabilities.shape[1]


def surprise_share(p_true: np.ndarray, stars: int) -> float:
    """The posterior mean of e in p = (1 - e) p_true + e / stars over held-out events whose
    true star had probability `p_true`, under a flat prior on [0, 1].

    The log likelihood is concave in e, so the posterior has one mode; it is integrated on a
    grid across SURPRISE_WIDTH of its scales (its curvature at an inner mode, its slope at a
    mode on a bound) beside the mode, clipped to [0, 1]."""
    p = np.asarray(p_true, dtype=np.float64)
    if len(p) == 0:
        return 0.0
    toward = 1.0 / stars - p  # d p / d e

    def slope(e: float) -> float:
        return float(np.sum(toward / (p + e * toward)))

    mode = 0.0 if slope(0.0) <= 0 else 1.0 if slope(1.0) >= 0 else brentq(slope, 0.0, 1.0)
    if mode in (0.0, 1.0):  # on a bound: the posterior falls off like exp(-|slope| distance)
        steepness = abs(slope(mode))
    else:  # inside: like a normal of this curvature
        steepness = float(np.sqrt(np.sum((toward / (p + mode * toward)) ** 2)))
    scale = 1.0 / max(steepness, 1.0)
    grid = np.linspace(max(0.0, mode - SURPRISE_WIDTH * scale),
                       min(1.0, mode + SURPRISE_WIDTH * scale), SURPRISE_GRID)
    log_likelihood = np.array([np.sum(np.log(p + e * toward)) for e in grid])
    weight = np.exp(log_likelihood - log_likelihood.max())
    return float(trapezoid(grid * weight, grid) / trapezoid(weight, grid))


def _probabilities(cuts: torch.Tensor, slope: torch.Tensor, spread: torch.Tensor,
                   mean: torch.Tensor, design: torch.Tensor) -> torch.Tensor:
    """[N, K] of StarCalibration, in torch: the fit differentiates the very function that
    predicts."""
    scale = torch.exp(torch.clamp(design @ spread, -5.0, 5.0))
    z = (cuts[None, :] - slope * mean[:, None]) / scale[:, None]
    below = torch.sigmoid(z)  # P(r <= k) for k = 1..K-1, increasing in k since the cuts are
    zeros = torch.zeros_like(below[:, :1])
    cumulative = torch.cat([zeros, below, torch.ones_like(zeros)], dim=1)
    p = torch.clamp(torch.diff(cumulative, dim=1), min=1e-9)  # (a log loss stays finite)
    return p / p.sum(dim=1, keepdim=True)
