"""Logsink app factory: wiring only."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from services.logsink.config import LogsinkSettings
from services.logsink.consumer import EventConsumer
from services.logsink.metrics import PrometheusIngestMetrics
from services.logsink.repository import MongoRunRecords
from services.logsink.service import LogsinkService
from services.logsink.settlement import Settlement
from services.logsink.subscribers import register_subscribers
from shared.runtime import ServiceRuntime, create_http_app
from shared.settings import CommonSettings


def build_app(common: CommonSettings | None = None, settings: LogsinkSettings | None = None) -> FastAPI:
    common = common or CommonSettings()
    settings = settings or LogsinkSettings()
    runtime = ServiceRuntime.create("logsink", common, prefetch=settings.prefetch)
    records = MongoRunRecords(runtime.mongo, runtime.db_name, log_retention_days=settings.log_retention_days)
    metrics = PrometheusIngestMetrics(runtime.metrics)
    queue = runtime.topology.logsink_events.name

    async def dead_letter(body: bytes, reason: str, kind: str, original: dict[str, Any]) -> None:
        await runtime.publisher.dead_letter(
            body, reason=reason, source_queue=queue, kind=kind, original=original
        )

    settlement = Settlement(queue, dead_letter, metrics)
    service = LogsinkService(
        records,
        metrics,
        settle=settlement.settle,
        batch_size=settings.batch_size,
        flush_interval=settings.flush_interval,
        writes_in_flight=settings.writes_in_flight,
    )
    consumer = EventConsumer(
        common.amqp_url,
        queue,
        service.accept,
        settlement,
        prefetch=settings.prefetch,
        delivery_limit=runtime.topology.delivery_limit,
    )
    register_subscribers(runtime)  # for the AsyncAPI document; `consumer` consumes the queue

    async def drain() -> None:
        # No new deliveries; the last batches are written and acknowledged; then the channel closes.
        await consumer.stop_consuming()
        await service.stop()
        await consumer.close()

    # The batcher runs before consuming starts; the topology is declared before either.
    runtime.on_start += [records.ensure_indexes, service.start, consumer.start]
    runtime.on_drain.append(drain)
    app = create_http_app(runtime, title="Connect logsink")
    app.state.consumer = consumer
    return app
