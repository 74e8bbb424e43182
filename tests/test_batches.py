"""Lookups asked for together are fetched together (liveblog.batches), with no server: the
rules a join storm over many blogs relies on, each shown with the fetch a store would do."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from liveblog.batches import Batched


class Fetches:
    """A bulk lookup that records each call and can be held until opened."""

    def __init__(self, answer=lambda key: key.upper()):
        self.calls: list[list[str]] = []
        self.entered = asyncio.Event()
        self.open = asyncio.Event()
        self.open.set()
        self.answer = answer

    async def __call__(self, keys: list[str]) -> dict[str, str]:
        self.calls.append(keys)
        self.entered.set()
        await self.open.wait()
        return {key: self.answer(key) for key in keys}


async def test_lookups_asked_for_in_one_step_are_one_fetch_and_each_caller_gets_its_own():
    fetches = Fetches()
    batched = Batched(fetches)
    assert await asyncio.gather(*(batched.get(key) for key in ["a", "b", "a", "c"])) == ["A", "B", "A", "C"]
    assert fetches.calls == [["a", "b", "c"]]
    assert await batched.get("d") == "D"  # a later step: a fetch of its own
    assert fetches.calls[1:] == [["d"]]


async def test_a_failed_fetch_fails_every_caller_of_its_batch_and_the_next_batch_is_fetched_anew():
    def answer(key: str) -> str:
        raise ConnectionError("storage unavailable")

    fetches = Fetches(answer)
    batched = Batched(fetches)
    results = await asyncio.gather(batched.get("a"), batched.get("b"), return_exceptions=True)
    assert [type(result) for result in results] == [ConnectionError, ConnectionError]
    fetches.answer = str.upper
    assert await batched.get("a") == "A"
    assert len(fetches.calls) == 2


async def test_a_caller_that_leaves_stops_neither_the_fetch_nor_the_others_answers():
    fetches = Fetches()
    fetches.open.clear()
    batched = Batched(fetches)
    leaving = asyncio.create_task(batched.get("a"))
    staying = asyncio.create_task(batched.get("b"))
    await fetches.entered.wait()  # the batch's fetch is under way
    leaving.cancel()
    fetches.open.set()
    assert await staying == "B"
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert fetches.calls == [["a", "b"]]


async def test_closing_stops_a_fetch_under_way_and_its_callers_are_told_storage_went_away():
    """Closing is not the callers' cancellation: a reader waiting on its blog gets the error
    every caller handles (1012, 503), not a CancelledError that would leave it half-joined."""
    fetches = Fetches()
    fetches.open.clear()
    batched = Batched(fetches)
    waiting = asyncio.create_task(batched.get("a"))
    await fetches.entered.wait()
    await batched.aclose()
    with pytest.raises(RedisConnectionError):
        await waiting
    assert not waiting.cancelled()


async def test_a_fetch_that_leaves_a_key_out_fails_its_callers_instead_of_leaving_them_waiting():
    async def partial(keys: list[str]) -> dict[str, str]:
        return {"a": "A"}

    batched = Batched(partial)
    results = await asyncio.gather(batched.get("a"), batched.get("b"), return_exceptions=True)
    assert results[0] == "A" and isinstance(results[1], KeyError)
