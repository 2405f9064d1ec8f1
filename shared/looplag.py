"""Event-loop lag: how late a periodic sleep wakes up, observed into a histogram.

A loop held by CPU-bound work (or by a blocking call) delays every task on it — message handlers,
lease heartbeats, other runs' starts. The monitor sleeps `interval` seconds again and again; the time
beyond `interval` until it runs again is the lag every other task suffered meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL = 0.1
WARN_AFTER = 1.0  # a lag this long is logged: something held the loop


class LoopLagMonitor:
    """A task on the running loop that reports each wake-up's lateness to `observe` (seconds)."""

    def __init__(self, observe: Callable[[float], None], *, interval: float = DEFAULT_INTERVAL) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.observe = observe
        self.interval = interval
        self.max_lag = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._watch(), name="loop-lag-monitor")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.interval)
            self.record(loop.time() - before - self.interval)

    def record(self, lag: float) -> None:
        lag = max(lag, 0.0)
        self.max_lag = max(self.max_lag, lag)
        self.observe(lag)
        if lag >= WARN_AFTER:
            logger.warning("event loop was held for %.2fs", lag, extra={"lag_seconds": round(lag, 3)})
