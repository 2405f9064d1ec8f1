"""The CLI's HTTP client: one place that turns the API's error shape into a clear message."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from services.cli.config import Login, current

POST_ATTEMPTS = 3  # of a retry-safe POST: the API does it once under its Idempotency-Key
IN_PROGRESS = "idempotency_request_in_progress"


class ApiError(Exception):
    """An error answered by the API (`{"error": {"code", "message", "field"}, "errors": [...]}`) or a
    transport failure. `problems` holds every (field, message) the API listed, the first included."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 field: str | None = None, problems: Sequence[tuple[str | None, str]] = ()) -> None:  # fmt: skip
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.field = field
        self.problems = tuple(problems) or ((field, message),)

    def __str__(self) -> str:
        """One line per problem; the first carries the code and status."""
        tag = ", ".join(str(p) for p in (self.code, self.status) if p)
        first, *others = [_described(field, message) for field, message in self.problems]
        return first + (f" [{tag}]" if tag else "") + "".join(f"\n{line}" for line in others)


def _described(field: str | None, message: str) -> str:
    return f"{message} (field: {field})" if field and field not in message else message


def error_from(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
        error = body["error"]
        listed = body.get("errors") or [error]
        problems = [(p.get("field"), str(p["message"])) for p in listed]
        return ApiError(str(error["message"]), status=response.status_code, code=error.get("code"),
                        field=error.get("field"), problems=problems)  # fmt: skip
    except (ValueError, KeyError, TypeError, AttributeError):
        text = response.text.strip()[:200] or response.reason_phrase
        return ApiError(f"HTTP {response.status_code}: {text}", status=response.status_code)


class Client:
    def __init__(self, login: Login | None = None, *, transport: httpx.BaseTransport | None = None,
                 timeout: float = 30.0) -> None:  # fmt: skip
        self.login = login or current()
        self.http = httpx.Client(
            base_url=self.login.api_url,
            headers={"Authorization": f"Bearer {self.login.token}", "User-Agent": "connect-cli"},
            timeout=timeout,
            transport=transport,
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(f"cannot reach the API at {self.login.api_url}: {exc}") from exc
        if response.status_code >= 400:
            raise error_from(response)
        if not response.content:
            return None
        return response.json()

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v not in (None, "", [])})

    def pages(self, path: str, *, limit: int = 1000, **params: Any) -> Iterator[Any]:
        """Every page of a cursor-paged list in order (each page's `next_after` is the next `after`)."""
        after = None
        while True:
            page = self.get(path, after=after, limit=limit, **params)
            yield page
            after, previous = page.get("next_after"), after
            if not after or after == previous:  # a cursor that does not move would loop forever
                return

    def post(self, path: str, body: Any = None, *, retry_safe: bool = False, **params: Any) -> Any:
        """POST; `retry_safe` (a create or a run) sends an `Idempotency-Key` of its own and tries again
        under it when the answer was lost (no connection, a timeout) or the first try is still in flight."""
        if not retry_safe:
            return self.request("POST", path, json=body, params=params or None)
        headers = {"Idempotency-Key": str(uuid.uuid4())}
        for _ in range(POST_ATTEMPTS - 1):
            try:
                return self.request("POST", path, json=body, params=params or None, headers=headers)
            except ApiError as exc:
                if not (exc.status is None or exc.code == IN_PROGRESS):
                    raise
            time.sleep(1.0)  # the Retry-After of a request in progress
        return self.request("POST", path, json=body, params=params or None, headers=headers)

    def stream_events(self, path: str, **params: Any) -> Iterator[tuple[str, dict[str, Any]]]:
        """Server-Sent Events of `path` as (event, data) pairs."""
        try:
            with self.http.stream(
                "GET", path, params=params, timeout=httpx.Timeout(30.0, read=None)
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_from(response)
                yield from parse_sse(response.iter_lines())
        except httpx.HTTPError as exc:
            raise ApiError(f"the live log was interrupted: {exc}") from exc

    def close(self) -> None:
        self.http.close()


def parse_sse(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    event, data = "message", list[str]()
    for line in lines:
        if line == "":
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", list[str]()
        elif line.startswith(":"):
            continue  # a comment (keep-alive)
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
    if data:
        yield event, json.loads("\n".join(data))
