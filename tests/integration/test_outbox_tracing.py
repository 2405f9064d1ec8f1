"""An outbox entry keeps the trace of what wrote it (shared/outbox.py `traceparents`): published at once or
relayed later, from a context of its own, each message goes out in its cause's trace."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared import tracing
from shared.contracts import Envelope, JobDeleted
from shared.contracts.catalog import JobDeletedData
from shared.mongo import MongoClient
from shared.outbox import Outbox, decode
from tests.integration.test_outbox import NOW, add
from tests.support.tracing import spans  # noqa: F401 - the fixture


class TracedBroker:
    """Records each message with the trace context it was published in."""

    def __init__(self) -> None:
        self.published: dict[str, str | None] = {}

    async def publish(self, message: Envelope) -> None:
        self.published[message.id] = tracing.current_traceparent()


def deleted(job_id: int) -> JobDeleted:
    return JobDeleted(source="test", subject=str(job_id), data=JobDeletedData(job_id=job_id))


@pytest.fixture
async def outbox(mongo: MongoClient, unique: str) -> AsyncIterator[Outbox]:
    box = Outbox(mongo[f"{unique}_outbox"]["outbox"])
    await box.ensure_indexes()
    yield box
    await mongo.drop_database(f"{unique}_outbox")


async def test_relayed_and_delivered_messages_are_published_in_the_trace_that_wrote_them(
    mongo: MongoClient, outbox: Outbox, spans: InMemorySpanExporter,  # noqa: F811
) -> None:  # fmt: skip
    assert tracing._provider is not None
    tracer = tracing._provider.get_tracer("t")
    with tracer.start_as_current_span("request A"):
        written_in_a = tracing.current_traceparent()
        entry_a = await add(mongo, outbox, [deleted(1), deleted(2)])
    untraced = await add(mongo, outbox, [deleted(3)])  # written outside any span
    broker = TracedBroker()
    assert await outbox.relay(broker, now=NOW) == 2  # the relay runs in no trace of its own
    one, two, three = (m.id for m in [*decode(await outbox.collection.find_one({"_id": entry_a})).messages,
                                       *decode(await outbox.collection.find_one({"_id": untraced})).messages])  # fmt: skip
    assert broker.published == {one: written_in_a, two: written_in_a, three: None}

    # Several causes in one entry (a fire's slots, a batch of run-now commands): each message its own.
    first, second = tracing.root_traceparent("slot 1"), tracing.root_traceparent("slot 2")
    messages = [deleted(4), deleted(5)]
    async with mongo.start_session() as session:
        entry = await session.with_transaction(
            lambda s: outbox.add(s, messages, now=NOW, traceparents=[first, second])
        )
    stored = decode(await outbox.collection.find_one({"_id": entry}))
    assert stored.traceparents == (first, second)
    broker = TracedBroker()
    assert await outbox.deliver(broker, [stored], ordered=False)
    assert broker.published == {messages[0].id: first, messages[1].id: second}
