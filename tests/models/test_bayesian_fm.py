"""The Bayesian FM beside the network: its reading as (user, item, day) tables, and the blend."""

import numpy as np
import polars as pl
import pytest
from scipy.special import ndtr

from starcast import Forecaster
from starcast.config import FMConfig, LSTMConfig, StarcastConfig
from starcast.data.schema import RatingScale
from starcast.data.splits import split_events
from starcast.data.synth import SynthConfig, generate
from starcast.models import bayesian_fm
from starcast.models.bayesian_fm import FactorBase, _Design, _myfm
from starcast.models.blend import FactorBlend, fitted_pair, fitting

pytest.importorskip("myfm")


@pytest.fixture(scope="module")
def split():
    return split_events(generate(SynthConfig(users=150, items=60, events=3_000, seed=4)).events,
                        "loo")


def test_the_tables_are_the_posterior_mean_of_the_draws(split) -> None:
    """With every draw kept and no truncation, FactorBase is the mean of myFM's own posterior
    means over its chains (chain c seeded seed + 1000 c)."""
    known = split.train
    config = FMConfig(chains=2, iterations=40, burn_in=10, cross_rank=10_000)
    base = FactorBase.fit(known, config, seed=3)
    design = _Design(known)
    X, relations = design.rows(known)
    Xq, relations_q = design.rows(split.test)
    chains = []
    for seed in (3, 1003):
        with bayesian_fm._quiet():
            chains.append(_myfm().MyFMRegressor(rank=config.rank, random_seed=seed).fit(
                X, known["rating"].to_numpy().astype(float), X_rel=relations, n_iter=40,
                n_kept_samples=30, grouping=design.grouping).predict(Xq, relations_q))
    got = base.predict(split.test["user"], split.test["item"], split.test["ts"].to_numpy())
    assert np.abs(got - np.mean(chains, axis=0)).max() < 1e-4  # vectors are kept in float32
    assert np.abs(chains[0] - chains[1]).max() > 0.01  # two chains, not one counted twice


@pytest.mark.parametrize("sampled", [False, True])
def test_the_probit_tables_are_its_draws_mean_latent_and_spread(split, sampled,
                                                                monkeypatch) -> None:
    """The probit's latent is the mean over draws of myFM's score, its cutpoints their mean,
    and its expected star Phi of (latent - cutpoint) over the spread of that difference across
    draws on the fitting rows (past SPREAD_ROWS of them, on `spread_rows`); within the scale,
    rising with the latent."""
    known = split.train
    if sampled:
        monkeypatch.setattr(bayesian_fm, "SPREAD_ROWS", 500)
    config = FMConfig(probit_iterations=40, probit_burn_in=10, cross_rank=10_000)
    base = FactorBase.fit_probit(known, config, seed=3, scale=RatingScale())
    design = _Design(known)
    X, relations = design.rows(known)
    Xq, relations_q = design.rows(split.test)
    with bayesian_fm._quiet():
        model = _myfm().MyFMOrderedProbit(rank=config.rank, random_seed=3).fit(
            X, np.rint(known["rating"].to_numpy() - 1).astype(int), X_rel=relations, n_iter=40,
            n_kept_samples=30, grouping=design.grouping)
    samples = model.predictor_.samples
    cut = np.array([np.asarray(fm.cutpoints[0]) for fm in samples])  # [draws, 4]
    rows = bayesian_fm.spread_rows(known.height, 3)
    assert len(rows) == (500 if sampled else known.height)
    scores = np.array([fm.predict_score(X, relations)[rows] for fm in samples])
    fitting = scores[:, :, None] - cut[:, None]
    queries = np.array([fm.predict_score(Xq, relations_q) for fm in samples])
    ids = (split.test["user"], split.test["item"], split.test["ts"].to_numpy())
    assert np.abs(base.latent(*ids) - queries.mean(axis=0)).max() < 1e-4
    assert np.allclose(base.arrays["cutpoints"], cut.mean(axis=0))
    assert np.allclose(base.arrays["spread"], np.sqrt(1 + fitting.var(axis=0).mean(axis=0)))
    star = base.predict(*ids)
    expected = 1 + ndtr((queries.mean(axis=0)[:, None] - cut.mean(axis=0))
                        / base.arrays["spread"]).sum(axis=1)
    assert np.abs(star - expected).max() < 1e-4
    assert (star >= 1).all() and (star <= 5).all()
    order = np.argsort(base.latent(*ids))
    assert (np.diff(star[order]) >= -1e-12).all()


def _same(one: FactorBase, other: FactorBase) -> bool:
    return (one.arrays.keys() == other.arrays.keys() and one.w0 == other.w0
            and all(np.array_equal(one.arrays[k], other.arrays[k]) for k in one.arrays))


def test_the_fms_fitted_at_once_are_the_ones_fitted_in_turn(split) -> None:
    """Each round's probit fitted in a second process is the one fitted here: same seeds, same
    draws; the second round's answer does not depend on the first's."""
    config = FMConfig(chains=2, iterations=20, burn_in=5, probit_iterations=20, probit_burn_in=5)
    rounds = [split.train, pl.concat([split.train, split.valid])]
    with fitting(rounds, config, 3, RatingScale(), parallel=True) as pair:
        parallel = [pair(1), pair(0)]  # (asked out of order)
    serial = [fitted_pair(known, config, 3, RatingScale(), parallel=False)
              for known in reversed(rounds)]
    for one, other in zip(serial, parallel, strict=True):
        assert _same(one[0], other[0]) and _same(one[1], other[1])
        assert "spread" in other[1].arrays and "spread" not in other[0].arrays
    assert not _same(parallel[0][1], parallel[1][1])  # (two rounds, two fits)


def test_a_round_is_fitted_once(split, monkeypatch) -> None:
    calls = []
    fit = FactorBase.fit.__func__
    monkeypatch.setattr(FactorBase, "fit",
                        classmethod(lambda cls, *args: calls.append(1) or fit(cls, *args)))
    config = FMConfig(chains=1, iterations=10, burn_in=2, probit=False)
    with fitting([split.train], config, 3, RatingScale()) as pair:
        assert pair(0) is pair(-1)
    assert len(calls) == 1


def test_truncation_error_falls_with_the_rank_kept(split) -> None:
    config = FMConfig(chains=2, iterations=40, burn_in=10)
    args = (split.test["user"], split.test["item"], split.test["ts"].to_numpy())

    def predict(rank):
        return FactorBase.fit(split.train, FMConfig(chains=2, iterations=40,
                                                    burn_in=10, cross_rank=rank), 3).predict(*args)

    exact = predict(10_000)
    error = {r: np.sqrt(np.mean((predict(r) - exact) ** 2)) for r in (4, 32)}
    assert error[4] > error[32] > 0, error
    assert FactorBase.fit(split.train, config, 3).predict(*args).tolist() == \
        FactorBase.fit(split.train, config, 3).predict(*args).tolist()  # seeded


def test_unknown_users_and_items_take_only_what_is_known(split) -> None:
    base = FactorBase.fit(split.train, FMConfig(chains=2, iterations=20, burn_in=5), 0)
    day = split.train["ts"].to_numpy()[:1]
    nobody = base.predict(pl.Series(["nobody"]), pl.Series(["nothing"]), day)
    assert nobody[0] == pytest.approx(base.w0 + base.arrays["const_day"][
        np.searchsorted(base.days, day[0] // 86_400, side="right") - 1])
    assert base.user_events(pl.Series(["nobody"])).tolist() == [0.0]


def test_the_blend_weight_recovers_a_known_mixture(split) -> None:
    blend = FactorBlend.fit(split.train, FMConfig(chains=2, iterations=20, burn_in=5,
                                                  probit=False), 0, RatingScale())
    queries = pl.concat([split.valid, split.test])
    fm = blend.fm(queries)
    rng = np.random.default_rng(0)
    network = fm + rng.normal(0, 0.5, len(fm))
    truth = network + 0.3 * (fm - network) + rng.normal(0, 0.05, len(fm))
    visible = blend.factors.user_events(queries["user"])  # nothing new to the FM
    weights = blend.fitted_weights(network, queries, visible, truth)
    assert weights[1] == pytest.approx(0.3, abs=0.03)
    newer = visible + 1  # a review the FM was not fitted on: the network answers alone
    ids = (queries["user"], queries["item"], queries["ts"].to_numpy())
    assert (blend.apply(network, *ids, newer) == network).all()
    assert blend.fitted_weights(network, queries, newer, truth).tolist() == [0.5, 0.5]
    blend.weights = weights
    assert np.sqrt(np.mean((blend.apply(network, *ids, visible) - truth) ** 2)) < \
        np.sqrt(np.mean((network - truth) ** 2)) - 0.1


def test_the_fms_share_recovers_a_known_mixture(split) -> None:
    config = FMConfig(chains=2, iterations=20, burn_in=5, probit_iterations=40, probit_burn_in=10)
    blend = FactorBlend.fit(split.train, config, 0, RatingScale())
    queries = pl.concat([split.valid, split.test])
    ids = (queries["user"], queries["item"], queries["ts"].to_numpy())
    regression, probit = blend.factors.predict(*ids), blend.probit.predict(*ids)
    assert np.abs(regression - probit).mean() > 0.05  # two different models
    truth = 0.3 * regression + 0.7 * probit + np.random.default_rng(0).normal(0, 0.02, len(probit))
    blend.mix = blend.fitted_mix(queries, truth)
    assert blend.mix == pytest.approx(0.3, abs=0.03)
    assert np.allclose(blend.fm(queries), blend.mix * regression + (1 - blend.mix) * probit)
    alone = FactorBlend.fit(split.train, FMConfig(chains=2, iterations=20, burn_in=5,
                                                  probit=False), 0, RatingScale())
    assert alone.probit is None and alone.fitted_mix(queries, truth) == 1.0


def test_the_default_model_saves_and_loads_its_fm(split, tmp_path) -> None:
    config = StarcastConfig(lstm=LSTMConfig(fm=FMConfig(chains=2, iterations=30, burn_in=10,
                                                        probit_iterations=40, probit_burn_in=10)))
    model = Forecaster(config=config, seed=0, epochs=1).fit(split.train, split.valid)
    weights = model.training_log["blend"]
    assert len(weights) == 2 and all(0 <= w <= 1 for w in weights)
    assert 0 <= model.training_log["fm_mix"] <= 1
    assert model.model_.blend_.mix == model.training_log["fm_mix"]  # valid's share is served
    history = pl.concat([split.train, split.valid])
    loaded = Forecaster.load(model.save(tmp_path / "m"))
    assert loaded.predict(history, split.test).equals(model.predict(history, split.test))
    without = Forecaster(config=StarcastConfig(lstm=LSTMConfig(factors=False)), seed=0,
                         epochs=1).fit(split.train, split.valid)
    assert not hasattr(without.model_, "blend_")


@pytest.mark.parametrize("bad", [{"rank": 0}, {"chains": 0}, {"cross_rank": -1},
                                 {"iterations": 10, "burn_in": 10}, {"burn_in": -1},
                                 {"probit_iterations": 0},
                                 {"probit_iterations": 10, "probit_burn_in": 10}])
def test_bad_fm_settings_are_refused_by_name(bad) -> None:
    from starcast.errors import ConfigError

    with pytest.raises(ConfigError, match="fm."):
        FMConfig(**bad)
