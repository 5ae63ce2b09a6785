"""Id vocabularies: the one edge where string ids become integer indices.

Index 0 is the cold bucket: ids unseen in training, or seen fewer than `min_count` times,
all map there, so a model trained with rare ids folded into it has a trained answer for new ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import polars as pl

COLD = 0


class Vocabulary:
    """An ordered id -> index map with a shared cold bucket at index 0."""

    def __init__(self, ids: Sequence[str]) -> None:
        self.ids: list[str] = list(ids)
        self._table = pl.DataFrame(
            {"id": self.ids, "index": np.arange(1, len(self.ids) + 1, dtype=np.int64)},
            schema={"id": pl.Utf8, "index": pl.Int64},
        )

    @classmethod
    def build(cls, ids: pl.Series | Iterable[str], min_count: int = 1) -> Vocabulary:
        """Keep ids occurring at least `min_count` times, in order of first appearance."""
        series = ids if isinstance(ids, pl.Series) else pl.Series(list(ids), dtype=pl.Utf8)
        counts = series.alias("id").to_frame().group_by("id", maintain_order=True).len()
        return cls(counts.filter(pl.col("len") >= min_count)["id"].to_list())

    def __len__(self) -> int:
        """Number of rows an embedding table needs (known ids + the cold bucket)."""
        return len(self.ids) + 1

    def encode(self, ids: pl.Series) -> np.ndarray:
        """Indices for `ids`; unknown ids get COLD."""
        frame = ids.cast(pl.Utf8).alias("id").to_frame()
        joined = frame.join(self._table, on="id", how="left", maintain_order="left")
        return joined["index"].fill_null(COLD).to_numpy().astype(np.int64)

    def to_list(self) -> list[str]:
        return list(self.ids)
