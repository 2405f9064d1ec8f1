"""Logsink app factory: wiring only."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from services.logsink.config import LogsinkSettings
from services.logsink.consumer import EventConsumer
from services.logsink.delivery import Delivery, DeliveryPolicy
from services.logsink.metrics import PrometheusIngestMetrics
from services.logsink.notification_store import MongoNotifications
from services.logsink.notifier import NotificationMaker
from services.logsink.repository import MongoRunRecords
from services.logsink.senders import SmtpSender, WebhookSender
from services.logsink.service import LogsinkService
from services.logsink.settlement import Settlement
from services.logsink.subscribers import register_subscribers
from shared.runtime import ServiceRuntime, create_http_app
from shared.secrets import optional_secret_box
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
    notifications = MongoNotifications(runtime.mongo, runtime.db_name, common.database("catalog"))
    webhooks, mails = WebhookSender(settings.notify_timeout), SmtpSender(settings.notify_timeout)
    delivery = Delivery(
        notifications,
        {"webhook": webhooks, "smtp": mails},
        optional_secret_box(common),  # without a key a notification fails, saying so; runs are recorded
        metrics,
        DeliveryPolicy(
            attempts=settings.notify_attempts,
            backoff=settings.notify_backoff,
            max_backoff=settings.notify_max_backoff,
            lease=settings.notify_lease,
            poll_interval=settings.notify_poll_interval,
            concurrency=settings.notify_concurrency,
        ),
    )
    maker = NotificationMaker(notifications, api_url=settings.api_url, on_created=delivery.wake)
    service = LogsinkService(
        records,
        metrics,
        settle=settlement.settle,
        batch_size=settings.batch_size,
        flush_interval=settings.flush_interval,
        writes_in_flight=settings.writes_in_flight,
        notify=maker.make,
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

    async def stop_sending() -> None:
        await delivery.stop()
        await webhooks.close()

    # The batcher runs before consuming starts; the topology is declared before either.
    runtime.on_start += [
        records.ensure_indexes,
        notifications.ensure_indexes,
        service.start,
        consumer.start,
        delivery.start,
    ]
    runtime.on_drain.append(drain)
    runtime.on_stop.append(stop_sending)
    app = create_http_app(runtime, title="Connect logsink")
    app.state.consumer = consumer
    return app
