"""What a notification says: the webhook's JSON body and the mail's subject and text (pure).

The body is built once, when the notification is created, from the run record as recorded, and
stored with it (`NotificationField.PAYLOAD`): every retry sends the same bytes under the same id.
Its shape is documented in docs/notifications.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from shared.run_records import GroupRunField, RunField

Document = dict[str, Any]

RUN_FINISHED = "run.finished"
GROUP_RUN_FINISHED = "group_run.finished"


def _iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else value


def run_links(api_url: str, run_id: str) -> dict[str, str]:
    """The API's run, log and rejects, and the console's run page (for the people a mail reaches)."""
    site = api_url.rstrip("/")
    base = f"{site}/api/v1/runs/{run_id}"
    return {
        "run": base,
        "logs": f"{base}/logs",
        "rejects": f"{base}/rejects",
        "console": f"{site}/#/runs/{run_id}",
    }


def group_run_links(api_url: str, group_run_id: str) -> dict[str, str]:
    site = api_url.rstrip("/")
    return {
        "group_run": f"{site}/api/v1/group-runs/{group_run_id}",
        "console": f"{site}/#/group-runs/{group_run_id}",
    }


def run_body(notification: str, outcome: str, run: Document, *, timed_out: bool, api_url: str) -> Document:
    """A job run's notification: its record's fields as the catalog shows them, and links."""
    run_id = str(run[RunField.ID])
    return {
        "type": RUN_FINISHED,
        "notification_id": notification,
        "outcome": outcome,
        "run": {
            "run_id": run_id,
            "job_id": run.get(RunField.JOB_ID),
            "job_name": run.get(RunField.JOB_NAME),
            "status": run.get(RunField.STATUS),
            "trigger": run.get(RunField.TRIGGER),
            "timed_out": timed_out,
            "counts": run.get(RunField.COUNTS) or {},
            "error": run.get(RunField.ERROR),
            "started_at": _iso(run.get(RunField.STARTED_AT)),
            "finished_at": _iso(run.get(RunField.FINISHED_AT)),
            "group_run_id": run.get(RunField.GROUP_RUN_ID),
        },
        "links": run_links(api_url, run_id),
    }


def group_body(
    notification: str, outcome: str, group_run: Document, members: Sequence[Document], *, api_url: str
) -> Document:
    """A group run's notification, naming each member run's outcome in the group's order."""
    group_run_id = str(group_run[GroupRunField.ID])
    return {
        "type": GROUP_RUN_FINISHED,
        "notification_id": notification,
        "outcome": outcome,
        "group_run": {
            "group_run_id": group_run_id,
            "group_id": group_run.get(GroupRunField.GROUP_ID),
            "group_name": group_run.get(GroupRunField.GROUP_NAME),
            "status": group_run.get(GroupRunField.STATUS),
            "trigger": group_run.get(GroupRunField.TRIGGER),
            "error": group_run.get(GroupRunField.ERROR),
            "started_at": _iso(group_run.get(GroupRunField.STARTED_AT)),
            "finished_at": _iso(group_run.get(GroupRunField.FINISHED_AT)),
            "members": [
                {
                    "run_id": str(member[RunField.ID]),
                    "job_id": member.get(RunField.JOB_ID),
                    "job_name": member.get(RunField.JOB_NAME),
                    "status": member.get(RunField.STATUS),
                    "links": run_links(api_url, str(member[RunField.ID])),
                }
                for member in members
            ],
        },
        "links": group_run_links(api_url, group_run_id),
    }


def subject(body: Document) -> str:
    """`Connect: job 12 'Nightly import' failed (run 12.7)`."""
    if body["type"] == GROUP_RUN_FINISHED:
        group = body["group_run"]
        owner, run_id = f"group {group['group_id']} '{group['group_name']}'", group["group_run_id"]
    else:
        run = body["run"]
        owner, run_id = f"job {run['job_id']} '{run['job_name']}'", run["run_id"]
    return f"Connect: {owner} {_said(body['outcome'])} (run {run_id})"


def _said(outcome: str) -> str:
    said = {
        "timed_out": "timed out",
        "partial": "finished with rejects",
        "skipped": "skipped (nothing to import)",
    }
    return said.get(outcome, outcome)


def mail_text(body: Document) -> str:
    """The mail's plain text: outcome, counts, error and where to read the log."""
    lines = [subject(body).removeprefix("Connect: "), "", f"Outcome: {body['outcome']}"]
    if body["type"] == GROUP_RUN_FINISHED:
        group = body["group_run"]
        lines += [f"Status: {group['status']}", f"Finished: {group['finished_at']}"]
        if group["error"]:
            lines.append(f"Error: {group['error']}")
        lines += ["", "Member runs:"]
        lines += [
            f"  {m['run_id']} job {m['job_id']} '{m['job_name']}': {m['status']}  log: {m['links']['logs']}"
            for m in group["members"]
        ]
        lines += ["", f"Console: {body['links']['console']}", f"Group run: {body['links']['group_run']}"]
    else:
        run = body["run"]
        counts = ", ".join(f"{name} {value}" for name, value in run["counts"].items())
        lines += [f"Status: {run['status']}", f"Trigger: {run['trigger']}", f"Counts: {counts or 'none'}"]
        lines += [f"Started: {run['started_at']}", f"Finished: {run['finished_at']}"]
        if run["error"]:
            lines.append(f"Error: {run['error']}")
        links = body["links"]
        lines += ["", f"Console: {links['console']}", f"Log: {links['logs']}", f"Rejects: {links['rejects']}"]
        lines.append(f"Run: {links['run']}")
    lines += ["", f"Notification id: {body['notification_id']}"]
    return "\n".join(lines) + "\n"
