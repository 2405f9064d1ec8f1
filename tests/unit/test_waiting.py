"""The tests' wait helper: what it returns, and what a timed-out wait says."""

from __future__ import annotations

import pytest

from tests.support.waiting import eventually


async def test_the_first_truthy_value_is_returned_from_a_sync_or_an_async_probe() -> None:
    calls = iter([0, [], None, [3]])
    assert await eventually(lambda: next(calls), what="a list", interval=0) == [3]

    counts = iter(range(1, 10))

    async def grows() -> int:
        return next(counts)

    assert await eventually(grows, until=lambda n: n >= 3, what="three", interval=0) == 3


async def test_a_timeout_names_what_was_awaited_and_the_last_value_seen() -> None:
    seen = iter([{"ended": False, "n": 1}, {"ended": False, "n": 2}])
    with pytest.raises(AssertionError) as failed:
        await eventually(
            lambda: next(seen, None), until=lambda r: r["ended"], what="the run", timeout=0.1, interval=0.01
        )
    message = str(failed.value)
    assert "the run" in message and "0.1s" in message
    assert "{'ended': False, 'n': 2}" in message  # the last value seen (None is nothing seen)
