"""Prometheus metrics: one registry per service process, the same metric names in every service.

Names follow `connect_<thing>_<unit>`; labels are bounded (job type, status, trigger, outcome,
direction, event type) — never run ids or job names. FastStream's middleware adds message metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

DURATION_BUCKETS = (0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400)
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
BATCH_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
LOOP_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# Why a service dead-lettered a message (the bounded `reason` label of connect_dead_letters_total).
DEAD_LETTER_REASONS = ("undecodable", "invalid", "permanent", "delivery_limit")


def package_version() -> str:
    try:
        return version("audience-connect")
    except PackageNotFoundError:
        return "0+unknown"


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    runs_total: Counter
    run_duration_seconds: Histogram
    runs_in_progress: Gauge
    records_processed_total: Counter
    sftp_bytes_total: Counter
    scheduler_fires_total: Counter
    scheduler_fire_lag_seconds: Histogram
    scheduler_missed_slots_total: Counter
    logsink_events_total: Counter
    logsink_batch_seconds: Histogram
    logsink_duplicates_total: Counter
    event_loop_lag_seconds: Histogram
    dead_letters_total: Counter

    def dead_lettered(self, service: str, reason: str) -> None:
        self.dead_letters_total.labels(service, reason).inc()


def create_metrics(service: str) -> Metrics:
    registry = CollectorRegistry()
    Info("connect_build", "Connect build information", registry=registry).info(
        {"version": package_version(), "service": service}
    )
    r = registry
    loop_lag = Histogram(
        "connect_event_loop_lag_seconds",
        "How late the event loop ran a periodic wake-up (time it was held by other work)",
        ["service"],
        buckets=LOOP_LAG_BUCKETS,
        registry=r,
    )
    loop_lag.labels(service)  # exported from the start, zero until the monitor observes
    dead_letters = Counter(
        "connect_dead_letters_total",
        "Messages this service sent to the dead-letter queue, by reason "
        "(undecodable, invalid, permanent, delivery_limit)",
        ["service", "reason"],
        registry=r,
    )
    for reason in DEAD_LETTER_REASONS:
        dead_letters.labels(service, reason)  # zero from the start, so increase() sees the first one
    return Metrics(
        registry=r,
        runs_total=Counter(
            "connect_runs_total", "Finished runs", ["job_type", "status", "trigger"], registry=r
        ),
        run_duration_seconds=Histogram(
            "connect_run_duration_seconds", "Run duration", ["job_type"], buckets=DURATION_BUCKETS, registry=r
        ),
        runs_in_progress=Gauge("connect_runs_in_progress", "Runs being executed by this process", registry=r),
        records_processed_total=Counter(
            "connect_records_processed_total",
            "Records processed (outcome: inserted, updated, rejected, exported)",
            ["job_type", "outcome"],
            registry=r,
        ),
        sftp_bytes_total=Counter("connect_sftp_bytes_total", "SFTP bytes", ["direction"], registry=r),
        scheduler_fires_total=Counter(
            "connect_scheduler_fires_total", "Schedule slots by outcome", ["outcome"], registry=r
        ),
        scheduler_fire_lag_seconds=Histogram(
            "connect_scheduler_fire_lag_seconds",
            "Delay from a slot's time to its RunRequested being published",
            buckets=LAG_BUCKETS,
            registry=r,
        ),
        scheduler_missed_slots_total=Counter(
            "connect_scheduler_missed_slots_total",
            "Slots skipped as missed beyond the catch-up window",
            registry=r,
        ),
        logsink_events_total=Counter(
            "connect_logsink_events_total", "Events recorded by the logsink", ["type"], registry=r
        ),
        logsink_batch_seconds=Histogram(
            "connect_logsink_batch_seconds",
            "Time to write one ingest batch",
            buckets=BATCH_BUCKETS,
            registry=r,
        ),
        logsink_duplicates_total=Counter(
            "connect_logsink_duplicates_total",
            "Events the logsink did not apply: already recorded (redeliveries, duplicates) or refused as late (an older attempt's start, a second end), by type",
            ["type"],
            registry=r,
        ),
        event_loop_lag_seconds=loop_lag,
        dead_letters_total=dead_letters,
    )
