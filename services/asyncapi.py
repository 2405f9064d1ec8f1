"""The AsyncAPI document of the whole system: every service's consumers and what each publishes.

Generate it with `faststream docs gen services.asyncapi:docs --out docs/asyncapi.json` (`make asyncapi`);
a test fails when the committed document drifts from the code.
"""

from __future__ import annotations

import json
import os
from typing import Any

from faststream.specification import AsyncAPI

from services.dev.processes import SERVICES
from services.launch import build_service_app
from shared.metrics import package_version
from shared.settings import CommonSettings

DESCRIPTION = """Connect's messages over RabbitMQ. Exchanges: `connect.commands` (direct),
`connect.events` (topic), `connect.control` (fanout), `connect.triggers` (topic, public),
`connect.dlx` (dead letters). Every message is a CloudEvents-style JSON envelope whose `type`
carries its schema version."""


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


class _Docs:
    @property
    def schema(self) -> AsyncAPI:
        return AsyncAPI(*_brokers(), title="Connect", version=package_version(), description=DESCRIPTION)


docs = _Docs()


def document() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(docs.schema.to_specification().to_json())
    return result
