"""The ingest consumer's acknowledgements: one `multiple` ack per settled prefix, never past a pending one."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from pamqp.commands import Basic

from services.logsink.consumer import EventConsumer
from services.logsink.settlement import AckWindow, Settlement
from shared.contracts import RunLog
from shared.contracts.runs import RunLogData
from shared.errors import RetryableError


class FakeChannel:
    def __init__(self) -> None:
        self.is_closed = False
        self.frames: list[tuple[str, int, bool]] = []

    async def basic_ack(self, delivery_tag: int, multiple: bool = False, wait: bool = True) -> None:
        self.frames.append(("ack", delivery_tag, multiple))

    async def basic_nack(
        self, delivery_tag: int, multiple: bool = False, requeue: bool = True, wait: bool = True
    ) -> None:
        assert requeue
        self.frames.append(("nack", delivery_tag, multiple))


def window_of(channel: FakeChannel, tags: range) -> AckWindow:
    window = AckWindow(channel)  # type: ignore[arg-type]
    for tag in tags:
        window.received(tag)
    return window


async def test_a_written_batch_is_acknowledged_with_one_frame() -> None:
    channel = FakeChannel()
    window = window_of(channel, range(1, 6))
    for tag in range(1, 6):
        window.written(tag)
    await window.acknowledge()
    assert channel.frames == [("ack", 5, True)]
    assert window.unsettled == 0


async def test_nothing_is_acknowledged_past_a_delivery_still_waiting_for_its_batch() -> None:
    channel = FakeChannel()
    window = window_of(channel, range(1, 7))
    for tag in (1, 2, 4, 5, 6):  # 3 is in a batch not yet written (or being dead-lettered)
        window.written(tag)
    await window.acknowledge()
    assert channel.frames == [("ack", 2, True)]

    window.written(3)
    await window.acknowledge()
    assert channel.frames == [("ack", 2, True), ("ack", 6, True)]


async def test_a_requeued_delivery_is_nacked_at_once_and_skipped_by_the_ack() -> None:
    channel = FakeChannel()
    window = window_of(channel, range(1, 5))
    await window.requeue(2)
    window.written(1)
    window.written(3)
    await window.acknowledge()
    # One ack up to 3 covers 1 and 3; 2 is no longer outstanding (its nack went first); 4 is pending.
    assert channel.frames == [("nack", 2, False), ("ack", 3, True)]
    window.written(4)
    await window.acknowledge()
    assert channel.frames[-1] == ("ack", 4, True)


async def test_a_prefix_ending_in_a_nack_is_acknowledged_up_to_its_last_written_delivery() -> None:
    channel = FakeChannel()
    window = window_of(channel, range(1, 4))
    window.written(1)
    window.written(2)
    await window.requeue(3)
    await window.acknowledge()
    assert channel.frames == [("nack", 3, False), ("ack", 2, True)]
    assert window.unsettled == 0


async def test_a_closed_channel_acknowledges_nothing() -> None:
    channel = FakeChannel()
    window = window_of(channel, range(1, 3))
    channel.is_closed = True  # the broker redelivers what this channel held
    window.written(1)
    window.written(2)
    await window.acknowledge()
    await window.requeue(3)
    assert channel.frames == []


class HeldBatches:
    """The logsink service as the consumer sees it: holds each accepted receipt until told to settle."""

    def __init__(self) -> None:
        self.receipts: list[Any] = []

    def accept(self, planned: object, receipt: object) -> None:
        self.receipts.append(receipt)


class NoDeliveryMetrics:
    def consumed(self, handler: str, count: int, status: str) -> None:
        return None


def delivery(tag: int, deliveries_before: int, message_id: str) -> Any:
    headers = {"x-delivery-count": deliveries_before} if deliveries_before else {}
    properties = Basic.Properties(headers=headers, message_id=message_id, message_type="connect.run.log.v1")
    body = RunLog(
        source="t", data=RunLogData(run_id="7.1", seq=tag, message="line", at=datetime.now(UTC))
    ).model_dump_json()
    return SimpleNamespace(
        delivery_tag=tag, exchange="events", routing_key="run.log", body=body.encode(),
        header=SimpleNamespace(properties=properties),
    )  # fmt: skip


async def test_a_failed_batch_dead_letters_its_messages_at_their_last_delivery_and_requeues_the_rest() -> (
    None
):
    dead: list[tuple[str, str, dict[str, Any]]] = []

    async def dead_letter(body: bytes, reason: str, kind: str, original: dict[str, Any]) -> None:
        dead.append((reason, kind, original))

    service, channel = HeldBatches(), FakeChannel()
    settlement = Settlement("logsink.events", dead_letter, NoDeliveryMetrics())
    consumer = EventConsumer(
        "amqp://unused", "logsink.events", service.accept, settlement, prefetch=10, delivery_limit=5
    )
    window = AckWindow(channel)  # type: ignore[arg-type]
    await consumer._on_message(window, delivery(1, 4, "m-early"))  # one more redelivery is allowed
    await consumer._on_message(window, delivery(2, 5, "m-last"))  # the queue would dead-letter it next
    await settlement.settle(service.receipts, RetryableError("database unreachable"))
    await settlement.finish()

    assert [(reason, kind, original["message_id"]) for reason, kind, original in dead] == [
        ("delivery limit reached after 6 deliveries: RetryableError: database unreachable", "delivery_limit",
         "m-last"),
    ]  # fmt: skip
    assert channel.frames == [("nack", 1, False), ("ack", 2, True)]  # requeued; dead-lettered, then acked
