"""`connect jobs …`: the All jobs tab from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from services.cli.common import (
    EXIT_ERROR,
    api_command,
    client,
    confirm,
    dump_document,
    fail,
    load_document,
    parse_document,
)
from services.cli.output import JOB_COLUMNS, Format, OutputOption, console, emit_json, show

app = typer.Typer(help="Jobs (the All jobs tab).", no_args_is_help=True)

JobId = Annotated[int, typer.Argument(help="Job ID.", min=1)]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
EDITABLE = ("version", "name", "spec", "schedule", "expires_at")


@app.command("list")
@api_command
def list_jobs(
    name: Annotated[str | None, typer.Option(help="Part of the name.")] = None,
    job_type: Annotated[str | None, typer.Option("--type", help="import or export.")] = None,
    state: Annotated[str | None, typer.Option(help="active or inactive.")] = None,
    group_id: Annotated[int | None, typer.Option(help="Jobs of this group.")] = None,
    sort: Annotated[str, typer.Option(help="id, name, created_at, job_type; '-' first: descending.")] = "id",
    offset: int = 0,
    limit: int = 50,
    output: OutputOption = Format.TABLE,
) -> None:
    """List jobs with the console's columns."""
    with client() as api:
        page = api.get("/jobs", name=name, job_type=job_type, state=state, group_id=group_id, sort=sort,
                       offset=offset, limit=limit)  # fmt: skip
    show(page, output, JOB_COLUMNS)


@app.command("show")
@api_command
def show_job(job_id: JobId, output: OutputOption = Format.TABLE) -> None:
    """A job: its columns, schedule and specification."""
    with client() as api:
        job = api.get(f"/jobs/{job_id}")
    if output is Format.JSON:
        emit_json(job)
        return
    show({k: v for k, v in job.items() if k not in ("spec", "schedule")}, output)
    console.print("[bold]schedule[/bold]")
    console.print(dump_document(job["schedule"]).rstrip(), highlight=False)
    console.print("[bold]spec[/bold]")
    console.print(dump_document(job["spec"]).rstrip(), highlight=False)


@app.command("create")
@api_command
def create_job(
    file: Annotated[Path, typer.Option("--file", "-f", help="The job as YAML or JSON ('-': stdin).")],
    output: OutputOption = Format.TABLE,
) -> None:
    """Create a job from a file with `name`, `spec`, and optionally `schedule`, `expires_at`, `active`."""
    body = load_document(file)
    with client() as api:
        job = api.post("/jobs", body, retry_safe=True)
    if output is Format.JSON:
        emit_json(job)
    else:
        console.print(f"created job {job['id']}: {job['name']} ({job['state']})", highlight=False)


@app.command("edit")
@api_command
def edit_job(
    job_id: JobId,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="Fields to change (YAML/JSON).")] = None,
    name: Annotated[str | None, typer.Option(help="Rename the job.")] = None,
    output: OutputOption = Format.TABLE,
) -> None:
    """Edit a job: fields from a file, --name, or (with neither) in $EDITOR."""
    with client() as api:
        current = api.get(f"/jobs/{job_id}")
        if file is not None:
            changes = load_document(file)
        elif name is not None:
            changes = {"name": name}
        else:
            editable = {"name": current["name"], "spec": current["spec"], "schedule": current["schedule"],
                        "expires_at": current.get("expiration_date")}  # fmt: skip
            import click

            edited = click.edit(dump_document(editable), extension=".yaml")
            if edited is None:
                raise fail("no change made")
            changes = parse_document(edited, "the edited job")
        ignored = sorted(set(changes) - set(EDITABLE))
        if ignored:
            console.print(f"[dim]ignored (not editable): {', '.join(ignored)}[/dim]")
        body = {k: v for k, v in changes.items() if k in EDITABLE}
        body.setdefault("version", current["version"])
        job = api.request("PATCH", f"/jobs/{job_id}", json=body)
    if output is Format.JSON:
        emit_json(job)
    else:
        console.print(f"saved job {job['id']}: {job['name']} (version {job['version']})", highlight=False)


@app.command("run")
@api_command
def run_job(
    job_ids: Annotated[list[int], typer.Argument(help="Job ID(s): 1 to 5, each run on its own.", min=1)],
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Then follow the run (as `runs watch`; one job only).")
    ] = False,
    output: OutputOption = Format.TABLE,
) -> None:
    """Run now (not for partner-feed jobs); prints the new JobID.RunID, one line per job.

    With several jobs each is checked on its own; the exit code is 1 if any was refused."""
    if len(job_ids) > 1:
        if watch:
            raise fail("--watch follows one run: give one job ID")
        _run_jobs(job_ids, output)
        return
    with client() as api:
        accepted = api.post(f"/jobs/{job_ids[0]}/run", retry_safe=True)
    if output is Format.JSON and not watch:
        emit_json(accepted)
    elif not watch:
        typer.echo(accepted["run_id"])
    if watch:
        from services.cli.runs import watch_run

        watch_run(accepted["run_id"], interval=1.0, timeout=None, output=output)


@app.command("dry-run")
@api_command
def dry_run_job(
    job_id: JobId,
    watch: Annotated[
        bool,
        typer.Option("--watch", "-w", help="Then follow it and print what it would do (as `runs watch`)."),
    ] = False,
    output: OutputOption = Format.TABLE,
) -> None:
    """Dry run of an import: reads the current file, applies the mapping and every check, writes nothing.

    Prints the new JobID.RunID; with --watch, once it ends, the would-insert / would-update / unchanged /
    would-reject counts and the first rejects (line, field, reason)."""
    with client() as api:
        accepted = api.post(f"/jobs/{job_id}/dry-run", retry_safe=True)
    if not watch:
        emit_json(accepted) if output is Format.JSON else typer.echo(accepted["run_id"])
        return
    from services.cli.runs import watch_run

    watch_run(accepted["run_id"], interval=1.0, timeout=None, output=output)


def _run_jobs(job_ids: list[int], output: Format) -> None:
    """The bulk trigger: one line per job in the given order, `JOB: RUN_ID` or `JOB: refused: reason`."""
    with client() as api:
        results = api.post("/jobs/run", {"ids": job_ids}, retry_safe=True)["results"]
    if output is Format.JSON:
        emit_json(results)
    else:
        for result in results:
            if result.get("run_id"):
                typer.echo(f"{result['job_id']}: {result['run_id']}")
            else:
                typer.echo(f"{result['job_id']}: refused: {result['error']['message']}")
    if any(not result.get("run_id") for result in results):
        raise typer.Exit(EXIT_ERROR)


@app.command("stop")
@api_command
def stop_job(job_id: JobId, yes: Yes = False, output: OutputOption = Format.TABLE) -> None:
    """Stop the job's running run (asks for confirmation)."""
    confirm(f"Stop the running run of job {job_id}?", yes)
    with client() as api:
        accepted = api.post(f"/jobs/{job_id}/stop", confirm="true")
    emit_json(accepted) if output is Format.JSON else typer.echo(f"stopping {accepted['run_id']}")


@app.command("copy")
@api_command
def copy_job(
    job_id: JobId,
    name: Annotated[str, typer.Option(help="Name of the copy.", prompt="Name of the copy")],
    output: OutputOption = Format.TABLE,
) -> None:
    """Copy an inactive, non-partner job; the copy is inactive."""
    with client() as api:
        job = api.post(f"/jobs/{job_id}/copy", {"name": name}, retry_safe=True)
    if output is Format.JSON:
        emit_json(job)
    else:
        console.print(f"copied job {job_id} as job {job['id']}: {job['name']} (inactive)", highlight=False)


@app.command("delete")
@api_command
def delete_jobs(
    job_ids: Annotated[list[int], typer.Argument(help="One or more job IDs: all are deleted, or none.")],
    yes: Yes = False,
    output: OutputOption = Format.TABLE,
) -> None:
    """Delete jobs (asks for confirmation). Records they loaded are not deleted."""
    ids = ", ".join(map(str, job_ids))
    confirm(f"Delete job(s) {ids}?", yes)
    with client() as api:
        result = api.post("/jobs/delete", {"ids": job_ids, "confirm": True})
    emit_json(result) if output is Format.JSON else typer.echo(f"deleted job(s) {ids}")


def _set_active(job_id: int, active: bool, output: Format) -> None:
    with client() as api:
        job = api.post(f"/jobs/{job_id}/{'activate' if active else 'deactivate'}")
    if output is Format.JSON:
        emit_json(job)
    else:
        console.print(f"job {job['id']}: {job['name']} is {job['state']}", highlight=False)


@app.command("activate")
@api_command
def activate(job_id: JobId, output: OutputOption = Format.TABLE) -> None:
    """Activate a job (its schedule applies again)."""
    _set_active(job_id, True, output)


@app.command("deactivate")
@api_command
def deactivate(job_id: JobId, output: OutputOption = Format.TABLE) -> None:
    """Deactivate a job (no scheduled runs; it can then be copied)."""
    _set_active(job_id, False, output)


@app.command("preview")
@api_command
def preview(
    job_id: JobId,
    count: int = 10,
    start: Annotated[
        str | None, typer.Option("--from", help="Fires after this instant, e.g. 2027-03-01T00:00:00Z.")
    ] = None,
    output: OutputOption = Format.TABLE,
) -> None:
    """The schedule's next fire times (or those after --from), daylight-saving changes flagged."""
    with client() as api:
        data = api.get(f"/jobs/{job_id}/schedule-preview", count=count, **{"from": start})
    if output is Format.JSON:
        emit_json(data)
        return
    from services.cli.output import table

    rows = [{"local": f["local"], "utc": f["utc"], "slot": f.get("slot") or "",
             "dst": "DST change" if f["dst_change"] else ""} for f in data["fires"]]  # fmt: skip
    offset = int(data.get("spread_offset_seconds") or 0)
    spread = [("Slot (UTC)", lambda r: r["slot"])] if offset else []  # fires at slot + the spread offset
    table(rows, [(f"Local ({data['timezone']})", lambda r: r["local"]), ("UTC", lambda r: r["utc"]), *spread,
                 ("Daylight saving", lambda r: r["dst"])])  # fmt: skip
    if offset:
        console.print(f"spread: starts {offset // 60} min {offset % 60} s after each slot")
