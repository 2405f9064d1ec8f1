"""OpenTelemetry tracing: one trace per run, from the API request (or slot, or trigger) to the logsink.

Off unless `OTEL_TRACES_EXPORTER` names an exporter (`otlp`: OTLP over HTTP/protobuf to
`OTEL_EXPORTER_OTLP_ENDPOINT`; `console`: spans as JSON on stderr); then every standard `OTEL_*`
variable applies (`OTEL_SERVICE_NAME`, default `connect-<service>`; `OTEL_RESOURCE_ATTRIBUTES`,
`OTEL_BSP_*`, `OTEL_TRACES_SAMPLER` …). Off, no SDK is imported and no middleware installed: the
only cost left is a context lookup per log line and per outbox entry.

The context travels in the W3C `traceparent` header: FastStream's telemetry middleware carries it in
every message the broker publishes and consumes, the logsink's own consumer reads it by hand
(`consumer_span`), and an outbox entry stores the `traceparent` of the transaction that wrote it, so a
relayed message joins the trace of the request that caused it (`restored`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from fastapi import FastAPI
    from faststream.rabbit import RabbitBroker
    from opentelemetry.sdk.trace import TracerProvider

logger = logging.getLogger(__name__)

EXPORTERS = ("otlp", "console")
NOT_TRACED_URLS = "healthz,readyz,metrics"  # probes and scrapes: no trace each
_PROPAGATOR = TraceContextTextMapPropagator()
_provider: TracerProvider | None = None


def exporters_configured(env: Mapping[str, str] = os.environ) -> list[str]:
    """The exporters `OTEL_TRACES_EXPORTER` names ([] when unset, `none`, or the SDK is disabled)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "none").split(",")]
    unknown = [n for n in names if n and n != "none" and n not in EXPORTERS]
    if unknown:
        raise SystemExit(
            f"OTEL_TRACES_EXPORTER: unknown exporter(s) {', '.join(unknown)} (one of {EXPORTERS})"
        )
    return [n for n in names if n in EXPORTERS]


def configure_tracing(service: str) -> TracerProvider | None:
    """The process's tracer provider, installed as the global one; None when tracing is off."""
    global _provider
    exporters = exporters_configured()
    if not exporters:
        return None
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    # OTEL_SERVICE_NAME (read by Resource.create) wins over Connect's default name.
    defaults = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: f"connect-{service}"}
    provider = TracerProvider(resource=Resource.create(defaults))
    for name in exporters:
        exporter: SpanExporter
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        else:
            exporter = ConsoleSpanExporter(service_name=service)
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _provider = provider
    logger.info("tracing on", extra={"exporters": ",".join(exporters)})
    return provider


def enabled() -> bool:
    return _provider is not None


def provider() -> TracerProvider | None:
    return _provider


def instrument_broker(broker: RabbitBroker, provider: TracerProvider | None) -> None:
    """FastStream's telemetry middleware: a span per publish and per consume, context in the headers."""
    if provider is None:
        return
    from faststream.rabbit.opentelemetry import RabbitTelemetryMiddleware

    broker.add_middleware(RabbitTelemetryMiddleware(tracer_provider=provider))


def instrument_app(app: FastAPI, provider: TracerProvider | None) -> None:
    """A server span per HTTP request (named by route template), the parent of what the request publishes."""
    if provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, excluded_urls=NOT_TRACED_URLS)


def shutdown() -> None:
    """Export what is buffered (a stopping process's last spans), then stop the exporters."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the span in progress, if one is (to store with an outbox entry)."""
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def ids() -> tuple[str, str] | None:
    """The current trace and span ids as hex (for the JSON logs), if a span is in progress."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return format(span_context.trace_id, "032x"), format(span_context.span_id, "016x")


@contextlib.contextmanager
def restored(traceparent: str | None) -> Iterator[None]:
    """Run the block in the context of a stored `traceparent` (an outbox entry's); as is without one."""
    if not traceparent or not enabled():
        yield
        return
    token = otel_context.attach(_PROPAGATOR.extract({"traceparent": traceparent}))
    try:
        yield
    finally:
        otel_context.detach(token)


@contextlib.asynccontextmanager
async def restored_async(traceparent: str | None) -> AsyncIterator[None]:
    """`restored` for an `async with` (a publish awaited in it)."""
    with restored(traceparent):
        yield


def root_traceparent(name: str, **attributes: str) -> str | None:
    """Start and end a new trace's root span (a schedule slot fired): its `traceparent`, None when off."""
    if _provider is None:
        return None
    span = _provider.get_tracer("connect").start_span(
        name, context=otel_context.Context(), attributes=attributes
    )
    span.end()
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent")


def consumer_span(name: str, headers: Mapping[str, Any] | None, **attributes: str) -> None:
    """Record a consumer span for a message consumed without FastStream (the logsink's ingest), as a
    child of the publisher's span carried in its `traceparent` header."""
    if _provider is None:
        return
    carrier = {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in (headers or {}).items()}
    parent = _PROPAGATOR.extract(carrier)
    span = _provider.get_tracer("connect").start_span(
        name, context=parent, kind=trace.SpanKind.CONSUMER, attributes=attributes
    )
    span.end()
