"""Item side features as token bags."""

import numpy as np
import polars as pl

from starcast.data.schema import ITEM_SCHEMA
from starcast.features.side import SideFeatures


def table(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=ITEM_SCHEMA, orient="row")


def test_tokens_shared_by_two_items_are_kept_others_dropped() -> None:
    side = SideFeatures.build(table([
        ("a", ["music", "rock"], "Acme", 10.0, None),
        ("b", None, " ", None, None),
        ("c", ["music"], "Acme", 10.0, None),
    ]))
    # shared: brand:Acme, category:music and the price decile of 10.0; "rock" is a's alone
    assert side.n_tokens == 4
    a, b, c = side.rows(pl.Series(["a", "b", "c"]))
    assert sorted(side.tokens[a][side.tokens[a] > 0]) == [1, 2, 3]
    assert (side.tokens[b] == 0).all()
    assert sorted(side.tokens[c][side.tokens[c] > 0]) == [1, 2, 3]
    assert side.rows(pl.Series(["unknown"]))[0] == 0


def test_token_and_bag_means() -> None:
    side = SideFeatures.build(table([
        ("a", ["x"], None, None, None),
        ("b", ["x", "y"], None, None, None),
        ("c", ["y"], None, None, None),
    ]))
    rows = side.rows(pl.Series(["a", "b", "c"]))
    per_token = side.token_means(rows, np.array([1.0, 2.0, 4.0]), shrinkage=1.0)
    x, y = side.tokens[rows[0]][0], side.tokens[rows[2]][0]
    assert per_token[x] == (1 + 2) / (2 + 1) and per_token[y] == (2 + 4) / (2 + 1)
    bags = side.bag_means(per_token)
    assert bags[0] == 0.0  # the row of items without features
    assert bags[rows[1]] == (per_token[x] + per_token[y]) / 2
