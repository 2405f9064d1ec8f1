"""`deliver_inline`: the channel's reader hands each delivery to the consumer itself."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest

from services.logsink.consumer import deliver_inline


class ReaderChannel:
    """What `deliver_inline` uses of an aiormq channel: its frame readers and its consumers."""

    def __init__(self) -> None:
        self.consumers: dict[str, Any] = {"ctag": object()}
        self.read: list[str] = []

    async def _Channel__get_content_header(self) -> str:  # noqa: N802 - aiormq's mangled name
        self.read.append("header")
        return "header"

    async def _read_content(self, frame: Any, header: str) -> Any:
        self.read.append("body")
        return SimpleNamespace(delivery_tag=frame.delivery_tag, header=header)

    async def _on_deliver_frame(self, frame: Any) -> None:
        raise AssertionError("aiormq's own delivery path (a task per message) was used")


async def test_each_delivery_reaches_receive_in_order() -> None:
    channel, received = ReaderChannel(), []
    deliver_inline(channel, lambda message: received.append(message.delivery_tag))  # type: ignore[arg-type]
    for tag in (1, 2, 3):
        await channel._on_deliver_frame(SimpleNamespace(consumer_tag="ctag", delivery_tag=tag))
    assert received == [1, 2, 3]
    assert channel.read == ["header", "body"] * 3


async def test_a_cancelled_consumer_gets_nothing_but_its_frames_are_read() -> None:
    channel, received = ReaderChannel(), []
    deliver_inline(channel, lambda message: received.append(message))  # type: ignore[arg-type]
    channel.consumers.clear()
    await channel._on_deliver_frame(SimpleNamespace(consumer_tag="ctag", delivery_tag=1))
    assert received == []
    assert channel.read == ["header", "body"]  # the next frame read is the next delivery's


async def test_a_failing_receive_does_not_stop_the_reader(caplog: pytest.LogCaptureFixture) -> None:
    channel = ReaderChannel()

    def receive(message: Any) -> None:
        raise RuntimeError("a bug")

    deliver_inline(channel, receive)  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR):
        await channel._on_deliver_frame(SimpleNamespace(consumer_tag="ctag", delivery_tag=1))
    assert "could not receive a delivery" in caplog.text
