"""`connect runs rejects RUN_ID`: every page of a run's rejects as a table, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from services.cli import app, common, config
from services.cli.client import Client

API = "http://connect.test/api/v1"
REJECTS = [
    {"file": 1, "line": line, "field": "email", "reason": f"'bad{line}' is not an email address",
     "record": f'C{line},"bad{line}, really",[/b]{line}'}
    for line in range(2, 7)
]  # fmt: skip


@pytest.fixture(autouse=True)
def fake_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[httpx.Request]:
    """Serves 5 rejects of run 4.1, two per page whatever the limit, by `after` cursor."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if not request.url.path.endswith("/runs/4.1/rejects"):
            error = {"code": "not_found", "message": "run 9.9 does not exist", "field": "run_id"}
            return httpx.Response(404, json={"error": error})
        after = request.url.params.get("after")
        start = next(i for i, r in enumerate(REJECTS) if f"1:{r['line']}" == after) + 1 if after else 0
        items = REJECTS[start : start + 2]
        more = start + 2 < len(REJECTS)
        body: dict[str, Any] = {"run_id": "4.1", "items": items, "total": len(REJECTS), "offset": 0,
                                "limit": 2, "next_after": f"1:{items[-1]['line']}" if more else None}  # fmt: skip
        return httpx.Response(200, json=body)

    login = config.Login(API, "cnt_x")
    monkeypatch.setattr(common, "Client", lambda: Client(login, transport=httpx.MockTransport(handler)))
    return seen


def test_csv_holds_every_page_with_the_raw_records(fake_api: list[httpx.Request]) -> None:
    result = CliRunner().invoke(app, ["runs", "rejects", "4.1", "--output", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["file", "line", "field", "reason", "record"]
    assert rows[1:] == [
        [str(r["file"]), str(r["line"]), r["field"], r["reason"], r["record"]] for r in REJECTS
    ]
    assert [r.url.params.get("after") for r in fake_api] == [None, "1:3", "1:5"]


def test_json_and_table_list_every_reject() -> None:
    result = CliRunner().invoke(app, ["runs", "rejects", "4.1", "-o", "json"])
    assert json.loads(result.stdout) == {"run_id": "4.1", "total": 5, "items": REJECTS}
    table = CliRunner().invoke(app, ["runs", "rejects", "4.1"], env={"COLUMNS": "250"})
    assert table.exit_code == 0
    for header in ("File", "Line", "Field", "Reason", "Record"):
        assert header in table.stdout
    assert "bad6, really" in table.stdout and "[/b]6" in table.stdout  # shown as is, not as markup


def test_an_unknown_run_is_an_error_without_output() -> None:
    result = CliRunner().invoke(app, ["runs", "rejects", "9.9", "--output", "csv"])
    assert result.exit_code == 1 and "does not exist" in result.output
    assert "file,line" not in result.stdout
