"""The database operations the logsink's writes cost for one short run, counted by the server.

Counting is deterministic (no clock in it): the server's `serverStatus().opcounters` are diffed around
the logsink's writes of one short run's events (RunRequested, RunStarted, 3 RunLog, RunProgress,
RunFinished). Only the CRUD kinds are compared: the logsink sends nothing else, and the driver's own
`hello` heartbeats land in `command` whenever they happen to fall.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from services.logsink.domain import Planned, plan
from services.logsink.repository import MongoRunRecords
from services.logsink.service import LogsinkService
from shared.mongo import MongoClient
from tests.support.runlogs import stored_lines
from tests.unit.factories import T0, run_finished, run_log, run_progress, run_requested, run_started

CRUD = ("insert", "query", "update", "delete", "getmore")


class CountingMetrics:
    def __init__(self) -> None:
        self.recorded_by_kind: Counter[str] = Counter()
        self.duplicates_by_kind: Counter[str] = Counter()

    def recorded(self, kind: str, count: int) -> None:
        self.recorded_by_kind[kind] += count

    def duplicates(self, kind: str, count: int) -> None:
        self.duplicates_by_kind[kind] += count

    def batch_written(self, seconds: float) -> None: ...


def short_run(run_id: str) -> list[Planned]:
    events = [run_requested(run_id), run_started(run_id), *(run_log(run_id, seq) for seq in (1, 2, 3))]
    events += [run_progress(run_id, at=T0), run_finished(run_id)]
    return [plan(event.model_dump(mode="json")) for event in events]


async def crud_ops(mongo: MongoClient) -> Counter[str]:
    status = await mongo.admin.command("serverStatus")
    return Counter({kind: int(status["opcounters"].get(kind, 0)) for kind in CRUD})


async def counted(mongo: MongoClient, service: LogsinkService, batches: list[list[Planned]]) -> Counter[str]:
    before = await crud_ops(mongo)
    for batch in batches:
        await service.write_batch(batch)
    return await crud_ops(mongo) - before


async def record(records: MongoRunRecords, run_id: str) -> dict[str, Any]:
    doc = await records.runs.find_one({"_id": run_id})
    assert doc is not None
    return doc


async def test_a_short_run_in_one_batch_costs_one_update_and_one_insert(
    records: MongoRunRecords, mongo: MongoClient
) -> None:
    metrics = CountingMetrics()
    service = LogsinkService(records, metrics)
    events = short_run("7.1")

    ops = await counted(mongo, service, [events])

    assert ops == Counter({"update": 1, "insert": 1})  # the run record, its log chunk
    run = await record(records, "7.1")
    assert (run["status"], run["executor"], run["counts"]["read"]) == ("succeeded", "ex-1", 10)
    assert "progress" not in run  # it ended in the same batch: a terminal record shows no progress
    assert await stored_lines(records.logs, "7.1") == [("7.1", seq) for seq in (1, 2, 3)]
    assert metrics.duplicates_by_kind == Counter()

    # Delivered again (a crash between the write and the acknowledgement): nothing changes, each
    # event is counted as a duplicate.
    await service.write_batch(events)
    assert await record(records, "7.1") == run
    assert await stored_lines(records.logs, "7.1") == [("7.1", seq) for seq in (1, 2, 3)]
    assert metrics.duplicates_by_kind == Counter(
        {"run.requested": 1, "run.started": 1, "run.finished": 1, "run.log": 3}
    )


async def test_a_short_run_with_each_event_in_a_batch_of_its_own_costs_one_write_per_event(
    records: MongoRunRecords, mongo: MongoClient
) -> None:
    service = LogsinkService(records, CountingMetrics())

    ops = await counted(mongo, service, [[planned] for planned in short_run("7.2")])

    # requested, started, progress and finished: one update each; each line's chunk: one insert.
    assert ops == Counter({"update": 4, "insert": 3})
    run = await record(records, "7.2")
    assert run["status"] == "succeeded" and run["progress"]["at"].replace(tzinfo=None) == T0.replace(
        tzinfo=None
    )


async def test_a_late_progress_after_the_end_changes_nothing(
    records: MongoRunRecords, mongo: MongoClient
) -> None:
    service = LogsinkService(records, CountingMetrics())
    await service.write_batch(short_run("7.3"))
    final = await record(records, "7.3")

    late = run_progress("7.3", at=T0.replace(year=T0.year + 1))
    ops = await counted(mongo, service, [[plan(late.model_dump(mode="json"))]])

    assert ops == Counter({"update": 1})  # refused by the record's guard
    assert await record(records, "7.3") == final
