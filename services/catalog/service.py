"""Catalog use cases: define connections, tables and jobs; run a job now; read runs and logs."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.catalog import domain
from services.catalog.domain import Role
from services.catalog.errors import RunRefused
from services.catalog.ports import CatalogRepository, CommandBus, RunsReadModel
from services.catalog.schemas import (
    ConnectionCreate,
    ConnectionView,
    JobCreate,
    JobView,
    RunLogLine,
    RunLogPage,
    RunView,
    TableCreate,
    TableView,
)
from shared.catalog_records import ConnectionRecord
from shared.contracts import JobChanged, JobSnapshot, RunJob, RunJobReply
from shared.contracts.catalog import JobChangedData
from shared.contracts.runs import RunCounts, RunJobData, Trigger
from shared.errors import NotFound, RetryableError, Unauthorized
from shared.runid import RunId
from shared.runlogs import missing_sequences
from shared.secrets import SecretBox

logger = logging.getLogger(__name__)
SOURCE = "connect/catalog"


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role


def _now() -> datetime:
    return datetime.now(UTC)


async def issue_token(repo: CatalogRepository, name: str, role: Role) -> str:
    """A new API token; only its hash is stored, so it is shown once."""
    token = f"cnt_{secrets.token_urlsafe(32)}"
    document = {
        "_id": domain.hash_token(token),
        "name": name,
        "role": role.name.lower(),
        "created_at": _now(),
    }
    await repo.insert("tokens", document)
    return token


class CatalogService:
    def __init__(
        self,
        repo: CatalogRepository,
        runs: RunsReadModel,
        bus: CommandBus,
        secret_box: SecretBox,
        *,
        run_request_timeout: float,
    ) -> None:
        self.repo = repo
        self.runs = runs
        self.bus = bus
        self.secret_box = secret_box
        self.run_request_timeout = run_request_timeout

    # --- tokens ------------------------------------------------------------------------------------
    async def authenticate(self, token: str) -> Principal:
        doc = await self.repo.find("tokens", {"_id": domain.hash_token(token)})
        if doc is None:
            raise Unauthorized("invalid or revoked token")
        return Principal(name=doc["name"], role=Role.parse(doc["role"]))

    # --- connections -------------------------------------------------------------------------------
    async def create_connection(self, body: ConnectionCreate, by: Principal) -> ConnectionView:
        document = body.model_dump(exclude={"password", "private_key"})
        document.update(_id=await self.repo.next_id("connection"), created_at=_now(), created_by=by.name)
        if body.password is not None:
            document["password_encrypted"] = self.secret_box.encrypt(body.password.get_secret_value())
        if body.private_key is not None:
            document["private_key_encrypted"] = self.secret_box.encrypt(body.private_key.get_secret_value())
        await self.repo.insert("connections", document)
        return connection_view(ConnectionRecord.model_validate(document))

    async def get_connection(self, connection_id: int) -> ConnectionView:
        return connection_view(await self.repo.connection(connection_id))

    async def list_connections(self, *, offset: int, limit: int) -> tuple[list[ConnectionView], int]:
        docs, total = await self.repo.page("connections", {}, sort="_id", offset=offset, limit=limit)
        return [connection_view(ConnectionRecord.model_validate(doc)) for doc in docs], total

    # --- tables ------------------------------------------------------------------------------------
    async def create_table(self, body: TableCreate, by: Principal) -> TableView:
        domain.validate_table(body.name, tuple(body.primary_key), [f.name for f in body.fields])
        document = body.model_dump(mode="json") | {"created_at": _now(), "created_by": by.name}
        await self.repo.insert("tables", document)
        return TableView.model_validate(document)

    async def get_table(self, name: str) -> TableView:
        return TableView.model_validate((await self.repo.table(name)).model_dump())

    async def list_tables(self, *, offset: int, limit: int) -> tuple[list[TableView], int]:
        docs, total = await self.repo.page("tables", {}, sort="name", offset=offset, limit=limit)
        return [TableView.model_validate(doc) for doc in docs], total

    # --- jobs --------------------------------------------------------------------------------------
    async def create_job(self, body: JobCreate, by: Principal) -> JobView:
        table = await self.repo.table(body.spec.target.table)
        connection = await self.repo.connection(body.spec.source.connection_id)
        domain.validate_import(body.spec, table, connection)
        document = {
            "_id": await self.repo.next_id("job"),
            "name": body.name,
            "job_type": body.spec.kind,
            "active": body.active,
            "spec": body.spec.model_dump(mode="json"),
            "version": 1,
            "created_at": _now(),
            "created_by": by.name,
        }
        await self.repo.insert("jobs", document)
        await self._announce(document)
        return await self._job_view(document)

    async def get_job(self, job_id: int) -> JobView:
        return await self._job_view(await self._job(job_id))

    async def list_jobs(
        self, filter_: dict[str, Any], *, sort: str, offset: int, limit: int
    ) -> tuple[list[JobView], int]:
        docs, total = await self.repo.page("jobs", filter_, sort=sort, offset=offset, limit=limit)
        return [await self._job_view(doc) for doc in docs], total

    async def run_now(self, job_id: int, by: Principal) -> str:
        """Ask the scheduler for a run; returns `JobID.RunID`. Scheduled runs are not affected."""
        document = await self._job(job_id)
        if not document["active"]:
            raise RunRefused(f"job {job_id} is inactive; activate it to run it")
        command = RunJob(
            source=SOURCE,
            subject=str(job_id),
            data=RunJobData(job=_snapshot(document), trigger=Trigger.ON_DEMAND, requested_by=by.name),
        )
        reply = RunJobReply.model_validate(await self.bus.request(command, timeout=self.run_request_timeout))
        if not reply.accepted or reply.run_id is None:
            raise RunRefused(reply.reason or "the scheduler refused the run")
        return reply.run_id

    # --- runs (read model) -------------------------------------------------------------------------
    async def list_runs(
        self, filter_: dict[str, Any], *, offset: int, limit: int
    ) -> tuple[list[RunView], int]:
        docs, total = await self.runs.page(filter_, offset=offset, limit=limit)
        return [run_view(doc) for doc in docs], total

    async def get_run(self, run_id: str) -> RunView:
        doc = await self.runs.get(str(RunId.parse(run_id)))
        if doc is None:
            raise NotFound(f"run {run_id} does not exist", field="run_id")
        return run_view(doc)

    async def run_logs(self, run_id: str, *, after: int, limit: int) -> RunLogPage:
        run = await self.get_run(run_id)
        docs = await self.runs.logs(run.run_id, after=after, limit=limit)
        lines = [RunLogLine.model_validate(doc) for doc in docs]
        complete = len(lines) < limit  # only the last page can compare with the announced end
        announced = run.last_log_seq if complete else None
        gaps = missing_sequences([line.seq for line in lines], start=after + 1, last_seq=announced)
        return RunLogPage(run_id=run.run_id, lines=lines, missing=gaps)

    # --- helpers -----------------------------------------------------------------------------------
    async def _job(self, job_id: int) -> dict[str, Any]:
        doc = await self.repo.find("jobs", {"_id": job_id})
        if doc is None:
            raise NotFound(f"job {job_id} does not exist", field="job_id")
        return doc

    async def _job_view(self, doc: dict[str, Any]) -> JobView:
        return JobView(
            id=doc["_id"],
            name=doc["name"],
            job_type=doc["job_type"],
            state="active" if doc["active"] else "inactive",
            created_at=doc["created_at"],
            created_by=doc["created_by"],
            previous_run=await self.runs.last_start(doc["_id"]),
            version=doc["version"],
            spec=doc["spec"],
        )

    async def _announce(self, document: dict[str, Any]) -> None:
        event = JobChanged(
            source=SOURCE,
            subject=str(document["_id"]),
            data=JobChangedData(job=_snapshot(document), active=document["active"]),
        )
        try:
            await self.bus.publish(event)
        except RetryableError:
            logger.warning("could not announce a job change", extra={"job_id": document["_id"]})


def _snapshot(document: dict[str, Any]) -> JobSnapshot:
    return JobSnapshot(
        job_id=document["_id"],
        name=document["name"],
        job_type=document["job_type"],
        version=document["version"],
        spec=document["spec"],
    )


def connection_view(record: ConnectionRecord) -> ConnectionView:
    return ConnectionView(
        **record.model_dump(exclude={"password_encrypted", "private_key_encrypted"}),
        auth="private_key" if record.private_key_encrypted else "password",
    )


def run_view(doc: dict[str, Any]) -> RunView:
    return RunView(
        run_id=doc["_id"],
        job_id=doc["job_id"],
        job_name=doc.get("job_name"),
        job_type=doc.get("job_type"),
        trigger=doc.get("trigger"),
        status=doc.get("status", "queued"),
        start_time=doc.get("started_at"),
        duration_seconds=doc.get("duration_seconds"),
        counts=RunCounts.model_validate(doc.get("counts") or {}),
        error=doc.get("error"),
        rejects_file=doc.get("rejects_file"),
        executor=doc.get("executor"),
        last_log_seq=doc.get("last_log_seq"),
    )
