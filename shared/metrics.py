"""Prometheus metrics: one registry per service process; each series only in the service that produces it.

Every service: `connect_build_info`, `connect_event_loop_lag_seconds`, `connect_dead_letters_total` (and
FastStream's message metrics). The executor's run series (`executor_metrics`), the scheduler's fires
(`scheduler_metrics`), the logsink's ingest (services/logsink/metrics.py), the catalog's HTTP API
(`http_metrics`, shared/http_metrics.py) and the outbox backlog of the catalog and the scheduler
(`outbox_backlog`) are registered by those services alone.

Names follow `connect_<thing>_<unit>`, one name per fact; labels are bounded (job type, status, trigger,
outcome, direction, event type, route template) — never run ids or job names. A labelled counter starts
with every known label value at 0, so `increase()` sees its first event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from shared.contracts.jobs import JobType
from shared.contracts.runs import RunStatus, Trigger

DURATION_BUCKETS = (0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400)
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
BATCH_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
LOOP_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# Why a service dead-lettered a message (the bounded `reason` label of connect_dead_letters_total).
DEAD_LETTER_REASONS = ("undecodable", "invalid", "permanent", "delivery_limit")
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# What an executor counts of a run's records, by job type (`records_processed()`, `on_records`).
RECORD_OUTCOMES = {
    JobType.IMPORT: ("inserted", "updated", "rejected"),
    JobType.EXPORT: ("exported", "rejected"),
}
FINAL_STATUSES = tuple(s for s in RunStatus if s.terminal)
SFTP_DIRECTIONS = ("read", "write")


def package_version() -> str:
    try:
        return version("audience-connect")
    except PackageNotFoundError:
        return "0+unknown"


@dataclass(frozen=True)
class Metrics:
    """Every service's own: the registry, its event loop's lag, its dead letters."""

    registry: CollectorRegistry
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
    return Metrics(registry=r, event_loop_lag_seconds=loop_lag, dead_letters_total=dead_letters)


@dataclass(frozen=True)
class ExecutorMetrics:
    runs_total: Counter
    run_duration_seconds: Histogram
    runs_in_progress: Gauge
    records_processed_total: Counter
    sftp_bytes_total: Counter


def executor_metrics(registry: CollectorRegistry) -> ExecutorMetrics:
    r = registry
    metrics = ExecutorMetrics(
        runs_total=Counter(
            "connect_runs_total", "Finished runs", ["job_type", "status", "trigger"], registry=r
        ),
        run_duration_seconds=Histogram(
            "connect_run_duration_seconds", "Run duration", ["job_type"], buckets=DURATION_BUCKETS, registry=r
        ),
        runs_in_progress=Gauge("connect_runs_in_progress", "Runs being executed by this process", registry=r),
        records_processed_total=Counter(
            "connect_records_processed_total",
            "Records processed (import: inserted, updated, rejected; export: exported, rejected)",
            ["job_type", "outcome"],
            registry=r,
        ),
        sftp_bytes_total=Counter("connect_sftp_bytes_total", "SFTP bytes", ["direction"], registry=r),
    )
    for job_type, outcomes in RECORD_OUTCOMES.items():
        metrics.run_duration_seconds.labels(job_type.value)
        for outcome in outcomes:
            metrics.records_processed_total.labels(job_type.value, outcome)
        for status in FINAL_STATUSES:
            for trigger in Trigger:
                metrics.runs_total.labels(job_type.value, status.value, trigger.value)
    for direction in SFTP_DIRECTIONS:
        metrics.sftp_bytes_total.labels(direction)
    return metrics


@dataclass(frozen=True)
class SchedulerMetrics:
    fires_total: Counter  # by outcome; `outcome="missed"`: slots skipped beyond the catch-up window
    fire_lag_seconds: Histogram


def scheduler_metrics(registry: CollectorRegistry, outcomes: Sequence[str]) -> SchedulerMetrics:
    """`outcomes`: every fire outcome (services/scheduler/domain/fires.py `Outcome`), each counted from 0."""
    fires = Counter(
        "connect_scheduler_fires_total",
        "Schedule slots by outcome (requested, overlap, inactive, expired, missed: beyond the catch-up window)",
        ["outcome"],
        registry=registry,
    )
    for outcome in outcomes:
        fires.labels(outcome)
    lag = Histogram(
        "connect_scheduler_fire_lag_seconds",
        "Delay from a slot's time to its RunRequested being published",
        buckets=LAG_BUCKETS,
        registry=registry,
    )
    return SchedulerMetrics(fires_total=fires, fire_lag_seconds=lag)


def outbox_backlog(registry: CollectorRegistry) -> Gauge:
    """Outbox entries not yet published (set by each relay pass): a backlog that grows means a broker
    refusing or a relay that stopped."""
    return Gauge(
        "connect_outbox_backlog",
        "Outbox entries not published yet (as of the last relay pass)",
        registry=registry,
    )


@dataclass(frozen=True)
class HttpMetrics:
    requests_total: Counter
    request_duration_seconds: Histogram


def http_metrics(registry: CollectorRegistry) -> HttpMetrics:
    return HttpMetrics(
        requests_total=Counter(
            "connect_http_requests_total",
            "REST API requests by route template, method and status code",
            ["route", "method", "status"],
            registry=registry,
        ),
        request_duration_seconds=Histogram(
            "connect_http_request_duration_seconds",
            "REST API request latency (to the end of the response body) by route template and method",
            ["route", "method"],
            buckets=HTTP_BUCKETS,
            registry=registry,
        ),
    )
