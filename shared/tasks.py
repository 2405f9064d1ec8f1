"""Background loops that run beside a service's consumers (outbox relay, lease reaper, flushers)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)


class PeriodicTask:
    """Calls `action` every `interval` seconds until stopped; an error is logged, never fatal."""

    def __init__(self, name: str, interval: float, action: Callable[[], Awaitable[object]]) -> None:
        self.name = name
        self.interval = interval
        self.action = action
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.action()
            except Exception:
                logger.exception("periodic task failed", extra={"task": self.name})
