"""A run's notifications as people read them: the status in words, and `connect runs show` /
`connect groups run-show` listing them under the run's fields (table) or beside them (JSON)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from services.catalog.runs import notification_status_text
from services.cli import app, common, config
from services.cli.client import Client
from shared.notification_records import NotificationStatus

API = "http://connect.test/api/v1"
FAILED_MAIL = {"id": "run-1.1-0-2", "rule": 0, "channel_id": 2, "channel_name": "ops mail", "channel_kind": "smtp",
               "recipient": "ops@example.com", "outcome": "failed", "status": "failed",
               "status_text": "Failed after 5 attempts, given up", "attempts": 5,
               "last_error": "SMTP 550 [mailbox unavailable]", "created_at": "2026-03-01T02:00:05Z",
               "sent_at": None}  # fmt: skip


@pytest.mark.parametrize(
    ("status", "attempts", "text"),
    [
        (NotificationStatus.PENDING, 0, "Waiting to be sent"),
        (NotificationStatus.PENDING, 1, "Retrying (1 attempt failed)"),
        (NotificationStatus.PENDING, 3, "Retrying (3 attempts failed)"),
        (NotificationStatus.SENT, 2, "Sent"),
        (NotificationStatus.FAILED, 1, "Failed after 1 attempt, given up"),
        (NotificationStatus.FAILED, 5, "Failed after 5 attempts, given up"),
    ],
)
def test_a_notifications_status_in_words(status: NotificationStatus, attempts: int, text: str) -> None:
    assert notification_status_text(status, attempts) == text


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Answers as the catalog does: run 1.1 and group run 2.1 with one notification, run 1.2 without any."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    answers: dict[str, Any] = {
        "/runs/1.1": {"run_id": "1.1", "status": "failed", "run_status": "Failed", "ended": True},
        "/runs/1.1/notifications": {"items": [FAILED_MAIL]},
        "/runs/1.2": {"run_id": "1.2", "status": "succeeded", "run_status": "Success", "ended": True},
        "/runs/1.2/notifications": {"items": []},
        "/group-runs/2.1": {
            "group_run_id": "2.1",
            "status": "failed",
            "run_status": "Failed",
            "ended": True,
            "members": [],
            "member_run_ids": [],
        },
        "/group-runs/2.1/notifications": {"items": [FAILED_MAIL | {"id": "group-run-2.1-0-2"}]},
    }

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=answers[request.url.path.removeprefix("/api/v1")])

    login = config.Login(API, "cnt_x")
    monkeypatch.setattr(common, "Client", lambda: Client(login, transport=httpx.MockTransport(handler)))


def run_cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.usefixtures("api")
def test_runs_show_lists_the_notifications_under_the_runs_fields() -> None:
    text = run_cli("runs", "show", "1.1")
    assert text.index("run_status") < text.index("Notifications")
    for shown in ("Channel", "Recipient", "Status", "Attempts", "Last error", "ops mail (smtp)", "ops@example.com",
                  "Failed after 5 attempts, given up", "SMTP 550 [mailbox unavailable]"):  # fmt: skip
        assert shown in text
    assert "run 1.2 has no notifications" in run_cli("runs", "show", "1.2")
    shown = json.loads(run_cli("runs", "show", "1.1", "--output", "json"))
    assert shown["status"] == "failed" and shown["notifications"] == [FAILED_MAIL]


@pytest.mark.usefixtures("api")
def test_groups_run_show_lists_the_group_runs_notifications() -> None:
    text = run_cli("groups", "run-show", "2.1")
    assert text.index("Member runs") < text.index("Notifications") and "ops mail (smtp)" in text
    shown = json.loads(run_cli("groups", "run-show", "2.1", "--output", "json"))
    assert [n["id"] for n in shown["notifications"]] == ["group-run-2.1-0-2"]
