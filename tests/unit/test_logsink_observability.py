"""The dashboard and the alert rules only query metrics Connect defines (no drift from shared/metrics.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import generate_latest

from services.logsink.metrics import PrometheusIngestMetrics
from services.scheduler.domain import Outcome
from shared.metrics import create_metrics, executor_metrics, http_metrics, outbox_backlog, scheduler_metrics

DEPLOY = Path(__file__).parents[2] / "deploy"
SUFFIXES = ("_bucket", "_count", "_sum", "_created")


def defined_names() -> set[str]:
    """Every series some service registers (each registers its own, shared/metrics.py)."""
    metrics = create_metrics("test")
    registry = metrics.registry
    executor_metrics(registry)
    scheduler_metrics(registry, [o.value for o in Outcome])
    PrometheusIngestMetrics(metrics)
    http_metrics(registry)
    outbox_backlog(registry)
    text = generate_latest(registry).decode()
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}


def used_names(text: str) -> set[str]:
    return set(re.findall(r"\bconnect_[a-z_]+\b", text))


def base(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def test_dashboard_queries_only_defined_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "connect-dashboard.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
    used = {base(name) for name in used_names(exprs)}
    assert used, "the dashboard queries no Connect metric"
    assert used <= defined_names(), used - defined_names()


def test_dashboard_shows_the_logsink_and_every_issue_metric() -> None:
    text = (DEPLOY / "grafana" / "connect-dashboard.json").read_text()
    used = {base(name) for name in used_names(text)}
    for name in (
        "connect_runs_total", "connect_run_duration_seconds", "connect_runs_in_progress",
        "connect_records_processed_total", "connect_sftp_bytes_total", "connect_scheduler_fires_total",
        "connect_scheduler_fire_lag_seconds",
        "connect_logsink_events_total", "connect_logsink_batch_seconds",
    ):  # fmt: skip
        assert name in used, f"no panel shows {name}"


def test_alert_rules_use_only_defined_metrics() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    exprs = " ".join(r["expr"] for g in rules["groups"] for r in g["rules"])
    used = {base(name) for name in used_names(exprs)}
    assert used <= defined_names(), used - defined_names()


def test_ingest_metrics_count_by_bounded_event_type() -> None:
    metrics = create_metrics("logsink")
    ingest = PrometheusIngestMetrics(metrics)
    ingest.recorded("run.log", 3)
    ingest.recorded("run.log", 0)
    ingest.duplicates("run.finished", 1)
    ingest.batch_written(0.02)
    text = generate_latest(metrics.registry).decode()
    assert 'connect_logsink_events_total{type="run.log"} 3.0' in text
    assert 'connect_logsink_duplicates_total{type="run.finished"} 1.0' in text
    assert "connect_logsink_batch_seconds_count 1.0" in text


def test_notification_sends_are_counted_by_channel_kind_and_status_from_zero() -> None:
    metrics = PrometheusIngestMetrics(create_metrics("test"))
    before = generate_latest(metrics.metrics.registry).decode()
    assert 'connect_notifications_total{channel_kind="webhook",status="failed"} 0.0' in before
    assert 'connect_notifications_total{channel_kind="smtp",status="sent"} 0.0' in before
    metrics.notification("smtp", "sent")
    after = generate_latest(metrics.metrics.registry).decode()
    assert 'connect_notifications_total{channel_kind="smtp",status="sent"} 1.0' in after
