import polars as pl

from starcast.features.vocab import COLD, Vocabulary


def test_rare_and_unknown_ids_share_the_cold_bucket():
    vocab = Vocabulary.build(pl.Series(["b", "a", "b", "c", "b", "a"]), min_count=2)
    assert vocab.to_list() == ["b", "a"]
    assert len(vocab) == 3
    assert vocab.encode(pl.Series(["a", "b", "c", "zzz"])).tolist() == [2, 1, COLD, COLD]
