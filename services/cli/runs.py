"""`connect runs …`: the Completed jobs tab, execution logs, rejected records and `runs watch` for scripts."""

from __future__ import annotations

import csv
import json
import sys
import time
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from services.cli.client import ApiError, Client
from services.cli.common import api_command, client, fail
from services.cli.output import (
    REJECT_COLUMNS,
    RUN_COLUMNS,
    Format,
    OutputOption,
    RecordsFormat,
    RecordsOutputOption,
    console,
    emit_json,
    errors,
    notifications,
    show,
    table,
    when,
)

app = typer.Typer(
    help="Runs (the Completed jobs tab), their execution logs and rejected records.", no_args_is_help=True
)

RunId = Annotated[str, typer.Argument(help="JobID.RunID, e.g. 12.3")]
# `connect runs watch` exit codes, so scripts can wait on a run.
EXIT_SUCCESS = 0  # succeeded, or partial (a success with rejects)
EXIT_FAILED = 3
EXIT_STOPPED = 4
EXIT_TIMEOUT = 5
EXIT_BY_STATUS = {"succeeded": EXIT_SUCCESS, "partial": EXIT_SUCCESS, "failed": EXIT_FAILED,
                  "stopped": EXIT_STOPPED, "skipped": EXIT_SUCCESS}  # fmt: skip


@app.command("list")
@api_command
def list_runs(
    job_id: Annotated[int | None, typer.Option(help="Runs of this job.")] = None,
    group_id: Annotated[int | None, typer.Option(help="Runs of this group's jobs.")] = None,
    group_run_id: Annotated[str | None, typer.Option(help="Runs of this group run (GroupID.RunID).")] = None,
    status: Annotated[
        list[str] | None,
        typer.Option(help="queued, running, succeeded, partial, failed, stopped; repeatable."),
    ] = None,
    job_type: Annotated[str | None, typer.Option("--type", help="import or export.")] = None,
    trigger: Annotated[str | None, typer.Option(help="on_demand, scheduled, on_event, group…")] = None,
    sort: Annotated[
        str,
        typer.Option(
            help="requested_at, start_time, duration, run_id, job_name, status; '-' first: descending."
        ),
    ] = "-requested_at",
    offset: int = 0,
    limit: int = 50,
    output: OutputOption = Format.TABLE,
) -> None:
    """List runs with the console's columns (newest first)."""
    with client() as api:
        page = api.get("/runs", job_id=job_id, group_id=group_id, group_run_id=group_run_id, status=status,
                       job_type=job_type, trigger=trigger, sort=sort, offset=offset, limit=limit)  # fmt: skip
    show(page, output, RUN_COLUMNS)


@app.command("show")
@api_command
def show_run(run_id: RunId, output: OutputOption = Format.TABLE) -> None:
    """A run: status, counts, rejects file, error, progress while running; then its notifications."""
    with client() as api:
        run = api.get(f"/runs/{run_id}")
        sent = api.get(f"/runs/{run_id}/notifications")["items"]
    if output is Format.JSON:
        emit_json(run | {"notifications": sent})
        return
    show(run, output)
    notifications(sent, f"run {run_id}")


def format_line(line: dict[str, Any]) -> str:
    fields = line.get("fields") or {}
    extra = "  " + json.dumps(fields, default=str) if fields else ""
    return f"{line['seq']:>6} {when(line['at'])} {str(line['level']).upper():<7} {line['message']}{extra}"


def format_missing(first: int, last: int) -> str:
    span = f"{first}" if first == last else f"{first}-{last}"
    return f"{'':>6} [log lines missing: {span}]"


@app.command("logs")
@api_command
def logs(
    run_id: RunId,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep following until the run ends.")
    ] = False,
    output: OutputOption = Format.TABLE,
) -> None:
    """The run's execution log; gaps are shown as "log lines missing"."""
    as_json = output is Format.JSON
    with client() as api:
        if follow:
            wait_until_recorded(api, run_id, 0.3)
            for event, data in api.stream_events(f"/runs/{run_id}/logs/stream"):
                if as_json and event in ("line", "missing", "end"):
                    typer.echo(json.dumps({"event": event, **data}, default=str))
                elif event == "line":
                    typer.echo(format_line(data))
                elif event == "missing":
                    typer.echo(format_missing(int(data["from"]), int(data["to"])))
                elif event == "end":
                    errors.print(f"[dim]run {run_id} ended: {data.get('status')}[/dim]")
            return
        after, lines, missing = 0, [], []
        while True:
            page = api.get(f"/runs/{run_id}/logs", after=after, limit=1000)
            lines += page["lines"]
            missing += page["missing"]
            if page["complete"] or page["next_after"] <= after or not (page["lines"] or page["missing"]):
                break
            after = page["next_after"]
    if as_json:
        emit_json({"run_id": run_id, "lines": lines, "missing": missing})
        return
    entries = [(line["seq"], format_line(line)) for line in lines]
    entries += [(first, format_missing(first, last)) for first, last in missing]
    for _, text in sorted(entries, key=lambda entry: entry[0]):
        typer.echo(text)


REJECT_FIELDS = ("file", "line", "field", "reason", "record")


@app.command("rejects")
@api_command
def rejects(run_id: RunId, output: RecordsOutputOption = RecordsFormat.TABLE) -> None:
    """The run's rejected records, every page: file, line, field, reason and the raw record."""
    with client() as api:
        pages = api.pages(f"/runs/{run_id}/rejects")
        if output is RecordsFormat.CSV:  # streamed page by page, however many there are
            writer = csv.writer(sys.stdout, lineterminator="\n")
            for number, page in enumerate(pages):
                if number == 0:  # after the first answer: an unknown run prints no header
                    writer.writerow(REJECT_FIELDS)
                writer.writerows([item[name] for name in REJECT_FIELDS] for item in page["items"])
            return
        items: list[dict[str, Any]] = []
        for page in pages:
            items += page["items"]
    if output is RecordsFormat.JSON:
        emit_json({"run_id": run_id, "total": len(items), "items": items})
    elif items:
        table(items, REJECT_COLUMNS)
    else:
        console.print(f"run {run_id} has no rejected records", highlight=False)


NOT_YET_RECORDED_GRACE = 30.0  # seconds a new run may be unknown to the runs API


def wait_until_recorded(api: Client, run_id: str, interval: float, deadline: float | None = None) -> None:
    """A run just requested is recorded a moment later (the logsink hears of it through the broker).

    Unknown past the grace, or past the caller's `deadline` (a monotonic time): the 404 is the answer."""
    give_up = time.monotonic() + NOT_YET_RECORDED_GRACE
    if deadline is not None:
        give_up = min(give_up, deadline)
    while True:
        try:
            api.get(f"/runs/{run_id}")
            return
        except ApiError as exc:
            if exc.status != 404 or time.monotonic() >= give_up:
                raise
            time.sleep(interval)


@app.command("watch")
def watch(
    run_id: RunId,
    interval: Annotated[float, typer.Option(help="Seconds between polls.", min=0.1)] = 1.0,
    timeout: Annotated[float | None, typer.Option(help="Give up after this many seconds (exit 5).")] = None,
    output: OutputOption = Format.TABLE,
) -> None:
    """Follow a run with a progress bar (records, rate) until it ends.

    Exit code: 0 succeeded or partial, 3 failed, 4 stopped, 5 timed out, 1 the run could not be read.
    """
    watch_run(run_id, interval=interval, timeout=timeout, output=output)


def watch_run(run_id: str, *, interval: float, timeout: float | None, output: Format) -> None:
    try:
        api = Client()
    except Exception as exc:  # not logged in
        raise fail(str(exc)) from None
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        run = _poll(api, run_id, interval, deadline, quiet=output is Format.JSON)
    except ApiError as exc:
        raise fail(str(exc)) from None
    finally:
        api.close()
    if run is None:
        raise fail(f"run {run_id} did not end within {timeout:g} s", EXIT_TIMEOUT)
    if output is Format.JSON:
        emit_json(run)
    elif run.get("dry_run"):
        show_dry_run(run)
    else:
        counts = run.get("counts") or {}
        shown = ("read", "inserted", "updated", "unchanged", "rejected", "skipped")
        summary = ", ".join(
            f"{k} {counts.get(k, 0):,}" for k in shown if k not in ("unchanged", "skipped") or counts.get(k)
        )
        colour = {"Success": "green", "Skipped": "yellow"}.get(run["run_status"], "red")
        console.print(f"run {run_id}: [bold {colour}]{run['status']}[/bold {colour}] ({summary})"
                      + (f" error: {run['error']}" if run.get("error") else ""), highlight=False)  # fmt: skip
        if run.get("rejects_file"):
            console.print(f"rejects file: {run['rejects_file']}", highlight=False)
    raise typer.Exit(EXIT_BY_STATUS.get(run["status"], EXIT_FAILED))


def show_dry_run(run: dict[str, Any]) -> None:
    """What a dry run found: what a real run would do, and the first rejects."""
    counts = run.get("counts") or {}
    would = (f"read {counts.get('read', 0):,}, would insert {counts.get('inserted', 0):,}, "
             f"would update {counts.get('updated', 0):,}, unchanged {counts.get('unchanged', 0):,}, "
             f"would reject {counts.get('rejected', 0):,}")  # fmt: skip
    colour = "red" if run["status"] == "failed" else "green"
    console.print(f"dry run {run['run_id']}: [bold {colour}]{run['status']}[/bold {colour}] ({would}); "
                  "nothing was written" + (f" error: {run['error']}" if run.get("error") else ""),
                  highlight=False)  # fmt: skip
    rejects = run.get("first_rejects") or []
    if rejects:
        console.print(f"first {len(rejects)} reject(s):", highlight=False)
    for reject in rejects:
        console.print(f"  line {reject['line']} (file {reject['file'] + 1}): {reject['field']}: "
                      f"{reject['reason']}", highlight=False, markup=False)  # fmt: skip


def _poll(
    api: Client, run_id: str, interval: float, deadline: float | None, *, quiet: bool
) -> dict[str, Any] | None:
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[records]:>12,} records"),
        TextColumn("{task.fields[rate]:>9,.0f} rec/s"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=quiet,
    )
    with progress:
        task = progress.add_task(f"run {run_id}", total=None, records=0, rate=0.0)
        wait_until_recorded(api, run_id, interval, deadline)
        while True:
            run: dict[str, Any] = api.get(f"/runs/{run_id}")
            status = run["status"]
            p = run.get("progress") or {}
            records = int(p.get("records_read") or (run.get("counts") or {}).get("read") or 0)
            total = p.get("bytes_total")
            changes: dict[str, Any] = {"description": f"run {run_id} {status}", "records": records}
            if p:  # the last progress stays shown once the run has ended
                changes.update(rate=float(p.get("records_per_second") or 0.0), total=total or None,
                               completed=p.get("bytes_read") or 0)  # fmt: skip
            progress.update(task, **changes)
            if run["ended"]:
                progress.update(task, total=1, completed=1)
                return run
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(interval)
