"""The tests' one way to wait for something that happens on its own: poll until it holds.

    rows = await eventually(lambda: count_rows(db), until=lambda n: n >= 10, what="10 rows", timeout=60)
    run = await eventually(lambda: h.runs_of(7), what="a run of job 7")

A failed wait is an `AssertionError` that says what was awaited, for how long and what was seen last.
(The executor harness's `Harness.until` waits on its collected events instead, without polling.)
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")


@overload
async def eventually(
    probe: Callable[[], Awaitable[T | None]],
    *,
    what: str,
    until: Callable[[T], object] = ...,
    timeout: float = ...,
    interval: float = ...,
) -> T: ...


@overload
async def eventually(
    probe: Callable[[], T | None],
    *,
    what: str,
    until: Callable[[T], object] = ...,
    timeout: float = ...,
    interval: float = ...,
) -> T: ...


async def eventually(
    probe: Callable[[], Any],
    *,
    what: str,
    until: Callable[[Any], object] = bool,
    timeout: float = 15.0,
    interval: float = 0.05,
) -> Any:
    """Call `probe` (sync or async) every `interval` seconds until its value passes `until` (by default:
    the value is truthy) and return that value; `None` never passes (nothing to see yet). Once `timeout`
    seconds have passed, a last call, then an `AssertionError` naming `what`, the timeout and the last
    value other than `None` that was seen."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if value is not None:
            if until(value):
                return value
            last = value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last seen: {last!r}")
        await asyncio.sleep(interval)
