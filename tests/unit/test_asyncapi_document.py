"""The committed AsyncAPI document matches the code (regenerate with `make asyncapi`)."""

from __future__ import annotations

import json
from pathlib import Path

from services.asyncapi import document
from shared.contracts import ALL_MESSAGES

COMMITTED = Path(__file__).parents[2] / "docs" / "asyncapi.json"


def test_committed_asyncapi_document_is_current() -> None:
    assert json.loads(COMMITTED.read_text()) == document(), "docs/asyncapi.json is stale: run `make asyncapi`"


def test_document_shows_every_message_type() -> None:
    text = COMMITTED.read_text()
    for message in ALL_MESSAGES:
        assert message.model_fields["type"].default in text, message.__name__
