"""Contract tests: every registered model through the same checks (after Surprise's)."""

import numpy as np
import polars as pl
import pytest

from starcast import MODELS, Forecaster, ModelFormatError, NotFittedError
from starcast.data.splits import split_events
from starcast.data.synth import SynthConfig, generate
from starcast.forecaster import FORMAT_VERSION


@pytest.fixture(scope="module")
def split():
    data = generate(SynthConfig(users=150, items=60, events=2_500, seed=3))
    return split_events(data.events, "time")


QUICK = {"mf": 2, "seed": 2, "lstm": 2, "transformer": 2}


def fitted(name, split, config, seed=0):
    return Forecaster(name, config, seed=seed, epochs=QUICK.get(name)).fit(
        split.train, split.valid)


def queries(split):
    unknown = pl.DataFrame({"user": ["nobody", split.train["user"][0]],
                            "item": [split.train["item"][0], "no-such-item"],
                            "ts": [2_000_000_000, 2_000_000_000]})
    return pl.concat([split.test.select("user", "item", "ts"), unknown])


@pytest.mark.parametrize("name", list(MODELS))
def test_model_contract(name, split, tmp_path, quick):
    model = fitted(name, split, quick)
    history = pl.concat([split.train, split.valid])
    q = queries(split)
    out = model.predict(history, q)
    assert out.select("user", "item", "ts").equals(q)
    assert out["prediction"].is_between(1, 5).all() and out["prediction"].null_count() == 0
    assert out["cold"].tail(2).to_list() == [True, True]
    again = model.predict(history, q)
    assert again.equals(out), "predict must not change the model"
    model.save(tmp_path / name)
    loaded = Forecaster.load(tmp_path / name).predict(history, q)
    np.testing.assert_allclose(loaded["prediction"], out["prediction"], atol=1e-6)
    twin = fitted(name, split, quick).predict(history, q)
    np.testing.assert_allclose(twin["prediction"], out["prediction"], atol=1e-6)


def test_unfitted_and_bad_model_dir(tmp_path):
    with pytest.raises(NotFittedError):
        Forecaster().predict(None, pl.DataFrame({"user": ["a"], "item": ["b"], "ts": [1]}))
    with pytest.raises(ModelFormatError, match="not a starcast model"):
        Forecaster.load(tmp_path)


def test_load_refuses_other_format_version(split, tmp_path, quick):
    fitted("bias", split, quick).save(tmp_path)
    meta = tmp_path / "model.json"
    version = f'"format_version": {FORMAT_VERSION}'
    meta.write_text(meta.read_text().replace(version, '"format_version": 99'))
    with pytest.raises(ModelFormatError, match="version 99"):
        Forecaster.load(tmp_path)
