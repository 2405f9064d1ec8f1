"""The public events (`PUBLIC_EVENTS`, docs/events.md) change only as their compatibility rule allows:
within a version only optional fields are added. The committed snapshot is the last published schema of
each; a compatible change passes and is recorded with UPDATE_SNAPSHOTS=1, a breaking one fails."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from shared.contracts import PUBLIC_EVENTS, Envelope
from tests.support.schema_compat import breaking_changes

SNAPSHOT = Path(__file__).parent / "snapshots" / "public_events.schema.json"
EVENTS_DOC = Path(__file__).parents[2] / "docs" / "events.md"


def type_of(cls: type[Envelope]) -> str:
    default = cls.model_fields["type"].default
    assert isinstance(default, str)
    return default


def current_schemas() -> dict[str, Any]:
    schemas = {type_of(cls): cls.model_json_schema() for cls in PUBLIC_EVENTS}
    return json.loads(json.dumps(schemas))  # tuples become lists, as in the file


def test_public_events_change_only_compatibly() -> None:
    committed = json.loads(SNAPSHOT.read_text(encoding="utf-8")) if SNAPSHOT.exists() else {}
    schemas = current_schemas()

    problems = [f"{kind} is no longer a public event" for kind in committed if kind not in schemas]
    for kind, schema in schemas.items():
        problems += [
            f"{kind}: {problem}" for problem in breaking_changes(committed.get(kind, schema), schema)
        ]
    assert not problems, (
        "a public event changed incompatibly; within a version only optional fields may be added, a "
        "breaking change is a new version (a new `type`, `.v2`):\n" + "\n".join(problems)
    )
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(json.dumps(schemas, sort_keys=True, indent=2) + "\n", encoding="utf-8")
        committed = schemas
    assert set(committed) == set(schemas), "a new public event: rerun with UPDATE_SNAPSHOTS=1"


def test_public_events_travel_on_the_events_exchange_under_their_documented_keys() -> None:
    text = EVENTS_DOC.read_text(encoding="utf-8")
    for cls in PUBLIC_EVENTS:
        assert cls.exchange_kind == "events"
        assert f"`{cls.routing_key}`" in text and f"`{type_of(cls)}`" in text, cls.__name__


def test_docs_describe_every_field_of_the_public_events() -> None:
    text = EVENTS_DOC.read_text(encoding="utf-8")
    for cls in PUBLIC_EVENTS:
        data = cls.model_fields["data"].annotation
        assert data is not None
        for name in data.model_fields:
            assert f"`{name}`" in text, f"{cls.__name__}.data.{name} is not described in docs/events.md"
