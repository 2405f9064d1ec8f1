"""The rules of an `Idempotency-Key` (issue #19): which keys, which requests are the same, which answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.catalog.domain.idempotency import (
    IN_FLIGHT_LIMIT,
    RETENTION,
    Answer,
    Attempt,
    answer_of,
    fingerprint,
    is_expired,
    keeps_answer,
    parse_key,
)
from services.catalog.errors import (
    IdempotencyKeyReused,
    InvalidIdempotencyKey,
    OutcomeUnknown,
    RequestInProgress,
)

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("abc", "abc"),
        ('"abc"', "abc"),
        ("  a b  ", "a b"),
        ('"a\\"b"', 'a"b'),
        ("x" * 255, "x" * 255),
        ('"', '"'),
    ],
)
def test_a_key_is_bare_or_a_quoted_string(value: str, key: str) -> None:
    assert parse_key(value) == key


@pytest.mark.parametrize("value", ["", "   ", '""', "x" * 256, "clé", "a\tb", "a\x00b", "\x7f"])
def test_other_keys_are_refused_naming_the_header(value: str) -> None:
    with pytest.raises(InvalidIdempotencyKey) as refused:
        parse_key(value)
    assert refused.value.field == "Idempotency-Key"


def test_the_same_request_has_the_same_fingerprint() -> None:
    body = b'{"name": "a", "spec": {"kind": "import", "x": [1, 2]}}'
    same = b'{"spec":{"x":[1,2],"kind":"import"},"name":"a"}'
    assert fingerprint("POST", "/api/v1/jobs", "", body) == fingerprint("post", "/api/v1/jobs", "", same)
    assert fingerprint("POST", "/p", "b=2&a=1", b"") == fingerprint("POST", "/p", "a=1&b=2", b"")


@pytest.mark.parametrize(
    "other",
    [
        ("POST", "/api/v1/jobs/2/run", "", b""),
        ("POST", "/api/v1/jobs/1/run", "confirm=true", b""),
        ("POST", "/api/v1/jobs/1/run", "", b"{}"),
        ("PUT", "/api/v1/jobs/1/run", "", b""),
    ],
)
def test_another_method_path_query_or_body_is_another_request(other: tuple[str, str, str, bytes]) -> None:
    assert fingerprint("POST", "/api/v1/jobs/1/run", "", b"") != fingerprint(*other)


def test_a_body_that_is_not_json_counts_byte_for_byte() -> None:
    assert fingerprint("POST", "/p", "", b"\xff{") != fingerprint("POST", "/p", "", b"\xff{ ")
    # Parts are length-prefixed: moving bytes from the path into the query is not the same request.
    assert fingerprint("POST", "/pa", "", b"") != fingerprint("POST", "/p", "a", b"")


def attempt(age: timedelta, answer: Answer | None = None, fingerprint_: str = "f") -> Attempt:
    return Attempt("operator-user", "k", fingerprint_, NOW - age, answer)


def test_a_kept_answer_is_given_again_for_the_same_request() -> None:
    answer = Answer(202, "application/json", b'{"run_id": "1.1"}')
    assert answer_of(attempt(timedelta(hours=23), answer), "f", NOW) == answer


def test_another_request_under_the_key_is_refused_even_while_the_first_runs() -> None:
    for kept in (attempt(timedelta(seconds=1)), attempt(timedelta(hours=1), Answer(201, None, b""))):
        with pytest.raises(IdempotencyKeyReused):
            answer_of(kept, "other", NOW)


def test_an_attempt_without_answer_is_in_progress_then_of_unknown_outcome() -> None:
    with pytest.raises(RequestInProgress) as waiting:
        answer_of(attempt(IN_FLIGHT_LIMIT - timedelta(milliseconds=1)), "f", NOW)
    assert waiting.value.retry_after == 1
    with pytest.raises(OutcomeUnknown):
        answer_of(attempt(IN_FLIGHT_LIMIT), "f", NOW)


def test_an_attempt_expires_after_24_hours() -> None:
    assert not is_expired(attempt(RETENTION - timedelta(milliseconds=1)), NOW)
    assert is_expired(attempt(RETENTION), NOW)


@pytest.mark.parametrize(("status", "kept"), [(200, True), (201, True), (202, True), (404, True), (409, True),
                                              (422, True), (408, False), (429, False), (500, False), (503, False)])  # fmt: skip
def test_final_answers_are_kept_passing_failures_released(status: int, kept: bool) -> None:
    assert keeps_answer(status) is kept


def test_keys_are_each_callers_own() -> None:
    mine, theirs = Attempt("a", "k", "f", NOW), Attempt("b", "k", "f", NOW)
    assert mine.record_id != theirs.record_id
