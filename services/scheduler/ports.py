from __future__ import annotations

from typing import Protocol

from shared.contracts import Envelope


class EventPublisher(Protocol):
    async def publish(self, message: Envelope) -> None: ...
