"""Item side features (category, brand, price) as token bags, so new items have a representation.

Each item becomes a bag of tokens: one per category entry, its brand, and its price decile
(deciles of log price over the items table). Tokens carried by fewer than `min_items` items
are dropped: a token only one item has says nothing about any other item. Token 0 pads.

The table covers every item of the features file, not only the trained ones: an item that
never appeared in training but has a row here still gets a specific representation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from starcast.data.schema import ITEM
from starcast.features.vocab import Vocabulary

PRICE_BINS = 10


@dataclass
class SideFeatures:
    """items: the ids with features (row r + 1 of `tokens`); tokens: [n_items + 1, width]."""

    items: Vocabulary
    tokens: np.ndarray  # int64, 0 pads; row 0 (the COLD index) is the item without features
    n_tokens: int  # token ids are 1..n_tokens - 1

    @classmethod
    def build(cls, table: pl.DataFrame, min_items: int = 2) -> SideFeatures:
        bags = _token_bags(table)
        counts = bags.explode("tokens").group_by("tokens").len()
        kept = counts.filter(pl.col("len") >= min_items).sort("tokens")["tokens"]
        index = {token: i + 1 for i, token in enumerate(kept.to_list())}
        items = Vocabulary.build(bags[ITEM])
        rows = [[index[t] for t in bag if t in index] for bag in bags["tokens"].to_list()]
        width = max([1, *map(len, rows)])
        tokens = np.zeros((len(items), width), dtype=np.int64)
        positions = items.encode(bags[ITEM])
        for pos, row in zip(positions, rows, strict=True):
            tokens[pos, : len(row)] = row
        return cls(items, tokens, len(index) + 1)

    def rows(self, item_ids: pl.Series) -> np.ndarray:
        """Row of `tokens` for each item id (row 0, all padding, when it has no features)."""
        return self.items.encode(item_ids)

    def token_means(self, rows: np.ndarray, values: np.ndarray, shrinkage: float) -> np.ndarray:
        """Per token: the shrunk mean of `values` over the items (side `rows`) carrying it."""
        bags = self.tokens[rows]
        carried = bags > 0
        tokens = bags[carried]
        per_item = np.broadcast_to(values[:, None], bags.shape)[carried]
        sums = np.bincount(tokens, per_item, minlength=self.n_tokens)
        counts = np.bincount(tokens, minlength=self.n_tokens)
        return sums / (counts + shrinkage)

    def bag_means(self, per_token: np.ndarray) -> np.ndarray:
        """Per side row: the mean of `per_token` over its tokens (0 for a row without any)."""
        carried = self.tokens > 0
        total = np.where(carried, per_token[self.tokens], 0.0).sum(axis=1)
        return total / np.maximum(carried.sum(axis=1), 1)

    @classmethod
    def empty(cls) -> SideFeatures:
        return cls(Vocabulary([]), np.zeros((1, 1), dtype=np.int64), 1)


def _token_bags(table: pl.DataFrame) -> pl.DataFrame:
    """Per item: its category entries, brand and price decile as prefixed token strings."""
    price = table["price"].fill_null(0.0).to_numpy()
    priced = price > 0
    log_price = np.log(price, where=priced, out=np.zeros_like(price))
    inner = np.linspace(0, 1, PRICE_BINS + 1)[1:-1]
    cuts = np.quantile(log_price[priced], inner) if priced.any() else np.zeros(0)
    decile = pl.Series(np.searchsorted(cuts, log_price)).cast(pl.Utf8)
    token = lambda kind, value: pl.concat_list(pl.concat_str(pl.lit(kind), value))  # noqa: E731
    brand = pl.col("brand").str.strip_chars()
    return table.select(
        ITEM,
        pl.concat_list(
            pl.col("category").fill_null([]).list.eval(pl.lit("category:") + pl.element()),
            token("brand:", pl.when(brand != "").then(brand)),
            token("price:", pl.when(pl.Series(priced)).then(decile)),
        )
        .list.drop_nulls()
        .list.unique(maintain_order=True)
        .alias("tokens"),
    )
