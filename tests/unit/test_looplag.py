"""The event-loop lag monitor: a held loop is measured, and lands in `connect_event_loop_lag_seconds`."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import generate_latest

from shared.looplag import LoopLagMonitor
from shared.metrics import LOOP_LAG_BUCKETS, create_metrics


async def test_a_held_loop_is_observed_as_lag_of_about_the_time_it_was_held() -> None:
    lags: list[float] = []
    watching, held = asyncio.Event(), asyncio.Event()

    def observe(lag: float) -> None:
        lags.append(lag)
        watching.set()
        if lag >= 0.25:
            held.set()

    monitor = LoopLagMonitor(observe, interval=0.01)
    monitor.start()
    try:
        await asyncio.wait_for(watching.wait(), timeout=5)
        time.sleep(0.3)  # holds the loop on purpose: what CPU-bound work on the loop does
        await asyncio.wait_for(held.wait(), timeout=5)
    finally:
        await monitor.stop()
    assert 0.25 <= monitor.max_lag < 5
    assert all(lag >= 0 for lag in lags)
    assert not monitor.running


async def test_stop_ends_the_task_and_start_twice_keeps_one() -> None:
    seen = asyncio.Event()
    monitor = LoopLagMonitor(lambda lag: seen.set(), interval=0.01)
    monitor.start()
    monitor.start()
    await asyncio.wait_for(seen.wait(), timeout=5)
    tasks = [t for t in asyncio.all_tasks() if t.get_name() == "loop-lag-monitor"]
    assert len(tasks) == 1
    await monitor.stop()
    assert tasks[0].done() and not monitor.running
    await monitor.stop()  # idempotent


def test_lag_is_never_negative_and_the_interval_must_be_positive() -> None:
    lags: list[float] = []
    monitor = LoopLagMonitor(lags.append)
    monitor.record(-0.002)  # woke up early: a timer's granularity, not a lag
    assert lags == [0.0]
    with pytest.raises(ValueError):
        LoopLagMonitor(lags.append, interval=0)


def test_the_histogram_is_exported_per_service_from_the_start_with_buckets_from_1ms_to_10s() -> None:
    metrics = create_metrics("logsink")
    text = generate_latest(metrics.registry).decode()
    assert "# TYPE connect_event_loop_lag_seconds histogram" in text
    assert 'connect_event_loop_lag_seconds_bucket{le="0.001",service="logsink"} 0.0' in text
    assert 'connect_event_loop_lag_seconds_bucket{le="10.0",service="logsink"} 0.0' in text
    assert LOOP_LAG_BUCKETS[0] == 0.001 and LOOP_LAG_BUCKETS[-1] == 10

    monitor = LoopLagMonitor(metrics.event_loop_lag_seconds.labels("logsink").observe)
    monitor.record(0.003)
    monitor.record(1.5)
    sample = metrics.registry.get_sample_value
    labels = {"service": "logsink"}
    assert sample("connect_event_loop_lag_seconds_bucket", {**labels, "le": "0.0025"}) == 0
    assert sample("connect_event_loop_lag_seconds_bucket", {**labels, "le": "0.005"}) == 1
    assert sample("connect_event_loop_lag_seconds_bucket", {**labels, "le": "1.0"}) == 1
    assert sample("connect_event_loop_lag_seconds_count", labels) == 2
    assert monitor.max_lag == 1.5
