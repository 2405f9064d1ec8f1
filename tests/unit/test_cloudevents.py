"""The CloudEvents AMQP binding rules (shared/contracts/cloudevents.py): which mode a message is in, and
the envelope a binary-mode message stands for."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from shared.contracts import TriggerFired
from shared.contracts.cloudevents import binary_attributes, is_binary, is_structured, structured_from_binary

DATA = {"name": "crm.export-ready", "idempotency_key": "k1", "params": {"file": "a.csv"}}
HEADERS = {"cloudEvents_specversion": "1.0", "cloudEvents_id": "e1", "cloudEvents_type": "connect.trigger.fired.v1",
           "cloudEvents_source": "crm", "traceparent": "00-ab-cd-01"}  # fmt: skip


@pytest.mark.parametrize(
    ("content_type", "structured"),
    [
        ("application/cloudevents+json", True),
        ("application/cloudevents+json; charset=utf-8", True),
        ("Application/CloudEvents+JSON", True),
        ("application/json", False),
        ("application/cloudevents-batch+json", False),
        (None, False),
    ],
)
def test_structured_mode_is_told_by_the_content_type(content_type: str | None, structured: bool) -> None:
    assert is_structured(content_type) is structured


def test_binary_attributes_are_the_prefixed_properties_only() -> None:
    headers = {**HEADERS, "cloudEvents:subject": b"crm.export-ready"}

    assert binary_attributes(headers) == {
        "specversion": "1.0",
        "id": "e1",
        "type": "connect.trigger.fired.v1",
        "source": "crm",
        "subject": "crm.export-ready",
    }
    assert is_binary(headers)
    assert not is_binary({"cloudEvents_id": "e1"})  # no specversion: not a CloudEvent
    assert not is_binary(None)


def test_a_binary_message_stands_for_the_structured_envelope() -> None:
    at = datetime(2026, 3, 1, 2, 15, tzinfo=UTC)  # AMQP carries `time` as a timestamp
    document = structured_from_binary(
        json.dumps(DATA).encode(), "application/json", {**HEADERS, "cloudEvents_time": at}
    )

    event = TriggerFired.model_validate(document)
    assert (event.id, event.source, event.time, event.datacontenttype) == (
        "e1",
        "crm",
        at,
        "application/json",
    )
    assert event.data.model_dump() == DATA


def test_a_binary_message_without_content_type_carries_json_data() -> None:
    document = structured_from_binary(json.dumps(DATA).encode(), None, HEADERS)

    assert document["datacontenttype"] == "application/json" and document["data"] == DATA


@pytest.mark.parametrize(
    ("body", "content_type"), [(b"name=x", "text/plain"), (b"not json {", "application/json")]
)
def test_a_binary_message_whose_data_is_not_json_is_refused(body: bytes, content_type: str) -> None:
    with pytest.raises(ValueError):
        structured_from_binary(body, content_type, HEADERS)
