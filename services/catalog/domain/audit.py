"""The audit trail's rules, free of I/O: one entry per change, a diff of the fields, never a secret."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Kinds of record the trail names (`AuditEntry.kind`).
KINDS = ("job", "group", "table", "connection", "notification channel", "key", "token")
REDACTED = "***"
# A field whose name contains one of these never shows its value (matched in lower case, at any depth).
SECRET_MARKERS = ("password", "passphrase", "private_key", "secret", "token", "_encrypted", "signing")


def is_secret(name: str) -> bool:
    lowered = name.lower()
    return any(marker in lowered for marker in SECRET_MARKERS)


def redact(value: Any) -> Any:
    """`value` with every secret field's value replaced by `REDACTED`, at any depth."""
    if isinstance(value, Mapping):
        return {
            str(key).removesuffix("_encrypted"): REDACTED if is_secret(str(key)) else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value


def diff(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The changed fields, dotted (`spec.source.path`): `{"before": …, "after": …}` each, secrets redacted.

    A secret that changed shows as changed (both sides `REDACTED`); one that did not is not listed."""
    changes: dict[str, dict[str, Any]] = {}
    _walk("", before or {}, after or {}, changes)
    return changes


_MISSING = object()


def _walk(prefix: str, before: Any, after: Any, out: dict[str, dict[str, Any]]) -> None:
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        for key in sorted({*before, *after}, key=str):
            shown = str(key).removesuffix("_encrypted")  # a stored secret is named as the API names it
            name = f"{prefix}.{shown}" if prefix else shown
            old, new = before.get(key, _MISSING), after.get(key, _MISSING)
            if is_secret(str(key)):
                if old != new:
                    out[name] = {"before": _shown(old, REDACTED), "after": _shown(new, REDACTED)}
                continue
            _walk(name, old, new, out)
        return
    if before != after:
        out[prefix] = {"before": _shown(before, None), "after": _shown(after, None)}


def _shown(value: Any, secret: Any) -> Any:
    if value is _MISSING:
        return None
    return redact(value) if secret is None else secret


@dataclass(frozen=True)
class AuditEntry:
    """Who changed what, when: one per change, stored in the change's own transaction."""

    at: datetime
    actor: str  # the principal (token name), or "system" (expiry)
    kind: str  # one of `KINDS`
    item_id: str
    action: str  # created, updated, deleted, activated, deactivated, run-now, dry-run, stop, revoked…
    before_version: int | None = None
    after_version: int | None = None
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)  # e.g. the run id of a run-now


def entry(
    *,
    at: datetime,
    actor: str,
    kind: str,
    item_id: object,
    action: str,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    detail: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """An entry for a change from `before` to `after` (JSON forms; `None` when created / deleted)."""
    if kind not in KINDS:
        raise ValueError(f"unknown audit kind {kind!r}")

    def version(form: Mapping[str, Any] | None) -> int | None:
        found = None if form is None else form.get("version")
        return found if isinstance(found, int) else None

    return AuditEntry(
        at=at,
        actor=actor,
        kind=kind,
        item_id=str(item_id),
        action=action,
        before_version=version(before),
        after_version=version(after),
        changes=diff(before, after),
        detail=redact(dict(detail or {})),
    )


@dataclass(frozen=True)
class AuditQuery:
    kind: str | None = None
    item_id: str | None = None
    actor: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
