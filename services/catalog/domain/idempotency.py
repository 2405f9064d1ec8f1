"""`Idempotency-Key` on the POSTs that create or run (issue #19): the rules, free of I/O.

A caller names an attempt with a key of its own; the first answer is kept under (caller, key) for 24 h.
The same request again gets that answer and nothing is done twice; the key on another request is refused
(422); a retry while the first attempt still runs is told to wait (409, Retry-After); an attempt that
never answered (the catalog stopped mid-request) is never run again under its key (409, outcome unknown).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, urlencode

from services.catalog.errors import (
    IdempotencyKeyReused,
    InvalidIdempotencyKey,
    OutcomeUnknown,
    RequestInProgress,
)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
RETENTION = timedelta(hours=24)  # how long a first answer is given again
# Longer than a covered request takes (a run-now waits CATALOG_RUN_REQUEST_TIMEOUT): past it an attempt
# without answer was interrupted, and its outcome is unknown.
IN_FLIGHT_LIMIT = timedelta(seconds=60)
MAX_KEY_LENGTH = 255
# Answers that a retry could not change: 2xx and 4xx, but for "too slow" and "too many" (a retry may pass).
# A 5xx (a 503 when the scheduler did not answer: nothing was started) lets the retry run instead.
PASSING_REFUSALS = frozenset({408, 429})


@dataclass(frozen=True)
class Answer:
    """A response as it is given again: its status, content type and body."""

    status: int
    content_type: str | None
    body: bytes


@dataclass(frozen=True)
class Attempt:
    """One caller's request under one key, from the moment it is claimed; `answer` once it has one."""

    caller: str
    key: str
    fingerprint: str
    created_at: datetime
    answer: Answer | None = None

    @property
    def record_id(self) -> str:
        return record_id_of(self.caller, self.key)


def record_id_of(caller: str, key: str) -> str:
    """Keys are the caller's own: two callers with the same key never share an answer."""
    return hashlib.sha256(f"{caller}\0{key}".encode()).hexdigest()


def parse_key(value: str) -> str:
    """The key of a header value: 1-255 printable ASCII characters, bare (Stripe) or quoted as a structured
    field string (draft-ietf-httpapi-idempotency-key-header); `InvalidIdempotencyKey` otherwise."""
    key = value = value.strip(" \t")  # a header's surrounding whitespace is not part of it
    if len(value) >= 2 and value[0] == value[-1] == '"':
        key = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not all(" " <= char <= "~" for char in key):
        raise InvalidIdempotencyKey(
            f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters", field=HEADER
        )
    return key


def fingerprint(method: str, path: str, query: str, body: bytes) -> str:
    """What makes two requests the same one: method, path, query (its pairs ordered) and body (JSON compared
    by value, so key order and spacing do not matter; anything else byte for byte)."""
    query_text = urlencode(sorted(parse_qsl(query, keep_blank_values=True)))
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), query_text.encode(), _canonical(body)):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


def _canonical(body: bytes) -> bytes:
    try:
        value = json.loads(body)
    except ValueError:  # not JSON (nor UTF-8): the bytes as sent
        return body
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def is_expired(attempt: Attempt, now: datetime) -> bool:
    """Past its 24 h: as if never made (the TTL index removes it too, in its own time)."""
    return now - attempt.created_at >= RETENTION


def answer_of(kept: Attempt, fingerprint_: str, now: datetime) -> Answer:
    """The answer to give a request that found `kept` (not expired) under its key, or the refusal."""
    if kept.fingerprint != fingerprint_:
        raise IdempotencyKeyReused(
            f"this {HEADER} was used for another request (another path or body) in the last "
            f"{RETENTION.total_seconds() / 3600:.0f} h; use a new key for a new request",
            field=HEADER,
        )
    if kept.answer is not None:
        return kept.answer
    if now - kept.created_at < IN_FLIGHT_LIMIT:
        raise RequestInProgress(
            f"the first request with this {HEADER} is still being processed; retry shortly", field=HEADER
        )
    raise OutcomeUnknown(
        f"the first request with this {HEADER} never answered (interrupted), so whether it took effect is "
        "unknown; check (e.g. list the jobs or runs) before retrying with a new key",
        field=HEADER,
    )


def keeps_answer(status: int) -> bool:
    """Whether an answer is final for its key (given again), or the claim is released for a retry."""
    return 200 <= status < 500 and status not in PASSING_REFUSALS
