"""The CLI's pieces without a running system: login storage, errors, SSE parsing, statuses, watch exit codes."""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from services.catalog.runs import TERMINAL, display_status
from services.cli import app, config, output, runs
from services.cli import client as client_module
from services.cli.client import ApiError, Client, error_from, parse_sse
from services.cli.output import run_status

API = "http://connect.test/api/v1"


@pytest.fixture(autouse=True)
def isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("CONNECT_API_URL", raising=False)
    monkeypatch.delenv("CONNECT_TOKEN", raising=False)
    return tmp_path / "connect" / "config.json"


def test_login_is_stored_owner_only_and_environment_overrides_it(
    isolated_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(config.NotLoggedIn):
        config.current()
    isolated_config.parent.mkdir(parents=True)
    isolated_config.write_text("{}")
    isolated_config.chmod(0o644)
    config.save(config.Login("http://a:8000/api/v1", "cnt_stored"))
    assert stat.S_IMODE(isolated_config.stat().st_mode) == 0o600
    assert config.current() == config.Login("http://a:8000/api/v1", "cnt_stored")
    monkeypatch.setenv("CONNECT_TOKEN", "cnt_env")
    monkeypatch.setenv("CONNECT_API_URL", "https://b.example/")
    assert config.current() == config.Login("https://b.example/api/v1", "cnt_env")
    assert config.remove() and not isolated_config.exists()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://h:8000", "http://h:8000/api/v1"),
        ("http://h:8000/", "http://h:8000/api/v1"),
        ("https://h/api/v1/", "https://h/api/v1"),
    ],
)
def test_api_urls_are_normalized(given: str, expected: str) -> None:
    assert config.normalize_url(given) == expected


def test_a_url_without_scheme_is_refused() -> None:
    with pytest.raises(typer.BadParameter):
        config.normalize_url("localhost:8000")


def test_the_api_error_shape_becomes_one_clear_message() -> None:
    body = {"error": {"code": "validation_failed", "message": "name: too long", "field": "name"}}
    error = error_from(httpx.Response(422, json=body))
    assert (error.status, error.code, error.field) == (422, "validation_failed", "name")
    assert str(error) == "name: too long [validation_failed, 422]"
    other = error_from(
        httpx.Response(404, json={"error": {"code": "not_found", "message": "gone", "field": "job_id"}})
    )
    assert str(other) == "gone (field: job_id) [not_found, 404]"
    assert "HTTP 502" in str(error_from(httpx.Response(502, text="<html>bad gateway</html>")))


def test_every_problem_the_api_lists_is_one_line() -> None:
    problems = [
        {"code": "validation_failed", "message": "name: too short", "field": "name"},
        {"code": "validation_failed", "message": "port: too large", "field": "port"},
        {"code": "validation_failed", "message": "give one credential", "field": "password"},
    ]
    body = {"error": problems[0], "errors": problems}
    error = error_from(httpx.Response(422, json=body))
    assert error.field == "name" and len(error.problems) == 3
    assert str(error).splitlines() == [
        "name: too short [validation_failed, 422]",
        "port: too large",
        "give one credential (field: password)",
    ]


def test_server_sent_events_are_parsed() -> None:
    stream = [
        "retry: 2000", "", "event: line", "id: 1", 'data: {"seq": 1}', "", ": keep-alive", "",
        "event: missing", 'data: {"from": 2,', 'data: "to": 3}', "", "event: end", 'data: {"status": "succeeded"}',
    ]  # fmt: skip
    assert list(parse_sse(iter(stream))) == [
        ("line", {"seq": 1}),
        ("missing", {"from": 2, "to": 3}),
        ("end", {"status": "succeeded"}),
    ]


@pytest.mark.parametrize(
    ("status", "rejected", "text"),
    [
        ("succeeded", 0, "Success"),
        ("partial", 3, "Success, 3 rejects"),
        ("failed", 0, "Failed"),
        ("stopped", 0, "Failed (stopped)"),
        ("skipped", 0, "Skipped"),
        ("queued", 0, "Queued"),
    ],
)
def test_run_status_reads_like_the_console(status: str, rejected: int, text: str) -> None:
    shown = {"status": status, "run_status": display_status(status), "counts": {"rejected": rejected}}
    assert run_status(shown) == text


def fake_api(statuses: list[str]) -> httpx.MockTransport:
    """A run that goes through `statuses`, one per poll."""
    polls: Iterator[str] = iter(statuses)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/runs/9.9"):
            return httpx.Response(
                404,
                json={"error": {"code": "not_found", "message": "run 9.9 does not exist", "field": "run_id"}},
            )
        status = next(polls, statuses[-1])
        body: dict[str, Any] = {"run_id": "1.1", "status": status, "counts": {"read": 10, "rejected": 0},
                                "run_status": display_status(status), "ended": status in TERMINAL}  # fmt: skip
        if status == "running":
            body["progress"] = {
                "records_read": 5,
                "records_per_second": 50.0,
                "bytes_read": 10,
                "bytes_total": 20,
            }
        return httpx.Response(200, json=body)

    return httpx.MockTransport(handler)


@pytest.mark.parametrize(
    ("final", "code"), [("succeeded", 0), ("partial", 0), ("failed", 3), ("stopped", 4), ("skipped", 0)]
)
def test_runs_watch_exit_codes(final: str, code: int, monkeypatch: pytest.MonkeyPatch) -> None:
    transport = fake_api(["queued", "running", final])
    login = config.Login(API, "cnt_x")
    monkeypatch.setattr(runs, "Client", lambda: Client(login, transport=transport))
    result = CliRunner().invoke(app, ["runs", "watch", "1.1", "--interval", "0.1", "--output", "json"])
    assert result.exit_code == code, result.output
    assert json.loads(result.stdout)["status"] == final


def test_runs_watch_gives_up_after_the_timeout_and_reports_unknown_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    transport = fake_api(["running"])
    login = config.Login(API, "cnt_x")
    monkeypatch.setattr(runs, "Client", lambda: Client(login, transport=transport))
    timed_out = CliRunner().invoke(app, ["runs", "watch", "1.1", "--interval", "0.1", "--timeout", "0.3"])
    assert timed_out.exit_code == 5
    # A run still unknown at the deadline does not exist: said within the timeout, not after the 30 s grace.
    started = time.monotonic()
    unknown = CliRunner().invoke(app, ["runs", "watch", "9.9", "--interval", "0.1", "--timeout", "0.3"])
    assert unknown.exit_code == 1 and "does not exist" in unknown.output
    assert time.monotonic() - started < runs.NOT_YET_RECORDED_GRACE


def test_commands_without_login_say_how_to_log_in() -> None:
    result = CliRunner().invoke(app, ["jobs", "list"])
    assert result.exit_code == 1 and "connect login" in result.output


def test_transport_failures_are_api_errors() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = Client(config.Login(API, "t"), transport=httpx.MockTransport(refuse))
    with pytest.raises(ApiError, match="cannot reach the API"):
        client.get("/jobs")


def test_tables_and_details_show_bracketed_text_as_text() -> None:
    """Names and records are users' text: "[/b]" in them is shown, not read as rich markup (it crashed)."""
    with output.console.capture() as captured:
        output.table([{"name": "sale [/b] [red]now"}], [("Name", lambda j: j["name"])])
        output.details({"name": "[/x] job"})
    text = captured.get()
    assert "sale [/b] [red]now" in text and "[/x] job" in text


@pytest.mark.parametrize(
    ("given", "text"),
    [
        ("2026-12-07T14:10:05Z", "2026-12-07 14:10:05 UTC"),
        ("2026-12-07T15:10:05.123+01:00", "2026-12-07 14:10:05 UTC"),  # another offset: said in UTC
        ("2026-12-07T14:10:05", "2026-12-07 14:10:05 UTC"),  # the API's instants are UTC
        ("soon", "soon"),  # not an instant: shown as it is
        (None, ""),
    ],
)
def test_times_are_shown_in_utc_and_say_so(given: str | None, text: str) -> None:
    assert output.when(given) == text


def test_lists_details_and_log_lines_show_times_with_their_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(output, "console", Console(width=250))  # a wide terminal: no folded cells
    job = {"id": 1, "name": "n", "job_type": "import", "created_at": "2026-12-07T14:10:05Z",
           "next_run": "2026-12-08T01:30:00+00:00", "schedule_type": "recurring"}  # fmt: skip
    with output.console.capture() as captured:
        output.table([job], output.JOB_COLUMNS)
        output.details({"start_time": "2026-12-07T14:11:00.5+00:00", "name": "2026-12-07 is a name"})
    text = captured.get()
    assert "2026-12-07 14:10:05 UTC" in text and "2026-12-08 01:30:00 UTC" in text
    assert "2026-12-07 14:11:00 UTC" in text and "2026-12-07 is a name" in text
    line = {"seq": 3, "at": "2026-12-07T14:10:05Z", "level": "info", "message": "file found", "fields": {}}
    assert "2026-12-07 14:10:05 UTC INFO" in runs.format_line(line)


def test_a_create_or_run_is_retried_under_one_idempotency_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The answer was lost (a timeout), then the first try was still in flight: the third gets the answer."""
    monkeypatch.setattr(client_module.time, "sleep", lambda _: None)
    seen: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            raise httpx.ReadTimeout("lost", request=request)
        if len(seen) == 2:
            error = {"code": "idempotency_request_in_progress", "message": "wait", "field": "Idempotency-Key"}
            return httpx.Response(409, json={"error": error}, headers={"Retry-After": "1"})
        return httpx.Response(202, json={"run_id": "3.1"}, headers={"Idempotent-Replayed": "true"})

    client = Client(config.Login(API, "t"), transport=httpx.MockTransport(api))
    assert client.post("/jobs/3/run", retry_safe=True) == {"run_id": "3.1"}
    keys = {request.headers["Idempotency-Key"] for request in seen}
    assert len(seen) == 3 and len(keys) == 1 and len(keys.pop()) == 36


def test_other_posts_and_final_refusals_are_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module.time, "sleep", lambda _: None)
    seen: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        error = {"code": "conflict", "message": "job 3 is running", "field": None}
        return httpx.Response(409, json={"error": error})

    client = Client(config.Login(API, "t"), transport=httpx.MockTransport(api))
    for retry_safe in (True, False):
        with pytest.raises(ApiError, match="is running"):
            client.post("/jobs/3/run", retry_safe=retry_safe)
    assert (
        len(seen) == 2 and "Idempotency-Key" in seen[0].headers and "Idempotency-Key" not in seen[1].headers
    )
