"""Run records against the real database: idempotent and tolerant of any event order."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from services.catalog.adapters.runs_read_model import MongoRunsReadModel
from services.logsink.domain import plan
from services.logsink.repository import MongoRunRecords
from services.logsink.service import LogsinkService
from shared.contracts import Envelope, RunFinished, RunLog, RunProgress, RunStarted
from shared.contracts.runs import (
    RunCounts,
    RunFinishedData,
    RunLogData,
    RunProgressData,
    RunStartedData,
    RunStatus,
)
from shared.mongo import MongoClient
from shared.settings import CommonSettings
from tests.integration.test_messaging import run_requested
from tests.support.runlogs import stored_lines

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def lifecycle(run_id: str) -> list[Envelope]:
    requested = run_requested(run_id)
    started = RunStarted(
        source="t",
        data=RunStartedData(
            run_id=run_id, job_id=7, job_name="job", job_type="import", trigger="on_demand",
            executor="ex-1", attempt=1, started_at=T0,
        ),
    )  # fmt: skip
    progress = RunProgress(
        source="t",
        data=RunProgressData(
            run_id=run_id, records_read=5, records_written=5, records_rejected=0, bytes_read=50,
            records_per_second=10, at=T0 + timedelta(seconds=1),
        ),
    )  # fmt: skip
    finished = RunFinished(
        source="t",
        data=RunFinishedData(
            run_id=run_id, job_id=7, status=RunStatus.SUCCEEDED, counts=RunCounts(read=10, inserted=10),
            started_at=T0, finished_at=T0 + timedelta(seconds=4), last_log_seq=2,
        ),
    )  # fmt: skip
    return [requested, started, progress, finished]


class NoMetrics:
    def recorded(self, kind: str, count: int) -> None: ...

    def duplicates(self, kind: str, count: int) -> None: ...

    def batch_written(self, seconds: float) -> None: ...


async def record_all(service: LogsinkService, events: list[Envelope], *, one_batch: bool = False) -> None:
    planned = [plan(event.model_dump(mode="json")) for event in events]
    if one_batch:
        await service.write_batch(planned)
        return
    for item in planned:
        await service.write_batch([item])


async def test_any_order_and_duplicates_give_the_same_terminal_record(
    records: MongoRunRecords, mongo: MongoClient, settings: CommonSettings
) -> None:
    service = LogsinkService(records, NoMetrics())
    runs = mongo[settings.database("logsink")]["runs"]
    orders = [(order, one_batch) for order in itertools.permutations(range(4)) for one_batch in (False, True)]
    for number, (order, one_batch) in enumerate(orders, start=1):
        run_id = f"7.{number}"
        events = lifecycle(run_id)
        # + redelivered, one event per batch or all in one batch
        await record_all(service, [events[i] for i in order] + [events[3], events[1]], one_batch=one_batch)
        doc: dict[str, Any] | None = await runs.find_one({"_id": run_id})
        assert doc is not None
        assert doc["status"] == "succeeded", (order, one_batch, doc)
        assert doc["counts"]["read"] == 10
        assert doc["duration_seconds"] == 4.0
        assert doc["started_at"].replace(tzinfo=UTC) == T0
        assert doc["job_name"] == "job" and doc["executor"] == "ex-1"


async def test_log_lines_are_stored_once(
    records: MongoRunRecords, mongo: MongoClient, settings: CommonSettings
) -> None:
    service = LogsinkService(records, NoMetrics())
    line = RunLog(source="t", data=RunLogData(run_id="7.1", seq=1, message="hello", at=T0))
    await record_all(service, [line, line])
    await record_all(service, [line, line], one_batch=True)
    logs = mongo[settings.database("logsink")]["run_logs"]
    assert await stored_lines(logs, "7.1") == [("7.1", 1)]


class CountingMetrics(NoMetrics):
    def __init__(self) -> None:
        self.lines = self.dups = 0

    def recorded(self, kind: str, count: int) -> None:
        self.lines += count

    def duplicates(self, kind: str, count: int) -> None:
        self.dups += count


async def test_redelivered_lines_in_other_batches_are_read_back_once_in_order(
    records: MongoRunRecords, mongo: MongoClient, settings: CommonSettings
) -> None:
    """Lines redelivered in other groupings: the chunk whose start is taken is cut to the lines not
    stored; an overlap starting elsewhere is stored twice and read back once; every page is in order."""
    metrics = CountingMetrics()
    service = LogsinkService(records, metrics)

    def lines(*seqs: int) -> list[Envelope]:
        return [
            RunLog(source="t", data=RunLogData(run_id="7.1", seq=seq, message=f"line {seq}", at=T0))
            for seq in seqs
        ]

    await record_all(service, lines(1, 2, 3, 9), one_batch=True)
    await record_all(service, lines(1, 2, 3, 4, 5, 6), one_batch=True)  # chunk 1 taken: 4-6 written
    await record_all(service, lines(5, 6, 7, 8, 9, 10), one_batch=True)  # overlaps, starts at 5
    await record_all(service, lines(12), one_batch=True)
    read = MongoRunsReadModel(mongo, settings.database("logsink"), settings.database("executor"))

    pages, after = [], 0
    while page := await read.logs("7.1", after=after, limit=3):
        pages.append([line["seq"] for line in page])
        after = page[-1]["seq"]
    assert pages == [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 12]]
    assert [line["message"] for line in await read.logs("7.1", after=8, limit=2)] == ["line 9", "line 10"]
    assert await read.logs("7.1", after=12, limit=3) == []
    # 1-3 again are counted as duplicates; 5, 6 and 9 again went into a chunk starting elsewhere.
    assert (metrics.lines, metrics.dups) == (14, 3)


async def test_run_logs_expire_after_the_retention_and_a_changed_retention_is_applied(
    mongo: MongoClient, settings: CommonSettings
) -> None:
    db = settings.database("logsink")
    await MongoRunRecords(mongo, db, log_retention_days=7).ensure_indexes()
    await MongoRunRecords(mongo, db, log_retention_days=2).ensure_indexes()  # retention changed

    indexes = await mongo[db]["run_logs"].index_information()
    ttl = [spec for spec in indexes.values() if "expireAfterSeconds" in spec]
    assert [(spec["key"], spec["expireAfterSeconds"]) for spec in ttl] == [([("at", 1)], 2 * 86400)]
    run_indexes = await mongo[db]["runs"].index_information()
    assert not any("expireAfterSeconds" in spec for spec in run_indexes.values())  # run records are kept
    await mongo.drop_database(db)
