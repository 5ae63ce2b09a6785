"""Predict requests that arrive together are answered by one call, each with its own answers."""

import asyncio

import numpy as np
import pytest

from starcast.serving.batcher import Batcher
from starcast.serving.online import Answers


class Counting:
    """An OnlineForecaster stand-in: prediction = len(user), and a user named 'bad' fails."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def answer(self, users, items, ts) -> Answers:
        self.calls.append(len(users))
        if "bad" in users:
            raise ValueError("bad user")
        return Answers(np.array([float(len(u)) for u in users]), np.zeros(len(users), bool),
                       np.array([[len(i), t] for i, t in zip(items, ts, strict=True)], float))


def ask(batcher, users):
    return batcher.answer(users, [f"item-{u}" for u in users], np.arange(len(users)))


def test_requests_of_one_turn_share_one_call_and_get_their_own_answers() -> None:
    online = Counting()
    requests = [["a"], ["bb", "ccc"], ["dddd"]]

    batcher = Batcher(online)

    async def together():
        return await asyncio.gather(*(ask(batcher, r) for r in requests))

    answers = asyncio.run(together())
    assert online.calls == [4]  # one call for the 4 queries of 3 requests
    for users, got in zip(requests, answers, strict=True):
        assert got.prediction.tolist() == [float(len(u)) for u in users]
        assert got.probabilities[:, 0].tolist() == [len(f"item-{u}") for u in users]


def test_a_request_alone_is_answered_alone() -> None:
    online = Counting()
    got = asyncio.run(ask(Batcher(online), ["abc"]))
    assert online.calls == [1] and got.prediction.tolist() == [3.0]


def test_a_failing_request_fails_alone() -> None:
    online = Counting()
    batcher = Batcher(online)

    async def together():
        return await asyncio.gather(ask(batcher, ["a"]), ask(batcher, ["bad"]),
                                    ask(batcher, ["cc"]), return_exceptions=True)

    good, bad, other = asyncio.run(together())
    assert isinstance(bad, ValueError)
    assert good.prediction.tolist() == [1.0] and other.prediction.tolist() == [2.0]
    assert online.calls == [3, 1, 1, 1]  # together, then each alone


def test_the_next_turn_starts_a_new_batch() -> None:
    online = Counting()
    batcher = Batcher(online)

    async def one_after_another():
        first = await ask(batcher, ["a", "b"])
        second = await ask(batcher, ["ccc"])
        return first, second

    first, second = asyncio.run(one_after_another())
    assert online.calls == [2, 1]
    assert second.prediction.tolist() == [3.0]


@pytest.mark.parametrize("n", [1, 5])
def test_rows_cut_the_answers_of_one_request(n) -> None:
    whole = Counting().answer([f"u{k}" * (k + 1) for k in range(6)], ["i"] * 6, np.arange(6))
    part = whole.rows(1, 1 + n)
    assert part.prediction.tolist() == whole.prediction[1 : 1 + n].tolist()
    assert part.probabilities.shape == (n, 2)
