"""The committed AsyncAPI document matches the code (regenerate with `make asyncapi`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from services.asyncapi import document
from shared.contracts import ALL_MESSAGES

COMMITTED = Path(__file__).parents[2] / "docs" / "asyncapi.json"


def test_committed_asyncapi_document_is_current() -> None:
    assert json.loads(COMMITTED.read_text()) == document(), "docs/asyncapi.json is stale: run `make asyncapi`"


def test_document_shows_every_message_type() -> None:
    text = COMMITTED.read_text()
    for message in ALL_MESSAGES:
        assert message.model_fields["type"].default in text, message.__name__


def committed() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(COMMITTED.read_text())
    return result


def test_the_public_triggers_channel_shows_its_exchange_and_routing_key_rule() -> None:
    doc = committed()
    channel = doc["channels"]["connect.triggers"]
    operation = doc["operations"]["connect.triggers"]

    assert channel["address"] == "{trigger}"
    assert channel["parameters"]["trigger"]["description"].endswith("`^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$`.")
    binding = channel["bindings"]["amqp"]
    assert binding["is"] == "routingKey"
    assert {k: binding["exchange"][k] for k in ("name", "type", "durable")} == {
        "name": "connect.triggers",
        "type": "topic",
        "durable": True,
    }
    assert "CONNECT_AMQP_PREFIX" in channel["description"]
    assert "Routing key: the trigger's name" in channel["description"]
    assert operation["action"] == "send" and operation["bindings"]["amqp"]["cc"] == ["{trigger}"]
    message = doc["components"]["messages"]["connect.triggers:Message"]
    assert message["payload"] == {"$ref": "#/components/schemas/TriggerFired"}
    assert "binary mode" in message["description"]


def test_the_server_is_given_by_variables() -> None:
    doc = committed()
    (server,) = doc["servers"].values()

    assert (server["host"], server["pathname"], server["protocol"]) == ("{host}:{port}", "{vhost}", "amqp")
    assert {name: v["default"] for name, v in server["variables"].items()} == {
        "host": "localhost",
        "port": "5672",
        "vhost": "/",
    }
    assert "CONNECT_AMQP_PREFIX" in doc["info"]["description"]


def test_every_message_is_sent_persistent_as_a_structured_cloudevent() -> None:
    doc = committed()
    sends = [op for op in doc["operations"].values() if op["action"] == "send"]
    by_schema = {m.__name__: m.model_fields["type"].default for m in ALL_MESSAGES}

    assert sends and all(op["bindings"]["amqp"]["deliveryMode"] == 2 for op in sends)
    assert doc["defaultContentType"] == "application/cloudevents+json"
    for name, message in doc["components"]["messages"].items():
        assert message["contentType"] == "application/cloudevents+json", name
        schema = message["payload"].get("$ref", "").rpartition("/")[2]
        if schema in by_schema:
            assert message["bindings"]["amqp"]["messageType"] == by_schema[schema], name
