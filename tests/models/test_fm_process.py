"""The FM fitted in a second process: its answer, its errors and its clean-up."""

import numpy as np
import polars as pl
import pytest

from starcast.config import FMConfig
from starcast.data.synth import SynthConfig, generate
from starcast.errors import StarcastError
from starcast.models import fm_process
from starcast.models.bayesian_fm import FactorBase

pytest.importorskip("myfm")

CONFIG = FMConfig(chains=1, iterations=10, burn_in=2)


@pytest.fixture(scope="module")
def events() -> pl.DataFrame:
    return generate(SynthConfig(users=40, items=20, events=400, seed=1)).events


def test_the_child_fits_what_this_process_fits(events) -> None:
    with fm_process.aside([("fit", (events, CONFIG, 5))]) as child:
        there = child.result()
    here = FactorBase.fit(events, CONFIG, 5)
    assert all(np.array_equal(here.arrays[k], there.arrays[k]) for k in here.arrays)
    assert not list(child.folder.parent.glob(child.folder.name))  # its files are gone


def test_the_child_fits_in_turn_and_each_answer_is_its_own(events) -> None:
    """A failed fit is raised for that fit only; the one after it still answers."""
    calls = [("fit", (events.drop("rating"), CONFIG, 5)), ("fit", (events, CONFIG, 6))]
    with fm_process.aside(calls) as child:
        second = child.result(1)
        with pytest.raises(pl.exceptions.ColumnNotFoundError, match="rating"):
            child.result(0)
    here = FactorBase.fit(events, CONFIG, 6)
    assert all(np.array_equal(here.arrays[k], second.arrays[k]) for k in here.arrays)


def test_an_error_in_the_child_is_raised_here_as_itself(events) -> None:
    with fm_process.aside([("fit", (events.drop("rating"), CONFIG, 5))]) as child:
        with pytest.raises(pl.exceptions.ColumnNotFoundError, match="rating"):
            child.result()


def test_a_child_that_dies_is_an_error_that_says_so(events) -> None:
    with fm_process.aside([("fit", (events, FMConfig(iterations=10_000), 5))]) as child:
        child.child.kill()
        with pytest.raises(StarcastError, match="second process ended with exit status -9"):
            child.result()


def test_only_factorbase_fits_run_in_a_child(events) -> None:
    with pytest.raises(ValueError, match="not a FactorBase fit: 'restore'"):
        with fm_process.aside([("restore", ({}, {}))]):
            pass
