"""What every service process is made of: broker, topology, database, metrics and an HTTP face.

Each service's `main.py` builds a `ServiceRuntime`, registers its subscribers on the broker and
serves `create_http_app(...)` with uvicorn. The HTTP app's lifespan starts and stops everything in
order, so SIGTERM (uvicorn's shutdown) stops consuming, lets in-flight handlers finish within the
graceful timeout and closes the connections.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI, Response
from faststream.rabbit import RabbitBroker, RabbitQueue
from faststream.rabbit.subscriber.usecase import RabbitSubscriber
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared import tracing
from shared.contracts import Envelope
from shared.looplag import LoopLagMonitor
from shared.messaging import Publisher, create_broker, permanent_error_middleware
from shared.metrics import Metrics, create_metrics
from shared.mongo import MongoClient, create_client, ping, wait_for
from shared.settings import CommonSettings
from shared.topology import Topology, declare_topology

logger = logging.getLogger(__name__)

Hook = Callable[[], Awaitable[None]]


@dataclass
class ServiceRuntime:
    service: str
    settings: CommonSettings
    topology: Topology
    broker: RabbitBroker
    mongo: MongoClient
    metrics: Metrics
    publisher: Publisher
    on_start: list[Hook] = field(default_factory=list)
    on_drain: list[Hook] = field(default_factory=list)  # after consuming stops, before the broker closes
    on_stop: list[Hook] = field(default_factory=list)
    loop_lag: LoopLagMonitor | None = None
    traced: bool = False  # OpenTelemetry on (shared/tracing.py)
    # Consumers the AsyncAPI document shows but FastStream does not run (see `documents_consuming`).
    documentation: RabbitBroker | None = None

    @classmethod
    def create(cls, service: str, settings: CommonSettings, *, prefetch: int) -> ServiceRuntime:
        if not settings.mongo_url:
            raise SystemExit("MONGO_URL is not set (use `connect dev` to run with the embedded database)")
        metrics = create_metrics(service)
        tracer_provider = tracing.configure_tracing(service)  # None unless OTEL_TRACES_EXPORTER names one
        broker = create_broker(
            settings.amqp_url,
            service=service,
            registry=metrics.registry,
            prefetch=prefetch,
            graceful_timeout=settings.graceful_timeout,
        )
        topology = Topology(prefix=settings.amqp_prefix)
        publisher = Publisher(
            broker,
            topology,
            count_dead_letter=lambda reason: metrics.dead_lettered(service, reason),
            content_type=settings.message_content_type,
        )
        tracing.instrument_broker(broker, tracer_provider)
        broker.add_middleware(permanent_error_middleware(publisher))
        return cls(
            service=service,
            settings=settings,
            topology=topology,
            broker=broker,
            mongo=create_client(settings.mongo_url),
            metrics=metrics,
            publisher=publisher,
            traced=tracer_provider is not None,
        )

    def documents_publishing(self, *messages: type[Envelope]) -> None:
        """Declare what this service publishes, so the AsyncAPI document shows it."""
        for message in messages:
            self.broker.publisher(
                exchange=self.topology.exchange_for(message.exchange_kind),
                routing_key=message.routing_key,
                schema=message,
                title=f"{self.service}:{message.model_fields['type'].default}",
                description=(message.__doc__ or "").strip() or None,
                persist=True,  # as `Publisher` sends every message
            )

    def documents_published_by_others(
        self, message: type[Envelope], *, routing_key: str, title: str, description: str
    ) -> None:
        """Declare a message other systems publish for this service, so the AsyncAPI document shows it
        (on the documentation broker: nothing here publishes it)."""
        self._documentation().publisher(
            exchange=self.topology.exchange_for(message.exchange_kind),
            routing_key=routing_key,
            schema=message,
            title=title,
            description=description,
            persist=True,
        )

    def documents_consuming(self, queue: RabbitQueue, title: str) -> RabbitSubscriber:
        """A subscriber of `queue` for the AsyncAPI document only, for a queue this service consumes by
        its own means: it lives on a broker that is never connected, so nothing consumes the queue twice."""
        return self._documentation().subscriber(queue, title=title)

    def _documentation(self) -> RabbitBroker:
        if self.documentation is None:
            self.documentation = RabbitBroker(self.settings.amqp_url)
        return self.documentation

    @property
    def documented_brokers(self) -> list[RabbitBroker]:
        """Every broker the AsyncAPI document is built from: the one that runs, and the documentation's."""
        return [self.broker] + ([self.documentation] if self.documentation is not None else [])

    @property
    def db_name(self) -> str:
        return self.settings.database(self.service)

    async def start(self) -> None:
        if self.loop_lag is None:
            self.loop_lag = LoopLagMonitor(self.metrics.event_loop_lag_seconds.labels(self.service).observe)
        self.loop_lag.start()  # from the first moment: a held loop delays everything this service does
        await wait_for(self.mongo)
        await self.broker.connect()
        await declare_topology(self.broker, self.topology)
        for hook in self.on_start:
            await hook()
        await self.broker.start()
        logger.info("service started")

    async def stop(self) -> None:
        logger.info("service stopping")
        for subscriber in self.broker.subscribers:
            await subscriber.stop()  # no new deliveries; waits for handlers in progress
        for hook in self.on_drain:
            await hook()
        await self.publisher.close()  # requests still waiting fail now instead of at their timeout
        await self.broker.stop()
        for hook in reversed(self.on_stop):
            await hook()
        await self.mongo.close()
        if self.loop_lag is not None:
            await self.loop_lag.stop()
        tracing.shutdown()  # the last spans exported before the process ends

    async def ready(self) -> dict[str, bool]:
        broker_ok, db_ok = await asyncio.gather(self.broker.ping(timeout=2.0), ping(self.mongo))
        return {"broker": bool(broker_ok), "database": db_ok}


def create_http_app(runtime: ServiceRuntime, *, title: str, **fastapi_kwargs: object) -> FastAPI:
    """FastAPI app with /healthz, /readyz and /metrics whose lifespan runs the service."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title=title, lifespan=lifespan, **fastapi_kwargs)  # type: ignore[arg-type]
    app.state.runtime = runtime
    tracing.instrument_app(app, tracing.provider() if runtime.traced else None)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(response: Response) -> dict[str, object]:
        checks = await runtime.ready()
        ready = all(checks.values())
        response.status_code = 200 if ready else 503
        return {"status": "ready" if ready else "not ready", "checks": checks}

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
