"""Predict requests that arrive together are answered together (dynamic batching).

A 1-query request costs about as much as a 100-query one inside `OnlineForecaster.answer`: two
SQLite reads and one pass of the head, mostly fixed costs. Under concurrency, the requests whose
handlers reach the batcher in the same turn of the event loop are answered by one call, so those
costs are paid once per turn instead of once per request. Alone, a request waits for nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from starcast.serving.online import Answers, OnlineForecaster


@dataclass
class _Asked:
    users: list[str]
    items: list[str]
    ts: np.ndarray
    answered: asyncio.Future


class Batcher:
    def __init__(self, online: OnlineForecaster) -> None:
        self.online = online
        self._waiting: list[_Asked] = []

    async def answer(self, users: list[str], items: list[str], ts: np.ndarray) -> Answers:
        """`OnlineForecaster.answer` for these queries, shared with the requests beside them."""
        loop = asyncio.get_running_loop()
        if not self._waiting:  # the first of this turn: answer all of them after the turn
            loop.call_soon(self._answer_waiting)
        asked = _Asked(users, items, ts, loop.create_future())
        self._waiting.append(asked)
        return await asked.answered

    def _answer_waiting(self) -> None:
        batch, self._waiting = self._waiting, []
        try:
            answers = self.online.answer([u for a in batch for u in a.users],
                                         [i for a in batch for i in a.items],
                                         np.concatenate([a.ts for a in batch]))
        except Exception:  # noqa: BLE001 -- each request on its own: only its own error
            for asked in batch:
                self._answer_alone(asked)
            return
        start = 0
        for asked in batch:
            asked.answered.set_result(answers.rows(start, start + len(asked.users)))
            start += len(asked.users)

    def _answer_alone(self, asked: _Asked) -> None:
        try:
            asked.answered.set_result(self.online.answer(asked.users, asked.items, asked.ts))
        except Exception as err:  # noqa: BLE001 -- handed to the request that asked
            asked.answered.set_exception(err)
