"""The CloudEvents-style envelope every Connect message travels in.

Each message type is a frozen model with a literal `type` that carries its schema version
(`connect.run.requested.v1`). Within a version fields are only ever added, so consumers ignore
unknown fields; a breaking change is a new type. On the wire each travels as a structured-mode
CloudEvent (`shared/contracts/cloudevents.py`, docs/events.md).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar
from uuid import uuid4

from pydantic import BaseModel, ConfigDict, Field


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_message_id() -> str:
    return uuid4().hex


class Frozen(BaseModel):
    """Base of message payloads: immutable, tolerant of fields added later in the same version."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class Envelope(Frozen):
    """CloudEvents 1.0 attributes (structured mode) around a typed `data` payload."""

    routing_key: ClassVar[str] = ""
    # Which exchange the message travels on: "events" (topic), "commands" (direct) or "control" (fanout).
    exchange_kind: ClassVar[str] = "events"

    specversion: str = "1.0"
    id: str = Field(default_factory=new_message_id, description="Unique message id (idempotency key).")
    type: str
    source: str = Field(description="The service that produced the message, e.g. `connect/scheduler`.")
    time: datetime = Field(default_factory=utcnow)
    subject: str | None = Field(default=None, description="What the message is about, e.g. a run id.")
    datacontenttype: str = "application/json"
