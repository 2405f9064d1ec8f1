"""The logsink's Prometheus metrics (on the process registry of `shared.metrics`)."""

from __future__ import annotations

from faststream.prometheus.container import MetricsContainer
from prometheus_client import Counter, Histogram

from shared.contracts import (
    GroupRunFinished,
    GroupRunStarted,
    RunFinished,
    RunLog,
    RunProgress,
    RunRequested,
    RunStarted,
)
from shared.metrics import BATCH_BUCKETS, Metrics

BROKER = "rabbitmq"
CHANNEL_KINDS = ("smtp", "webhook", "unknown")
NOTIFICATION_STATUSES = ("sent", "retried", "failed")
# The event types the logsink records (services/logsink/domain.py `plan`): the bounded `type` label.
EVENT_TYPES = tuple(
    m.routing_key
    for m in (RunRequested, RunStarted, RunProgress, RunLog, RunFinished, GroupRunStarted, GroupRunFinished)
)


class PrometheusIngestMetrics:
    def __init__(self, metrics: Metrics, *, app_name: str = "connect-logsink") -> None:
        self.metrics = metrics
        self.app_name = app_name
        # FastStream's message metrics, on the same collectors its broker middleware records into: the
        # logsink's own consumer of `logsink.events` counts its messages where FastStream's would.
        self.faststream = MetricsContainer(metrics.registry, custom_label_names=())
        self.notifications_total = Counter(
            "connect_notifications_total",
            "Notification sends by channel kind and result (sent, retried: to be sent again, failed: given up)",
            ["channel_kind", "status"],
            registry=metrics.registry,
        )
        for kind in CHANNEL_KINDS:  # known labels at 0, so a rate is defined before the first send
            for status in NOTIFICATION_STATUSES:
                self.notifications_total.labels(kind, status)
        r = metrics.registry
        self.events_total = Counter(
            "connect_logsink_events_total", "Events recorded by the logsink", ["type"], registry=r
        )
        self.batch_seconds = Histogram(
            "connect_logsink_batch_seconds",
            "Time to write one ingest batch",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.duplicates_total = Counter(
            "connect_logsink_duplicates_total",
            "Events the logsink did not apply: already recorded (redeliveries, duplicates) or refused as late "
            "(an older attempt's start, a second end), by type",
            ["type"],
            registry=r,
        )
        for kind in EVENT_TYPES:
            self.events_total.labels(kind)
            self.duplicates_total.labels(kind)

    def notification(self, channel_kind: str, status: str) -> None:
        self.notifications_total.labels(channel_kind, status).inc()

    def consumed(self, handler: str, count: int, status: str) -> None:
        labels = {"app_name": self.app_name, "broker": BROKER, "handler": handler}
        self.faststream.received_messages_total.labels(**labels).inc(count)
        self.faststream.received_processed_messages_total.labels(**labels, status=status).inc(count)

    def recorded(self, kind: str, count: int) -> None:
        if count > 0:
            self.events_total.labels(type=kind).inc(count)

    def duplicates(self, kind: str, count: int) -> None:
        if count > 0:
            self.duplicates_total.labels(type=kind).inc(count)

    def batch_written(self, seconds: float) -> None:
        self.batch_seconds.observe(seconds)
