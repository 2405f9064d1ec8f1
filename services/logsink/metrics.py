"""The logsink's Prometheus metrics (on the process registry of `shared.metrics`)."""

from __future__ import annotations

from faststream.prometheus.container import MetricsContainer
from prometheus_client import Counter

from shared.metrics import Metrics

BROKER = "rabbitmq"
CHANNEL_KINDS = ("smtp", "webhook", "unknown")
NOTIFICATION_STATUSES = ("sent", "retried", "failed")


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

    def notification(self, channel_kind: str, status: str) -> None:
        self.notifications_total.labels(channel_kind, status).inc()

    def consumed(self, handler: str, count: int, status: str) -> None:
        labels = {"app_name": self.app_name, "broker": BROKER, "handler": handler}
        self.faststream.received_messages_total.labels(**labels).inc(count)
        self.faststream.received_processed_messages_total.labels(**labels, status=status).inc(count)

    def recorded(self, kind: str, count: int) -> None:
        if count > 0:
            self.metrics.logsink_events_total.labels(type=kind).inc(count)

    def duplicates(self, kind: str, count: int) -> None:
        if count > 0:
            self.metrics.logsink_duplicates_total.labels(type=kind).inc(count)

    def batch_written(self, seconds: float) -> None:
        self.metrics.logsink_batch_seconds.observe(seconds)
