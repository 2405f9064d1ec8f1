"""Job use cases: the All jobs tab and its actions (edit, run now, stop, copy, delete, activate)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from services.catalog import audit, domain
from services.catalog.changes import SOURCE, Change, commit
from services.catalog.channels import check_rules
from services.catalog.definitions import DefinitionService
from services.catalog.domain import JobQuery, StoredJob
from services.catalog.domain.partner_files import dated_source_path
from services.catalog.groups import remove_members
from services.catalog.job_schemas import JobCreate, JobPatch, JobRunResult, JobUpdate, JobView, RunRefusal
from services.catalog.keys import check_job_keys
from services.catalog.ports import (
    CatalogRecords,
    CatalogRepository,
    CommandBus,
    Definitions,
    ReadModels,
    UnitOfWork,
)
from services.catalog.scheduler_client import request_run
from services.catalog.service import existing_connection, existing_table
from shared.contracts import JobChanged, JobDeleted, RunJob, StopRun
from shared.contracts.catalog import JobChangedData, JobDeletedData
from shared.contracts.jobs import ExportSpec, ImportSpec, JobSpec, JobType, Schedule
from shared.contracts.runs import RunJobData, StopRunData, Trigger
from shared.errors import Conflict, ConnectError, FieldProblem, NotFound, ValidationFailed
from shared.scheduling import validate_schedule

logger = logging.getLogger(__name__)
MAX_READ_TOGETHER = 500  # jobs one coalesced read asks for at most
Item = TypeVar("Item")


def _now() -> datetime:
    return datetime.now(UTC)


def _run_result(job_id: int, outcome: str | BaseException) -> JobRunResult:
    if isinstance(outcome, str):
        return JobRunResult(job_id=job_id, run_id=outcome)
    if isinstance(outcome, ConnectError):
        return JobRunResult(job_id=job_id, error=RunRefusal(code=outcome.code, message=outcome.message))
    if not isinstance(outcome, Exception):
        raise outcome  # cancellation and the like are not a job's outcome
    logger.error("bulk run now of job %s failed unexpectedly", job_id, exc_info=outcome)
    return JobRunResult(job_id=job_id, error=RunRefusal(code="internal_error", message="internal error"))


def job_changed(job: StoredJob) -> JobChanged:
    return JobChanged(
        source=SOURCE, subject=str(job.id), data=JobChangedData(job=job.snapshot(), active=job.active)
    )


class CoalescedReads(Generic[Item]):
    """Reads of items by id: those asked for while one read is in flight go together in the next one.

    A lone read waits for nothing; a burst of run-now requests costs a few queries, not one per request.
    Every read starts after it was asked for, so it sees each change committed before (nothing is cached:
    a user who edits a job and runs it at once runs the edited job)."""

    def __init__(self, read: Callable[[list[int]], Awaitable[dict[int, Item]]]) -> None:
        self.read = read
        self._waiting: dict[int, list[asyncio.Future[Item | None]]] = {}
        self._reading: asyncio.Task[None] | None = None

    async def get(self, item_id: int) -> Item | None:
        found: asyncio.Future[Item | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(item_id, []).append(found)
        if self._reading is None or self._reading.done():
            self._reading = asyncio.create_task(self._read_waiting())
        return await found

    async def _read_waiting(self) -> None:
        while self._waiting:
            ids = list(self._waiting)[:MAX_READ_TOGETHER]
            batch = {item_id: self._waiting.pop(item_id) for item_id in ids}
            try:
                docs = await self.read(ids)
            except Exception as exc:  # each waiting caller fails as a lone read would
                for futures in batch.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(exc)
                continue
            for item_id, futures in batch.items():
                for future in futures:
                    if not future.done():  # its caller may have gone (cancelled)
                        future.set_result(docs.get(item_id))


class JobService(DefinitionService[StoredJob, JobView]):
    kind = "job"

    def __init__(
        self, repo: CatalogRepository, reads: ReadModels, bus: CommandBus, *, run_request_timeout: float
    ) -> None:
        super().__init__(repo, reads, bus, run_request_timeout=run_request_timeout)
        self.run_now_reads = CoalescedReads(self._read_jobs)

    def definitions(self, records: CatalogRecords) -> Definitions[StoredJob]:
        return records.jobs

    async def _read_jobs(self, job_ids: list[int]) -> dict[int, StoredJob]:
        return {job.id: job for job in await self.repo.jobs.get_many(job_ids)}

    async def find(self, query: JobQuery, *, offset: int, limit: int) -> tuple[list[JobView], int]:
        """A page of the jobs `query` selects, and how many it selects in all."""
        jobs, total = await self.repo.jobs.page(query, offset=offset, limit=limit)
        return await self.views(jobs), total

    async def views(self, jobs: list[StoredJob]) -> list[JobView]:
        """Views of a page of jobs with two extra reads in all (groups, schedule state), not per job."""
        groups = await self.repo.groups.names({job.group_id for job in jobs if job.group_id is not None})
        states = await self.reads.schedule_states("job", [job.id for job in jobs])
        views = []
        for job in jobs:
            state = states.get(job.id)
            views.append(
                JobView(
                    **job.model_dump(
                        include={"id", "group_id", "name", "job_type", "created_at", "created_by"}
                    ),
                    group=None if job.group_id is None else groups.get(job.group_id),
                    state="active" if job.active else "inactive",
                    next_run=state.next_run if state else None,
                    previous_run=state.previous_run if state else None,
                    schedule_type=job.schedule.type,
                    expiration_date=job.expires_at,
                    partner_feed=job.is_partner_feed,
                    schedule=job.schedule,
                    spec=job.spec,
                    next_source_path=dated_source_path(
                        job.spec, job.schedule, (state.next_run if state else None) or datetime.now(UTC)
                    ),
                    notifications=list(job.notifications),
                    version=job.version,
                    updated_at=job.updated_at,
                    updated_by=job.updated_by,
                )
            )
        return views

    # --- defining ----------------------------------------------------------------------------------
    async def create(self, body: JobCreate, raw: dict[str, Any], by: str, *, copied: bool = False) -> JobView:
        await self.validate(body.spec, body.schedule, raw)
        await check_rules(self.repo, body.notifications)
        now = _now()
        if not copied:  # a copy keeps the original's instants; it is inactive until edited
            domain.check_instants(body.schedule, body.expires_at, now)

        async def work(unit: UnitOfWork) -> Change[StoredJob]:
            job = StoredJob(
                id=await unit.jobs.new_id(),
                name=body.name,
                job_type=JobType(body.spec.kind),
                active=body.active,
                spec=body.spec,
                schedule=body.schedule,
                expires_at=body.expires_at,
                notifications=tuple(body.notifications),
                created_at=now,
                created_by=by,
            )
            await unit.jobs.add(job)
            return Change(
                job, [job_changed(job)], [audit.change_entry(by, "job", job.id, "created", after=job)]
            )

        return await self.get((await commit(self.repo, self.bus, work)).id)

    async def replace(self, job_id: int, body: JobUpdate, raw: dict[str, Any], by: str) -> JobView:
        await self.validate(body.spec, body.schedule, raw)
        await check_rules(self.repo, body.notifications)
        current = await self.load(job_id)
        domain.check_instants(
            body.schedule, body.expires_at, _now(), before=(current.schedule, current.expires_at)
        )
        changes = {
            "name": body.name,
            "spec": body.spec,
            "schedule": body.schedule,
            "expires_at": body.expires_at,
            "notifications": tuple(body.notifications),
        }
        return await self._edit(job_id, body.version, changes, by)

    async def patch(self, job_id: int, body: JobPatch, raw: dict[str, Any], by: str) -> JobView:
        changes = {key: getattr(body, key) for key in body.model_fields_set - {"version"}}
        if None in (changes.get("name", ""), changes.get("spec", ""), changes.get("schedule", "")):
            raise ValidationFailed("name, spec and schedule cannot be null", field="body")
        if "notifications" in changes:
            changes["notifications"] = tuple(changes["notifications"] or ())
            await check_rules(self.repo, changes["notifications"])
        current = await self.load(job_id)
        schedule = changes.get("schedule", current.schedule)
        await self.validate(changes.get("spec", current.spec), schedule, raw)
        expires_at = changes.get("expires_at", current.expires_at)
        domain.check_instants(schedule, expires_at, _now(), before=(current.schedule, current.expires_at))
        return await self._edit(job_id, body.version, changes, by)

    async def set_active(self, job_id: int, active: bool, by: str) -> JobView:
        current = await self.load(job_id)
        action = "activated" if active else "deactivated"
        return await self._edit(job_id, current.version, {"active": active}, by, action)

    async def copy(self, job_id: int, name: str, by: str) -> JobView:
        """The guide's Copy: only an inactive, non-partner job; the copy is created inactive."""
        original = await self.load(job_id)
        domain.check_copy(original)
        body = JobCreate(
            name=name,
            spec=original.spec,
            schedule=original.schedule,
            expires_at=original.expires_at,
            notifications=list(original.notifications),
            active=False,
        )
        return await self.create(body, {}, by, copied=True)

    async def validate(self, spec: JobSpec, schedule: Schedule, raw: dict[str, Any]) -> None:
        unknown = [
            key
            for part in ("spec", "schedule")
            for key in domain.unknown_keys(raw.get(part), spec if part == "spec" else schedule, part)
        ]
        if unknown:
            raise ValidationFailed.of([FieldProblem(key, f"unknown field {key}") for key in unknown])
        validate_schedule(schedule)
        if isinstance(spec, ImportSpec):
            table = await existing_table(self.repo, spec.target.table, field="spec.target.table")
            connection = await existing_connection(self.repo, spec.source.connection_id)
            domain.validate_import(spec, table, connection)
        else:
            await self._validate_export(spec)
        await check_job_keys(self.repo, spec)

    async def _validate_export(self, spec: ExportSpec) -> None:
        table = await existing_table(self.repo, spec.source.table, field="spec.source.table")
        extensions = {
            extension.name: extension for extension in await self.repo.tables.extensions_of(table.name)
        }
        connection = await existing_connection(self.repo, spec.destination.connection_id)
        domain.validate_export(spec, table, extensions, connection)

    async def _edit(
        self, job_id: int, version: int, changes: dict[str, Any], by: str, action: str = "updated"
    ) -> JobView:
        async def work(unit: UnitOfWork) -> Change[StoredJob]:
            current = await self.load(job_id, unit)
            if current.version != version:
                raise Conflict(
                    f"job {job_id} was changed by someone else (version {current.version}, yours {version}); "
                    "reload it and edit again",
                    field="version",
                )
            job = current.model_copy(
                update={**changes, "version": version + 1, "updated_at": _now(), "updated_by": by}
            )
            job = StoredJob.model_validate(job.model_dump(by_alias=True))  # re-validate the merged job
            if not await unit.jobs.replace(job, version):
                raise Conflict(f"job {job_id} was changed by someone else; reload it", field="version")
            entry = audit.change_entry(by, "job", job_id, action, before=current, after=job)
            return Change(job, [job_changed(job)], [entry])

        return await self.get((await commit(self.repo, self.bus, work)).id)

    # --- running -----------------------------------------------------------------------------------
    async def run_now(self, job_id: int, by: str) -> str:
        """Ask the scheduler for a run; returns `JobID.RunID`. Scheduled runs are not affected.

        The job is read with the run-now requests that arrive meanwhile (`CoalescedReads`)."""
        return await self._request_run(job_id, by, Trigger.ON_DEMAND, domain.check_run_now)

    async def dry_run(self, job_id: int, by: str) -> str:
        """Ask the scheduler for a dry run (trigger `dry_run`): born there like every run, so it is
        recorded with its log; the executor reads and checks the current file and writes nothing."""
        return await self._request_run(job_id, by, Trigger.DRY_RUN, domain.check_dry_run)

    async def _request_run(
        self, job_id: int, by: str, trigger: Trigger, check: Callable[[StoredJob, datetime], None]
    ) -> str:
        job = await self.run_now_reads.get(job_id)
        if job is None:
            raise NotFound(f"job {job_id} does not exist", field="job_id")
        check(job, _now())
        data = RunJobData(job=job.snapshot(), trigger=trigger, requested_by=by)
        command = RunJob(source=SOURCE, subject=str(job_id), data=data)
        run_id = await request_run(self.bus, command, self.run_request_timeout)
        # One insert, once the scheduler accepted: a refused run-now leaves no entry.
        action = "dry-run" if trigger == Trigger.DRY_RUN else "run-now"
        await audit.record(
            self.repo, audit.change_entry(by, "job", job_id, action, detail={"run_id": run_id})
        )
        return run_id

    async def run_many(self, job_ids: list[int], by: str) -> list[JobRunResult]:
        """Bulk trigger: Run now for each job at once, each checked on its own, results in `job_ids`' order.

        A refusal (the same as `run_now`'s: unknown, inactive, expired, partner feed, running, scheduler
        unavailable) is reported for its job and does not stop the others."""
        outcomes = await asyncio.gather(
            *(self.run_now(job_id, by) for job_id in job_ids), return_exceptions=True
        )
        return [_run_result(job_id, outcome) for job_id, outcome in zip(job_ids, outcomes, strict=True)]

    async def stop(self, job_id: int, confirm: bool, by: str) -> str:
        """The guide's Stop: needs confirmation; every executor hears it, the one running it stops."""
        domain.require_confirmation(confirm, "Stop")
        await self.load(job_id)
        run_id = await self.reads.run_in_flight(job_id)
        if run_id is None:
            raise Conflict(f"job {job_id} is not running")
        await self.bus.publish(
            StopRun(source=SOURCE, subject=run_id, data=StopRunData(run_id=run_id, requested_by=by))
        )
        await audit.record(
            self.repo, audit.change_entry(by, "job", job_id, "stop", detail={"run_id": run_id})
        )
        return run_id

    # --- deleting ----------------------------------------------------------------------------------
    async def delete(self, job_ids: list[int], confirm: bool, by: str) -> list[int]:
        """Delete jobs, all or none; loaded records stay. A running job must be stopped first."""
        domain.require_confirmation(confirm, "Delete")
        unique_ids = sorted(set(job_ids))
        running = await self.reads.jobs_in_flight(unique_ids)
        if running:
            raise Conflict(f"job(s) {', '.join(map(str, running))} are running; stop them first", field="ids")
        return await commit(self.repo, self.bus, lambda unit: self._delete(unique_ids, unit, by))

    async def expire(self, job_id: int) -> None:
        """Delete a job whose expiration date passed (the scheduler waited for its run to finish)."""
        if await self.repo.jobs.get(job_id) is not None:
            await commit(self.repo, self.bus, lambda unit: self._delete([job_id], unit, audit.SYSTEM))

    async def _delete(self, job_ids: list[int], unit: UnitOfWork, by: str) -> Change[list[int]]:
        found = {job.id: job for job in await unit.jobs.get_many(job_ids)}  # those that exist
        missing = [job_id for job_id in job_ids if job_id not in found]
        if missing:
            raise NotFound(
                f"job(s) {', '.join(map(str, missing))} do not exist; nothing was deleted", field="ids"
            )
        await unit.jobs.remove(job_ids)
        group_events, group_entries = await remove_members(unit, job_ids, by)
        deleted = [JobDeleted(source=SOURCE, subject=str(i), data=JobDeletedData(job_id=i)) for i in job_ids]
        entries = [
            audit.change_entry(
                by, "job", i, "deleted", before={"name": found[i].name, "version": found[i].version}
            )
            for i in job_ids
        ]
        return Change(job_ids, [*deleted, *group_events], [*entries, *group_entries])
