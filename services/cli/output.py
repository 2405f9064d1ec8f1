"""Tables with the console's columns, or JSON (`--output json`) for scripts."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console()
errors = Console(stderr=True)


class Format(StrEnum):
    TABLE = "table"
    JSON = "json"


OutputOption = Annotated[
    Format, typer.Option("--output", "-o", help="table for people, json for scripts.", case_sensitive=False)
]


class RecordsFormat(StrEnum):
    """For lists of records that spreadsheets read too."""

    TABLE = "table"
    JSON = "json"
    CSV = "csv"


RecordsOutputOption = Annotated[
    RecordsFormat,
    typer.Option("--output", "-o", help="table for people, json or csv for scripts.", case_sensitive=False),
]

SCHEDULE_TYPES = {
    "one_time": "One-time",
    "recurring": "Recurring",
    "on_demand": "On-demand",
    "on_event": "On event",
}


def when(value: str | None) -> str:
    """An API instant as `2026-12-07 14:10:05 UTC`: always in UTC, and saying so (the API's instants
    are UTC; a time without its zone is ambiguous to whoever reads it)."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # the API's instants are UTC
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})")


def shown(value: Any) -> str:
    """A detail's value as text: instants as `when` shows them, lists and objects as JSON."""
    if isinstance(value, str) and INSTANT.fullmatch(value):
        return when(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, indent=2, default=str)
    return str(value)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def run_status(run: dict[str, Any]) -> str:
    """The console's Run status: the API's `run_status`, a stop and the rejects named, progress while running."""
    text = str(run.get("run_status") or run.get("status"))
    if run.get("status") == "stopped":
        text += " (stopped)"
    if run.get("status") == "running" and run.get("progress"):
        p = run["progress"]
        text += f" {p['records_read']:,} records, {p['records_per_second']:,.0f}/s"
    rejected = int((run.get("counts") or {}).get("rejected") or 0)
    if rejected:
        text += f", {rejected:,} rejects"
    return text


Column = tuple[str, Callable[[dict[str, Any]], Any]]

JOB_COLUMNS: list[Column] = [
    ("Job ID", lambda j: j["id"]),
    ("Group", lambda j: j.get("group") or ""),
    ("Name", lambda j: j["name"]),
    ("Job Type", lambda j: str(j["job_type"]).capitalize()),
    ("Created on", lambda j: when(j.get("created_at"))),
    ("By", lambda j: j.get("created_by") or ""),
    ("Job state", lambda j: str(j.get("state", "")).capitalize()),
    ("Next run", lambda j: when(j.get("next_run"))),
    ("Previous run", lambda j: when(j.get("previous_run"))),
    ("Schedule type", lambda j: SCHEDULE_TYPES.get(j.get("schedule_type", ""), j.get("schedule_type", ""))),
    ("Expiration date", lambda j: when(j.get("expiration_date"))),
]
RUN_COLUMNS: list[Column] = [
    ("Job ID.Run ID", lambda r: r["run_id"]),
    ("Group ID.Run ID", lambda r: r.get("group_run_id") or ""),
    ("Group", lambda r: r.get("group_name") or ""),
    ("Name", lambda r: r.get("job_name") or ""),
    ("Job type", lambda r: str(r.get("job_type") or "").capitalize()),
    ("Start time", lambda r: when(r.get("start_time"))),
    ("Duration", lambda r: duration(r.get("duration_seconds"))),
    ("Run status", run_status),
]
GROUP_COLUMNS: list[Column] = [
    ("Group ID", lambda g: g["id"]),
    ("Created on", lambda g: when(g.get("created_at"))),
    ("By", lambda g: g.get("created_by") or ""),
    ("Name", lambda g: g["name"]),
    ("Next run", lambda g: when(g.get("next_run"))),
    ("Previous run", lambda g: when(g.get("previous_run"))),
    ("Schedule type", lambda g: SCHEDULE_TYPES.get(g.get("schedule_type", ""), g.get("schedule_type", ""))),
    ("Expiration date", lambda g: when(g.get("expiration_date"))),
    ("Jobs (in order)", lambda g: " → ".join(str(m["name"]) for m in g.get("jobs", []))),
]
REJECT_COLUMNS: list[Column] = [
    ("File", lambda r: r["file"]),
    ("Line", lambda r: r["line"]),
    ("Field", lambda r: r["field"]),
    ("Reason", lambda r: r["reason"]),
    ("Record", lambda r: r["record"]),
]
NOTIFICATION_COLUMNS: list[Column] = [
    ("Channel", lambda n: f"{n['channel_name']} ({n['channel_kind']})"),
    ("Recipient", lambda n: n["recipient"]),
    ("Outcome", lambda n: n["outcome"]),
    ("Status", lambda n: n.get("status_text") or n["status"]),
    ("Attempts", lambda n: n["attempts"]),
    ("Last error", lambda n: n.get("last_error") or ""),
]
GROUP_RUN_COLUMNS: list[Column] = [
    ("Group ID.Run ID", lambda r: r["group_run_id"]),
    ("Group", lambda r: r.get("group_name") or ""),
    ("Start time", lambda r: when(r.get("start_time"))),
    ("Duration", lambda r: duration(r.get("duration_seconds"))),
    ("Run status", run_status),
    ("Member runs", lambda r: " → ".join(r.get("member_run_ids") or [])),
]


def emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def table(items: Sequence[dict[str, Any]], columns: list[Column], *, title: str | None = None,
          total: int | None = None) -> None:  # fmt: skip
    grid = Table(title=title, show_lines=False, header_style="bold")
    for name, _ in columns:
        grid.add_column(name, overflow="fold")
    for item in items:
        # Values are users' text (names, records): "[…]" in them is text, not rich markup.
        grid.add_row(*(escape(str(get(item))) for _, get in columns))
    console.print(grid)
    if total is not None and total > len(items):
        console.print(f"[dim]{len(items)} of {total}; use --offset/--limit for more[/dim]")


def show(data: Any, output: Format, columns: list[Column] | None = None, **kwargs: Any) -> None:
    """A page (`items`) or a list as a table, anything else as key/value lines; JSON as is."""
    if output is Format.JSON:
        emit_json(data)
        return
    if columns is not None:
        items = data["items"] if isinstance(data, dict) and "items" in data else data
        total = data.get("total") if isinstance(data, dict) else None
        table(items, columns, total=total, **kwargs)
        return
    details(data)


def notifications(items: Sequence[dict[str, Any]], what: str) -> None:
    """A run's (or group run's) notifications under its fields, or a line saying it has none."""
    if items:
        table(items, NOTIFICATION_COLUMNS, title="Notifications")
    else:
        console.print(f"[dim]{escape(what)} has no notifications[/dim]", highlight=False)


def details(data: dict[str, Any]) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for key, value in data.items():
        grid.add_row(key, "" if value is None else escape(shown(value)))
    console.print(grid)
