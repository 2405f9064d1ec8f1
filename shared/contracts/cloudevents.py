"""How a Connect message travels in AMQP: the CloudEvents AMQP protocol binding (pure rules, no I/O).

Connect publishes every message in the binding's **structured mode**: the whole envelope (the
CloudEvents attributes and `data`) is the body, JSON, with the content type
`application/cloudevents+json`. What it consumes may also come in **binary mode** (the attributes as
`cloudEvents_*` application properties, the body only the `data`, its content type the data's) or, as
before the binding was followed, as the structured envelope with content type `application/json`.
https://github.com/cloudevents/spec/blob/main/cloudevents/bindings/amqp-protocol-binding.md
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
# The binding's prefix of attribute properties; `cloudEvents:` is the spelling of its first release.
BINARY_PREFIXES = ("cloudEvents_", "cloudEvents:")
DEFAULT_DATA_CONTENT_TYPE = "application/json"


def media_type(content_type: str | None) -> str:
    """`application/cloudevents+json; charset=utf-8` → `application/cloudevents+json`."""
    return (content_type or "").split(";")[0].strip().lower()


def is_structured(content_type: str | None) -> bool:
    return media_type(content_type) == STRUCTURED_CONTENT_TYPE


def binary_attributes(headers: Mapping[str, Any] | None) -> dict[str, Any]:
    """The CloudEvents attributes a binary-mode message carries as application properties."""
    found: dict[str, Any] = {}
    for name, value in (headers or {}).items():
        for prefix in BINARY_PREFIXES:
            if name.startswith(prefix):
                found[name.removeprefix(prefix)] = value.decode() if isinstance(value, bytes) else value
    return found


def is_binary(headers: Mapping[str, Any] | None) -> bool:
    """A binary-mode message: `specversion` is the one attribute every CloudEvent carries."""
    return "specversion" in binary_attributes(headers)


def structured_from_binary(
    body: bytes, content_type: str | None, headers: Mapping[str, Any]
) -> dict[str, Any]:
    """The envelope a binary-mode message stands for: its attributes, and its body as `data`.

    Connect's `data` is JSON: a body of another content type cannot be a Connect message (ValueError).
    """
    data_type = media_type(content_type) or DEFAULT_DATA_CONTENT_TYPE
    if data_type != DEFAULT_DATA_CONTENT_TYPE and not data_type.endswith("+json"):
        raise ValueError(f"a binary-mode CloudEvent's data must be JSON, not {data_type}")
    return {**binary_attributes(headers), "datacontenttype": data_type, "data": json.loads(body)}
