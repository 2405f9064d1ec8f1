"""The OpenAPI document as a contract: stable operationIds, each operation's real error answers, and links
from the answers that create something to the operations on it (schemathesis's stateful phase follows them).

Error statuses are derived from what a route is made of — its role dependency (401, 403, 429), a body (413,
422, 400 when not text), a path id (404), parameters that can be invalid (422), a confirmation (400) —
plus `CONFLICTS` and `IDS_IN_BODY` for what only the service knows. Every route can answer 503: the
database, the broker or the scheduler did not answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic.json_schema import models_json_schema

from services.catalog.api.deps import RequiredRole
from services.catalog.domain import Role
from services.catalog.schemas import ErrorResponse

ERROR_DESCRIPTIONS = {
    401: "No token, or an invalid, expired or revoked one.",
    403: "The token's role is too low (or a console request that changes something lacks `X-CSRF-Token`).",
    404: "It does not exist; `field` names the id.",
    409: "A conflict with the current state: a name taken, a stale `version`, a job running or not, "
    "run now refused.",
    413: "The request body is larger than the catalog accepts (`CATALOG_MAX_BODY_BYTES`).",
    422: "Invalid input; `field` names the first offending field.",
    429: "Too many failed tokens from this client: wait `Retry-After` seconds.",
    503: "A dependency (database, broker, scheduler) did not answer in time; try again later.",
}
BAD_REQUEST_BODY = "A body that is not text (not UTF-8); JSON that is not well formed is a 422."
BAD_REQUEST_CONFIRM = "A confirmation is missing (`confirmation_required`): repeat with `confirm=true`."
BAD_REQUEST_HOST = "The host cannot be reached or offers no host key."
ERROR_HEADERS = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "`Bearer`"}},
    429: {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}},
}

# What only the service knows: where the current state can refuse (409: a name taken, a stale version, a
# job running or not, run now refused, a key in use) ...
CONFLICTS = frozenset({
    "createConnection", "createTable", "createChannel", "createKey", "deleteKey",
    "createJob", "replaceJob", "patchJob", "copyJob", "activateJob", "deactivateJob", "deleteJob", "deleteJobs",
    "runJob", "dryRunJob", "stopJob",
    "createGroup", "replaceGroup", "activateGroup", "deactivateGroup", "deleteGroup", "runGroup", "stopGroup",
})  # fmt: skip
# ... and where ids named in the body are looked up (404 without a path id: a parent list, a job's
# connection and table, a group's jobs, the jobs to delete).
IDS_IN_BODY = frozenset({"createTable", "createJob", "createGroup", "deleteJobs"})

# Answers that name something new: (the path parameter it fills, where the answer holds its value).
PRODUCERS: dict[str, tuple[str, str]] = {
    "createConnection": ("connection_id", "/id"),
    "createTable": ("name", "/name"),
    "createJob": ("job_id", "/id"),
    "copyJob": ("job_id", "/id"),
    "createGroup": ("group_id", "/id"),
    "createChannel": ("channel_id", "/id"),
    "createKey": ("key_id", "/id"),
    "createToken": ("token_id", "/id"),
    "runJob": ("run_id", "/run_id"),
    "dryRunJob": ("run_id", "/run_id"),
    "stopJob": ("run_id", "/run_id"),
    "runGroup": ("group_run_id", "/group_run_id"),
    "stopGroup": ("group_run_id", "/group_run_id"),
}


def operation_id(route: APIRoute) -> str:
    """The handler's name in camelCase (`list_jobs` → `listJobs`): stable while the handler keeps its name."""
    first, *rest = route.name.split("_")
    return first + "".join(word.capitalize() for word in rest)


def install_openapi(app: FastAPI, routers: Sequence[APIRouter]) -> None:
    """The app's document, each time FastAPI generates it, gets each operation's error answers and links."""
    routes = {operation_id(r): r for router in routers for r in router.routes if isinstance(r, APIRoute)}
    generate: Callable[[], dict[str, Any]] = app.openapi
    described: list[dict[str, Any]] = []  # the document last described (FastAPI caches it)

    def document() -> dict[str, Any]:
        schema = generate()
        if not described or described[0] is not schema:
            describe_operations(schema, routes)
            described[:] = [schema]
        return schema

    app.openapi = document  # type: ignore[method-assign]


def describe_operations(schema: dict[str, Any], routes: dict[str, APIRoute]) -> None:
    _, error_schemas = models_json_schema(
        [(ErrorResponse, "serialization")], ref_template="#/components/schemas/{model}"
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):  # FastAPI's 422 body; ours is ErrorResponse
        components.pop(unused, None)
    components.update(error_schemas["$defs"])
    error_body = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    operations = list(_operations(schema))
    for _, operation in operations:
        name = operation["operationId"]
        route = routes[name]  # an operation of a router install_openapi was not given fails here, loudly
        responses = {code: answer for code, answer in operation["responses"].items() if int(code) < 400}
        for status in sorted(error_statuses(route)):
            description = (
                " ".join(bad_request_reasons(route)) if status == 400 else ERROR_DESCRIPTIONS[status]
            )
            answer: dict[str, Any] = {"description": description, "content": error_body}
            if status in ERROR_HEADERS:
                answer["headers"] = ERROR_HEADERS[status]
            responses[str(status)] = answer
        operation["responses"] = responses
    _add_links(operations)


def error_statuses(route: APIRoute) -> set[int]:
    dependants = list(_dependants(route.dependant))
    path_params = [p for d in dependants for p in d.path_params]
    query_params = [p for d in dependants for p in d.query_params]
    other_params = [p for d in dependants for p in (*d.header_params, *d.cookie_params)]
    statuses = {503}
    if operation_id(route) in CONFLICTS:
        statuses.add(409)
    roles = [d.call.needed for d in dependants if isinstance(d.call, RequiredRole)]
    if roles:
        statuses |= {401, 429}
        if max(roles) > Role.VIEWER or set(route.methods or ()) - {"GET", "HEAD"}:
            statuses.add(403)
    if route.body_field is not None:
        statuses |= {413, 422}
    if path_params or operation_id(route) in IDS_IN_BODY:
        statuses.add(404)
    if any(_may_be_invalid(p.field_info) for p in (*path_params, *query_params, *other_params)):
        statuses.add(422)
    if bad_request_reasons(route):
        statuses.add(400)
    return statuses


def bad_request_reasons(route: APIRoute) -> list[str]:
    """Why the operation may answer 400 (none: it does not)."""
    query_params = [p.name for d in _dependants(route.dependant) for p in d.query_params]
    reasons = [BAD_REQUEST_BODY] if route.body_field is not None else []
    if "confirm" in {*query_params, *_body_fields(route)}:
        reasons.append(BAD_REQUEST_CONFIRM)
    if operation_id(route) == "fetchHostKey":
        reasons.append(BAD_REQUEST_HOST)
    return reasons


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for dependency in dependant.dependencies:
        yield from _dependants(dependency)


def _may_be_invalid(field_info: Any) -> bool:
    """False only for a plain, unconstrained string, which every value satisfies."""
    return field_info.annotation not in (str, str | None) or bool(field_info.metadata)


def _body_fields(route: APIRoute) -> set[str]:
    if route.body_field is None:
        return set()
    return set(getattr(route.body_field.field_info.annotation, "model_fields", {}))


def _operations(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, methods in schema["paths"].items():
        for operation in methods.values():
            yield path, operation


def _add_links(operations: list[tuple[str, dict[str, Any]]]) -> None:
    by_id = {operation["operationId"]: (path, operation) for path, operation in operations}
    for producer, (parameter, pointer) in PRODUCERS.items():
        _, operation = by_id[producer]
        success = min(code for code in operation["responses"] if code.startswith("2"))
        links = {
            target: {
                "operationId": target,
                "parameters": {parameter: f"$response.body#{pointer}"},
                "description": f"`{parameter}` of the answer of {producer}.",
            }
            for target, (path, target_operation) in sorted(by_id.items())
            if f"{{{parameter}}}" in path and not _streams(target_operation)
        }
        operation["responses"][success]["links"] = links


def _streams(operation: dict[str, Any]) -> bool:
    """A live tail answers until its run ends: no scenario should wait on one."""
    return "text/event-stream" in operation["responses"].get("200", {}).get("content", {})
