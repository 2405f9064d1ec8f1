"""`connect groups …`: the Groups tab from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from services.cli.common import api_command, client, confirm, load_document
from services.cli.output import (
    GROUP_COLUMNS,
    GROUP_RUN_COLUMNS,
    RUN_COLUMNS,
    Format,
    OutputOption,
    console,
    emit_json,
    notifications,
    show,
    table,
)

app = typer.Typer(help="Groups of jobs run in order (the Groups tab).", no_args_is_help=True)

GroupId = Annotated[int, typer.Argument(help="Group ID.", min=1)]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
UPDATABLE = ("name", "job_ids", "schedule", "expires_at", "continue_on_failure")


def _job_ids(text: str) -> list[int]:
    try:
        return [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise typer.BadParameter("give job IDs separated by commas, in run order: 3,1,2") from None


@app.command("list")
@api_command
def list_groups(
    sort: Annotated[str, typer.Option(help="id, name, created_at; '-' first: descending.")] = "id",
    offset: int = 0,
    limit: int = 50,
    output: OutputOption = Format.TABLE,
) -> None:
    """List groups with the console's columns."""
    with client() as api:
        page = api.get("/groups", sort=sort, offset=offset, limit=limit)
    show(page, output, GROUP_COLUMNS)


@app.command("show")
@api_command
def show_group(group_id: GroupId, output: OutputOption = Format.TABLE) -> None:
    with client() as api:
        group = api.get(f"/groups/{group_id}")
    show(group, output)


@app.command("create")
@api_command
def create_group(
    file: Annotated[Path | None, typer.Option("--file", "-f", help="The group as YAML or JSON.")] = None,
    name: Annotated[str | None, typer.Option(help="Name (instead of a file).")] = None,
    jobs: Annotated[str | None, typer.Option(help="Job IDs in run order: 3,1,2.")] = None,
    output: OutputOption = Format.TABLE,
) -> None:
    """Create a group from a file, or from --name and --jobs (on demand)."""
    body: dict[str, Any] = load_document(file) if file else {}
    if name is not None:
        body["name"] = name
    if jobs is not None:
        body["job_ids"] = _job_ids(jobs)
    with client() as api:
        group = api.post("/groups", body, retry_safe=True)
    if output is Format.JSON:
        emit_json(group)
    else:
        console.print(f"created group {group['id']}: {group['name']}", highlight=False)


@app.command("edit")
@api_command
def edit_group(
    group_id: GroupId,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="Fields to change (YAML/JSON).")] = None,
    name: Annotated[str | None, typer.Option(help="Rename the group.")] = None,
    jobs: Annotated[str | None, typer.Option(help="Jobs in the new run order: 3,1,2 (reorder).")] = None,
    output: OutputOption = Format.TABLE,
) -> None:
    """Edit or reorder a group (the rest of it stays as it is)."""
    with client() as api:
        current = api.get(f"/groups/{group_id}")
        body: dict[str, Any] = {
            "version": current["version"],
            "name": current["name"],
            "job_ids": [member["id"] for member in current["jobs"]],
            "schedule": current["schedule"],
            "expires_at": current.get("expiration_date"),
            "continue_on_failure": current["continue_on_failure"],
        }
        if file is not None:
            body.update({k: v for k, v in load_document(file).items() if k in (*UPDATABLE, "version")})
        if name is not None:
            body["name"] = name
        if jobs is not None:
            body["job_ids"] = _job_ids(jobs)
        group = api.request("PUT", f"/groups/{group_id}", json=body)
    if output is Format.JSON:
        emit_json(group)
    else:
        order = " → ".join(f"{m['name']} ({m['id']})" for m in group["jobs"])
        console.print(f"saved group {group['id']}: {group['name']}: {order}", highlight=False)


@app.command("run")
@api_command
def run_group(group_id: GroupId, output: OutputOption = Format.TABLE) -> None:
    """Run now: prints the new GroupID.RunID."""
    with client() as api:
        accepted = api.post(f"/groups/{group_id}/run", retry_safe=True)
    if output is Format.JSON:
        emit_json(accepted)
    else:
        typer.echo(accepted["group_run_id"])


@app.command("stop")
@api_command
def stop_group(group_id: GroupId, yes: Yes = False, output: OutputOption = Format.TABLE) -> None:
    """Stop the group's run: the current job stops, no further job runs."""
    confirm(f"Stop the running run of group {group_id}?", yes)
    with client() as api:
        accepted = api.post(f"/groups/{group_id}/stop", confirm="true")
    if output is Format.JSON:
        emit_json(accepted)
    else:
        typer.echo(f"stopping {accepted['group_run_id']}")


@app.command("delete")
@api_command
def delete_group(group_id: GroupId, yes: Yes = False, output: OutputOption = Format.TABLE) -> None:
    """Delete a group (its jobs stay)."""
    confirm(f"Delete group {group_id}?", yes)
    with client() as api:
        api.request("DELETE", f"/groups/{group_id}", params={"confirm": "true"})
    if output is Format.JSON:
        emit_json({"deleted": group_id})
    else:
        typer.echo(f"deleted group {group_id}")


def _set_active(group_id: int, active: bool, output: Format) -> None:
    with client() as api:
        group = api.post(f"/groups/{group_id}/{'activate' if active else 'deactivate'}")
    if output is Format.JSON:
        emit_json(group)
    else:
        console.print(f"group {group['id']}: {group['name']} is {group['state']}", highlight=False)


@app.command("activate")
@api_command
def activate(group_id: GroupId, output: OutputOption = Format.TABLE) -> None:
    _set_active(group_id, True, output)


@app.command("deactivate")
@api_command
def deactivate(group_id: GroupId, output: OutputOption = Format.TABLE) -> None:
    _set_active(group_id, False, output)


@app.command("runs")
@api_command
def group_runs(
    group_id: Annotated[int | None, typer.Option(help="Runs of this group only.")] = None,
    offset: int = 0,
    limit: int = 20,
    output: OutputOption = Format.TABLE,
) -> None:
    """Group runs (GroupID.RunID), newest first, with their member runs in order."""
    with client() as api:
        page = api.get("/group-runs", group_id=group_id, offset=offset, limit=limit)
    show(page, output, GROUP_RUN_COLUMNS)


@app.command("run-show")
@api_command
def group_run(
    group_run_id: Annotated[str, typer.Argument(help="GroupID.RunID")], output: OutputOption = Format.TABLE
) -> None:
    """A group run and each member run, in the group's order; then its notifications."""
    with client() as api:
        detail = api.get(f"/group-runs/{group_run_id}")
        sent = api.get(f"/group-runs/{group_run_id}/notifications")["items"]
    if output is Format.JSON:
        emit_json(detail | {"notifications": sent})
        return
    table([detail], GROUP_RUN_COLUMNS)
    table(detail["members"], RUN_COLUMNS, title="Member runs")
    notifications(sent, f"group run {group_run_id}")
