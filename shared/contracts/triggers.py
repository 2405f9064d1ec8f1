"""The public trigger contract: what other systems publish to start on-event jobs and groups.

Publish to the topic exchange `connect.triggers` (prefixed by `CONNECT_AMQP_PREFIX`) with the trigger's
name as routing key, persistent delivery, as a CloudEvent: structured mode (this envelope as the JSON body,
content type `application/cloudevents+json`) or binary mode (`cloudEvents_*` properties, the `data` as an
`application/json` body); docs/scheduling.md, "Triggers". Every active job or group whose schedule is
`on_event` with that trigger runs once per distinct `idempotency_key`.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from shared.contracts.envelope import Envelope, Frozen
from shared.contracts.jobs import TRIGGER_NAME


class TriggerData(Frozen):
    name: str = Field(pattern=TRIGGER_NAME, description="The trigger's name (also the routing key).")
    idempotency_key: str = Field(min_length=1, max_length=200, description="One run per distinct key.")
    params: dict[str, str] = Field(
        default_factory=dict, description="Optional parameters, passed to the runs."
    )


class TriggerFired(Envelope):
    """Published by other systems on `connect.triggers` (routing key = trigger name)."""

    exchange_kind: ClassVar[str] = "triggers"
    type: Literal["connect.trigger.fired.v1"] = "connect.trigger.fired.v1"
    data: TriggerData
