"""The AsyncAPI document of the whole system: every service's consumers and what each publishes.

Generate it with `faststream docs gen services.asyncapi:docs --out docs/asyncapi.json` (`make asyncapi`);
a test fails when the committed document drifts from the code. FastStream writes what it knows; the
rest is added here (`complete`): the server as variables (host, port, vhost), the CloudEvents content
type, each message's AMQP `type` (message binding) and the routing-key parameter of the public
`connect.triggers` channel.
"""

from __future__ import annotations

import json
import os
from typing import Any

from faststream.specification import AsyncAPI

from services.dev.processes import SERVICES
from services.launch import build_service_app
from shared.contracts import ALL_MESSAGES
from shared.contracts.cloudevents import STRUCTURED_CONTENT_TYPE
from shared.metrics import package_version
from shared.settings import CommonSettings

DESCRIPTION = """Connect's messages over RabbitMQ. Exchanges: `connect.commands` (direct),
`connect.events` (topic), `connect.control` (fanout), `connect.triggers` (topic, public),
`connect.dlx` (dead letters); every exchange and queue name takes the installation's
`CONNECT_AMQP_PREFIX` in front (empty by default). Every message is a CloudEvent 1.0 in the AMQP
binding's structured mode: content type `application/cloudevents+json`, the envelope (attributes and
`data`) as the JSON body, its `type` (also the AMQP `type` property) carrying the schema version;
persistent delivery. Public events for other systems: `RunFinished`, `GroupRunFinished`
(docs/events.md); public input: `TriggerFired` on `connect.triggers`."""

SERVER_NAME = "rabbitmq"
SERVER = {
    "host": "{host}:{port}",
    "pathname": "{vhost}",
    "protocol": "amqp",
    "protocolVersion": "0.9.1",
    "description": "The RabbitMQ of `AMQP_URL` (amqp://user:password@host:port/vhost).",
    "variables": {
        "host": {"default": "localhost", "description": "The broker's host name."},
        "port": {"default": "5672", "description": "The broker's AMQP port (5671 with TLS)."},
        "vhost": {"default": "/", "description": "The virtual host (RabbitMQ's default `/`)."},
    },
}
TRIGGER_PARAMETER = {
    "description": "The trigger's name, the `trigger` of the `on_event` schedules it starts: "
    "`^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$`.",
    "examples": ["crm.export-ready"],
}
TRIGGER_MESSAGE = (
    "Structured mode as shown; binary mode is accepted too: the attributes as `cloudEvents_specversion`, "
    "`cloudEvents_id`, `cloudEvents_type`, `cloudEvents_source` … application properties and the body "
    "the `data` alone, content type `application/json`."
)


def _brokers() -> list[Any]:
    # Building the apps connects to nothing; the URLs only have to be well formed.
    docs_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # any valid 32-byte key: no secret is read
    settings = CommonSettings.model_validate(
        {"MONGO_URL": "mongodb://docs.invalid:27017", "CONNECT_SECRET_KEY": docs_key}
    )
    # Each executor's control queue is named after it; the document shows a placeholder.
    previous = os.environ.get("EXECUTOR_EXECUTOR_ID")
    os.environ["EXECUTOR_EXECUTOR_ID"] = "EXECUTOR_ID"
    try:
        return [
            b for name in SERVICES for b in build_service_app(name, settings).state.runtime.documented_brokers
        ]
    finally:
        if previous is None:
            del os.environ["EXECUTOR_EXECUTOR_ID"]
        else:
            os.environ["EXECUTOR_EXECUTOR_ID"] = previous


def complete(generated: dict[str, Any]) -> dict[str, Any]:
    """What FastStream cannot write added to its document (see the module's docstring)."""
    text = json.dumps(generated).replace('"#/servers/development"', f'"#/servers/{SERVER_NAME}"')
    doc: dict[str, Any] = json.loads(text)
    doc["servers"] = {SERVER_NAME: SERVER}
    doc["defaultContentType"] = STRUCTURED_CONTENT_TYPE
    doc["channels"]["connect.triggers"]["parameters"] = {"trigger": TRIGGER_PARAMETER}
    doc["components"]["messages"]["connect.triggers:Message"]["description"] = TRIGGER_MESSAGE
    for message in doc["components"]["messages"].values():
        message["contentType"] = STRUCTURED_CONTENT_TYPE
        envelope = ENVELOPES.get(message["payload"].get("$ref", "").rpartition("/")[2])
        if envelope is not None:  # one message type: the AMQP `type` property names it
            kind = envelope.model_fields["type"].default
            message["bindings"] = {"amqp": {"messageType": kind, "bindingVersion": "0.3.0"}}
    return _in_name_order(doc)


def _in_name_order(doc: dict[str, Any]) -> dict[str, Any]:
    """Channels, operations and components sorted: FastStream's order varies from run to run."""
    for part in (doc, doc["components"]):
        for key in ("channels", "operations", "messages", "schemas"):
            if key in part:
                part[key] = dict(sorted(part[key].items()))
    return doc


ENVELOPES = {cls.__name__: cls for cls in ALL_MESSAGES}


class _Specification:
    """What `faststream docs gen` writes: the completed document."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def to_jsonable(self) -> dict[str, Any]:
        return self.document

    def to_json(self) -> str:
        return json.dumps(self.document)

    def to_yaml(self) -> str:
        import yaml

        return str(yaml.dump(self.document, sort_keys=False))


class _Schema:
    def to_specification(self) -> _Specification:
        generated = AsyncAPI(*_brokers(), title="Connect", version=package_version(), description=DESCRIPTION)
        return _Specification(complete(generated.to_specification().to_jsonable()))


class _Docs:
    @property
    def schema(self) -> _Schema:
        return _Schema()


docs = _Docs()


def document() -> dict[str, Any]:
    return docs.schema.to_specification().to_jsonable()
