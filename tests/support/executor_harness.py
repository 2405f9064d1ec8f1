"""An executor in-process against the real database and sshd; events collected instead of published.

Holds no tests: the executor test modules import `harness` (fixture) and the helpers from here.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from services.executor.audience import MongoAudienceStore
from services.executor.exporters.run import ExportSettings
from services.executor.importers.run import ImportSettings
from services.executor.repository import (
    MongoCatalogReader,
    MongoLeaseStore,
    MongoRejectStore,
    MongoWatermarks,
)
from services.executor.service import ExecutionSettings, ExecutorService
from services.executor.table_writers import MongoTableWriters
from shared.catalog_records import LIST_SYSTEM_FIELDS
from shared.contracts import Envelope, RunFinished, RunRequested
from shared.contracts.jobs import JobSnapshot, JobType
from shared.contracts.runs import RunLog, RunProgress, RunRequestedData, Trigger
from shared.mongo import MongoClient
from shared.secrets import Binding, SecretBox
from shared.settings import CommonSettings
from tests.conftest import TEST_SECRET_KEY
from tests.support.servers import Sshd

T = TypeVar("T")
BOOKKEEPING = {"_id": 0, "_cx_run": 0, "_cx_at": 0}
_job_ids = itertools.count(1)


class Events:
    def __init__(self) -> None:
        self.messages: list[Envelope] = []
        self.changed = asyncio.Event()

    async def publish(self, message: Envelope) -> None:
        self.messages.append(message)
        self.changed.set()

    def of(self, run_id: str, kind: type[Envelope]) -> list[Any]:
        return [m for m in self.messages if isinstance(m, kind) and m.data.run_id == run_id]  # type: ignore[attr-defined]

    def logs(self, run_id: str) -> list[str]:
        return [m.data.message for m in self.of(run_id, RunLog)]


@dataclass
class Harness:
    settings: CommonSettings
    mongo: MongoClient
    sshd: Sshd
    folder: str  # the connection's base directory, under sshd.root
    box: SecretBox
    events: Events = field(default_factory=Events)
    services: list[ExecutorService] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.sshd.root / self.folder

    @property
    def audience(self) -> Any:
        return self.mongo[self.settings.audience_database]

    def service(self, *, batch_size: int = 1000, in_flight: int = 2, executor_id: str = "test-executor",
                lease_seconds: float = 30.0, progress: float = 0.5, max_attempts: int = 2,
                rest_backoff: float = 0.05, concurrency: int = 4,
                log_flush: float = 0.05, spool_dir: str | None = None) -> ExecutorService:  # fmt: skip
        s, mongo = self.settings, self.mongo
        service = ExecutorService(
            ExecutionSettings(
                executor_id=executor_id, concurrency=concurrency, lease_seconds=lease_seconds, progress_interval=progress,
                max_attempts=max_attempts, retry_backoff=0.05,
                imports=ImportSettings(batch_size=batch_size, read_chunk_bytes=64 * 1024, max_in_flight=in_flight,
                                       spool_dir=spool_dir),
                exports=ExportSettings(batch_size=batch_size, rest_max_attempts=4, rest_backoff=rest_backoff),
                table_poll_seconds=0.2, log_flush_seconds=log_flush,  # lines seen at once, as tests watch them
            ),
            leases=MongoLeaseStore(mongo, s.database("executor"), lease_seconds),
            writers=MongoTableWriters(mongo, s.database("executor"), lease_seconds),
            catalog=MongoCatalogReader(mongo, s.database("catalog")),
            store=MongoAudienceStore(mongo, s.audience_database),
            rejects=MongoRejectStore(mongo, s.database("executor")),
            watermarks=MongoWatermarks(mongo, s.database("executor")),
            publisher=self.events,
            secrets=self.box,
        )  # fmt: skip
        self.services.append(service)
        return service

    async def connection(self, *, connection_id: int = 1, host_key: str | None = None,
                         private_key: str | None = None) -> int:  # fmt: skip
        await self.mongo[self.settings.database("catalog")]["connections"].insert_one(
            {
                "_id": connection_id, "kind": "sftp", "name": f"sshd-{connection_id}",
                "host": self.sshd.host, "port": self.sshd.port, "username": self.sshd.username,
                "private_key_encrypted": self.box.encrypt(
                    private_key or self.sshd.private_key, Binding("connection", connection_id, "private_key_encrypted")
                ),
                "host_key": host_key or self.sshd.host_key, "base_dir": str(self.root),
                "created_at": datetime.now(UTC), "created_by": "test",
            }
        )  # fmt: skip
        return connection_id

    async def pgp_key(self, key_id: int, public: bytes, *, secret: bytes | None = None,
                      passphrase: str | None = None, expires: datetime | None = None) -> int:  # fmt: skip
        """A key record as the catalog stores it (`/keys`): the private key (base64 of the bytes given) and its
        passphrase encrypted with the executor's SecretBox. The facts are not read here: each run asks gpg."""
        await self.mongo[self.settings.database("catalog")]["pgp_keys"].insert_one(
            {
                "_id": key_id, "name": f"key-{key_id}", "kind": "private" if secret else "public",
                "fingerprint": "0" * 40, "user_ids": [], "algorithm": "EdDSA ed25519",
                "usage": ["sign", "certify", "encrypt"], "key_created": datetime.now(UTC), "expires": expires,
                "public_key": public.decode(),
                "private_key_encrypted": self.box.encrypt(
                    base64.b64encode(secret).decode(), Binding("pgp_key", key_id, "private_key_encrypted")
                ) if secret else None,
                "passphrase_encrypted": self.box.encrypt(
                    passphrase, Binding("pgp_key", key_id, "passphrase_encrypted")
                ) if passphrase else None,
                "created_at": datetime.now(UTC), "created_by": "test",
            }
        )  # fmt: skip
        return key_id

    async def rest_connection(self, connection_id: int, base_url: str, token: str) -> int:
        await self.mongo[self.settings.database("catalog")]["connections"].insert_one(
            {
                "_id": connection_id, "kind": "rest", "name": f"rest-{connection_id}", "base_url": base_url,
                "token_encrypted": self.box.encrypt(token, Binding("connection", connection_id, "token_encrypted")), "created_at": datetime.now(UTC), "created_by": "test",
            }
        )  # fmt: skip
        return connection_id

    async def table(self, name: str, fields: list[dict[str, Any]], *, kind: str = "custom",
                    primary_key: tuple[str, ...] = (), parent_list: str | None = None) -> None:  # fmt: skip
        all_fields = fields
        if kind == "list":
            all_fields = [f.model_dump() for f in LIST_SYSTEM_FIELDS] + fields
        elif kind == "profile_extension":
            all_fields = [LIST_SYSTEM_FIELDS[0].model_dump(), *fields]
        await self.mongo[self.settings.database("catalog")]["tables"].insert_one(
            {"name": name, "kind": kind, "primary_key": list(primary_key), "parent_list": parent_list,
             "fields": all_fields, "created_at": datetime.now(UTC), "created_by": "test"}
        )  # fmt: skip

    def write(self, relative: str, data: bytes | str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    async def rows(self, table: str, sort: str) -> list[dict[str, Any]]:
        cursor = self.audience[f"table_{table}"].find({}, BOOKKEEPING).sort(sort, 1)
        return [doc async for doc in cursor]

    def request(self, spec: dict[str, Any], *, job_id: int | None = None, run: int = 1) -> RunRequested:
        return run_request(spec, job_id=job_id, run=run)

    async def run(self, spec: dict[str, Any], *, service: ExecutorService | None = None, job_id: int | None = None,
                  run: int = 1, timeout: float = 60.0) -> RunFinished:  # fmt: skip
        request = self.request(spec, job_id=job_id, run=run)
        await (service or self.service()).accept(request)
        return await self.finished(request.data.run_id, timeout)

    async def finished(self, run_id: str, timeout: float = 60.0) -> RunFinished:
        done: list[RunFinished] = await self.until(lambda: self.events.of(run_id, RunFinished), timeout)
        return done[0]

    async def until(self, condition: Callable[[], T], timeout: float = 30.0) -> T:
        """Wait for `condition()` to be truthy and return its value: checked again on each collected event,
        not polled (`TimeoutError` after `timeout` seconds)."""
        async with asyncio.timeout(timeout):
            while not (value := condition()):
                self.events.changed.clear()
                await self.events.changed.wait()
        return value

    def progress(self, run_id: str) -> list[RunProgress]:
        return self.events.of(run_id, RunProgress)


def run_request(spec: dict[str, Any], *, job_id: int | None = None, run: int = 1) -> RunRequested:
    """An on-demand `RunRequested` of a job with `spec` (a new job id unless given)."""
    job_id = job_id or next(_job_ids)
    job = JobSnapshot.model_validate(
        {"job_id": job_id, "name": f"job {job_id}", "job_type": JobType(spec["kind"]), "spec": spec}
    )
    return RunRequested(
        source="test",
        data=RunRequestedData(
            run_id=f"{job_id}.{run}", job=job, trigger=Trigger.ON_DEMAND, requested_by="test",
            requested_at=datetime.now(UTC),
        ),
    )  # fmt: skip


@pytest.fixture(name="harness")
async def harness_fixture(
    settings: CommonSettings, mongo: MongoClient, sshd: Sshd, unique: str
) -> AsyncIterator[Harness]:
    (sshd.root / unique).mkdir()
    h = Harness(settings, mongo, sshd, unique, SecretBox(TEST_SECRET_KEY))
    # What the executor's start-up creates: the table writer lock relies on its unique index.
    await MongoLeaseStore(mongo, settings.database("executor"), 30.0).ensure_indexes()
    yield h
    for service in h.services:
        await service.shutdown(grace=5)


# --- the table writer lock, which lives on the run leases (`services/executor/table_writers.py`) ------------


def run_leases(h: Harness) -> Any:
    return h.mongo[h.settings.database("executor")]["run_leases"]


async def hold_table(h: Harness, collection: str, run_id: str, owner: str) -> None:
    """A foreign run (no executor here) holding `collection` with a live lease, as its claim leaves it."""
    await run_leases(h).insert_one(
        {"_id": run_id, "owner": owner, "status": "running", "phase": "attempting",
         "expires_at": datetime.now(UTC) + timedelta(hours=1), "writing": collection}
    )  # fmt: skip


async def free_table(h: Harness, collection: str, run_id: str) -> None:
    """The foreign run of `hold_table` ends: its result's write clears the lock."""
    await run_leases(h).update_one(
        {"_id": run_id, "writing": collection}, {"$set": {"status": "finished"}, "$unset": {"writing": ""}}
    )


async def table_holds(h: Harness) -> list[dict[str, Any]]:
    """Every held lock, as (table, run_id, owner) documents."""
    return [
        {"table": d["writing"], "run_id": d["_id"], "owner": d["owner"]}
        async for d in run_leases(h).find({"writing": {"$exists": True}})
    ]


async def expire_table_hold(h: Harness, collection: str) -> None:
    """What the others see when the holder's executor stalls longer than a lease: the lease expired."""
    await run_leases(h).update_one(
        {"writing": collection}, {"$set": {"expires_at": datetime(2000, 1, 1, tzinfo=UTC)}}
    )


async def audience_contents(h: Harness) -> dict[str, list[dict[str, Any]]]:
    """Every collection of the audience database with its full documents (bookkeeping fields too)."""
    names = sorted(await h.audience.list_collection_names())
    return {name: [doc async for doc in h.audience[name].find({}).sort("_id", 1)] for name in names}


def csv_text(rows: list[list[str]], *, newline: str = "\n") -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=newline).writerows(rows)
    return buffer.getvalue()


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


def import_spec(
    path: str, target: dict[str, Any], mapping: list[tuple[str, str]], **extra: Any
) -> dict[str, Any]:
    return {
        "kind": "import",
        "source": {"kind": "sftp", "connection_id": 1, "path": path, **extra.pop("source", {})},
        "mapping": [{"column": c, "field": f} for c, f in mapping],
        "target": target,
        **extra,
    }


CONTACT_FIELDS: list[dict[str, Any]] = [
    {"name": "customer_id", "type": "string", "required": True},
    {"name": "email", "type": "email", "required": True},
    {"name": "points", "type": "integer"},
]
CONTACT_MAPPING = [("id", "customer_id"), ("email", "email"), ("points", "points")]
