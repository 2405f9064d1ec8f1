"""Tracing's plumbing (shared/tracing.py) without processes: off by default, the OTEL_* exporter names, the
ids in JSON log lines, a stored `traceparent` restored, a hand-made consumer span and a slot's own trace."""

from __future__ import annotations

import json
import logging

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared import tracing
from shared.logging import JsonFormatter
from tests.support.tracing import spans  # noqa: F401 - the fixture


def test_off_unless_an_exporter_is_named() -> None:
    assert tracing.exporters_configured({}) == []
    assert tracing.exporters_configured({"OTEL_TRACES_EXPORTER": "none"}) == []
    assert tracing.exporters_configured({"OTEL_TRACES_EXPORTER": "otlp, console"}) == ["otlp", "console"]
    assert tracing.exporters_configured({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}) == []
    with pytest.raises(SystemExit, match="zipkin"):
        tracing.exporters_configured({"OTEL_TRACES_EXPORTER": "zipkin"})
    assert not tracing.enabled() and tracing.configure_tracing("catalog") is None  # the tests' environment
    assert tracing.root_traceparent("schedule slot") is None
    with tracing.restored("00-" + "1" * 32 + "-" + "2" * 16 + "-01"):
        assert tracing.current_traceparent() is None  # off: nothing attached


def line(formatter: JsonFormatter) -> dict[str, object]:
    record = logging.makeLogRecord({"msg": "run finished", "levelname": "INFO", "name": "t"})
    result: dict[str, object] = json.loads(formatter.format(record))
    return result


def test_json_log_lines_carry_the_ids_of_the_span_in_progress(spans: InMemorySpanExporter) -> None:  # noqa: F811
    formatter = JsonFormatter("executor")
    assert "trace_id" not in line(formatter)
    assert tracing._provider is not None
    with tracing._provider.get_tracer("t").start_as_current_span("run") as span:
        logged = line(formatter)
    context = span.get_span_context()
    assert logged["trace_id"] == format(context.trace_id, "032x")
    assert logged["span_id"] == format(context.span_id, "016x")


def test_a_stored_traceparent_is_restored_and_a_consumer_span_joins_its_trace(
    spans: InMemorySpanExporter,  # noqa: F811
) -> None:
    slot = tracing.root_traceparent("schedule slot", **{"connect.run_id": "7.1"})
    assert slot is not None and tracing.current_traceparent() is None  # a new trace, not entered
    with tracing.restored(slot):
        assert tracing.current_traceparent() == slot
    assert tracing.current_traceparent() is None
    tracing.consumer_span("logsink.events process", {"traceparent": slot.encode(), "x-delivery-count": 1})
    root, consumer = spans.get_finished_spans()
    assert root.parent is None and root.attributes == {"connect.run_id": "7.1"}
    assert consumer.parent is not None and consumer.parent.span_id == root.context.span_id
    assert consumer.context.trace_id == root.context.trace_id
