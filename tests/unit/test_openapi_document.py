"""The catalog's OpenAPI document as a contract: stable operationIds, every operation's error answers
derived from what it is made of, and links that let schemathesis chain operations."""

from __future__ import annotations

import json
import os
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from services.catalog.api.errors import STATUS_BY_ERROR
from services.catalog.domain import require_confirmation
from services.catalog.errors import ConfirmationRequired
from services.catalog.main import build_app
from shared.settings import CommonSettings
from tests.conftest import TEST_SECRET_KEY

SNAPSHOT = Path(__file__).parent / "snapshots" / "openapi.operation_ids.json"
NOT_LISTENING = "mongodb://127.0.0.1:9/?directConnection=true"  # the document needs no database


@cache
def document() -> dict[str, Any]:
    common = CommonSettings.model_validate(
        {"MONGO_URL": NOT_LISTENING, "CONNECT_SECRET_KEY": TEST_SECRET_KEY}
    )
    return build_app(common).openapi()


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, methods in document()["paths"].items()
        for method, operation in methods.items()
    ]


def by_id() -> dict[str, tuple[str, dict[str, Any]]]:
    return {operation["operationId"]: (path, operation) for _, path, operation in operations()}


def errors_of(operation: dict[str, Any]) -> set[int]:
    return {int(code) for code in operation["responses"] if int(code) >= 400}


def test_operation_ids_match_the_committed_snapshot() -> None:
    current = {f"{method} {path}": operation["operationId"] for method, path, operation in operations()}
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(json.dumps(current, sort_keys=True, indent=2) + "\n", encoding="utf-8")

    assert json.loads(SNAPSHOT.read_text(encoding="utf-8")) == current, (
        "an operationId changed (clients generated from the document call them by it); if intended, "
        "rerun with UPDATE_SNAPSHOTS=1 and commit the new snapshot"
    )


def test_operation_ids_are_unique_readable_camel_case() -> None:
    ids = [operation["operationId"] for _, _, operation in operations()]

    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z]+(?:[A-Z][a-z]+)*", operation_id) for operation_id in ids), ids
    assert {"listJobs", "createJob", "runJob", "stopGroup", "revokeToken"} <= set(ids)


def test_every_error_answer_is_the_error_body() -> None:
    for method, path, operation in operations():
        for code, answer in operation["responses"].items():
            if int(code) >= 400:
                schema = answer["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (method, path, code)
                assert answer["description"], (method, path, code)
    error = document()["components"]["schemas"]["ErrorResponse"]
    assert error["properties"]["error"]["$ref"] == "#/components/schemas/ErrorBody"
    assert error["properties"]["errors"]["items"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert set(error["required"]) == {"error", "errors"}
    assert "HTTPValidationError" not in document()["components"]["schemas"]  # our 422 is ErrorResponse


def test_errors_follow_from_what_each_operation_is_made_of() -> None:
    for method, path, operation in operations():
        errors = errors_of(operation)
        where = f"{method} {path}: {sorted(errors)}"
        assert {401, 429, 503} <= errors, where  # every operation is authenticated and reads the database
        assert 428 not in errors and 500 not in errors, where
        assert ("requestBody" in operation) == (413 in errors), where
        if "requestBody" in operation:
            assert {400, 422} <= errors, where  # not text; invalid
        assert ("{" in path) == (404 in errors) or operation["operationId"] in {
            "createJob", "createTable", "createGroup", "deleteJobs",
        }, where  # fmt: skip
        assert (method != "GET") == (403 in errors) or operation["operationId"] == "listTokens", where


@pytest.mark.parametrize(
    ("operation_id", "expected"),
    [
        ("getRun", {401, 404, 429, 503}),  # any string is a path id to look up: nothing to refuse as invalid
        ("listJobs", {401, 422, 429, 503}),
        ("listTokens", {401, 403, 422, 429, 503}),  # admin only
        ("stopJob", {400, 401, 403, 404, 409, 422, 429, 503}),  # confirm
        ("deleteJobs", {400, 401, 403, 404, 409, 413, 422, 429, 503}),  # confirm in the body, ids
        # refusals are in each result, not the status; 409 only for an Idempotency-Key still in flight
        ("runJobs", {400, 401, 403, 409, 413, 422, 429, 503}),
        ("fetchHostKey", {400, 401, 403, 413, 422, 429, 503}),
        ("createToken", {400, 401, 403, 409, 413, 422, 429, 503}),  # 409: Idempotency-Key in flight
    ],
)
def test_error_answers_of_some_operations(operation_id: str, expected: set[int]) -> None:
    assert errors_of(by_id()[operation_id][1]) == expected


def test_a_missing_confirmation_is_a_400_with_its_own_code() -> None:
    with pytest.raises(ConfirmationRequired) as raised:
        require_confirmation(False, "Delete")

    assert next(status for cls, status in STATUS_BY_ERROR if isinstance(raised.value, cls)) == 400
    assert raised.value.code == "confirmation_required"
    assert "confirmation_required" in by_id()["deleteJob"][1]["responses"]["400"]["description"]


def test_429_and_401_document_their_headers() -> None:
    answers = by_id()["listJobs"][1]["responses"]

    assert "Retry-After" in answers["429"]["headers"]
    assert "WWW-Authenticate" in answers["401"]["headers"]


def links() -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for _, _, operation in operations():
        for code, answer in operation["responses"].items():
            for link in answer.get("links", {}).values():
                found.append((operation["operationId"], code, link))
    return found


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref", "")
    return document()["components"]["schemas"][ref.rsplit("/", 1)[-1]] if ref else schema


def test_links_name_existing_operations_their_path_parameter_and_a_field_of_the_answer() -> None:
    operations_by_id = by_id()
    for source, code, link in links():
        target_path, _ = operations_by_id[link["operationId"]]
        ((parameter, expression),) = link["parameters"].items()
        assert f"{{{parameter}}}" in target_path, (source, link)
        answer = operations_by_id[source][1]["responses"][code]
        properties = resolve(answer["content"]["application/json"]["schema"])["properties"]
        assert expression.removeprefix("$response.body#/") in properties, (source, link)


@pytest.mark.parametrize(
    ("source", "targets"),
    [
        ("createJob", {"getJob", "replaceJob", "patchJob", "deleteJob", "runJob", "stopJob", "copyJob"}),
        ("runJob", {"getRun", "getRunLogs", "getRunRejects", "getRunNotifications"}),
        ("createGroup", {"getGroup", "runGroup", "deleteGroup"}),
        ("runGroup", {"getGroupRun"}),
        ("createToken", {"revokeToken"}),
        ("createConnection", {"getConnection", "testConnection"}),
        ("createTable", {"getTable"}),
        ("createKey", {"getKey", "deleteKey"}),
        ("createChannel", {"getChannel", "deleteChannel"}),
    ],
)
def test_answers_that_create_link_to_the_operations_on_what_they_created(
    source: str, targets: set[str]
) -> None:
    linked = {link["operationId"] for from_, _, link in links() if from_ == source}

    assert targets <= linked
    assert "streamRunLogs" not in linked  # a live tail lasts until its run ends
