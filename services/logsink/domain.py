"""How each lifecycle event changes a run record: pure (filter, update) pairs.

Order-tolerant and idempotent by construction: a terminal record's status and results never change
again (a late `RunStarted` only fills in who ran it and when it started; a late `RunProgress` does
nothing), and `RunRequested` only fills in what is missing.
"""

from __future__ import annotations

from typing import Any

from shared.contracts import RunFinished, RunLog, RunProgress, RunRequested, RunStarted
from shared.contracts.runs import TERMINAL_STATUSES, RunStatus

Update = tuple[dict[str, Any], dict[str, Any], bool]  # filter, update, upsert

_TERMINAL = [status.value for status in TERMINAL_STATUSES]
NOT_TERMINAL = {"status": {"$nin": _TERMINAL}}


def job_fields(run_id: str, job_id: int, name: str, job_type: str, trigger: str) -> dict[str, Any]:
    return {"run_id": run_id, "job_id": job_id, "job_name": name, "job_type": job_type, "trigger": trigger}


def on_requested(event: RunRequested) -> Update:
    data = event.data
    fields = job_fields(data.run_id, data.job.job_id, data.job.name, data.job.job_type.value, data.trigger)
    fields.update(
        requested_at=data.requested_at, requested_by=data.requested_by, run_number=_number(data.run_id)
    )
    return {"_id": data.run_id}, {"$setOnInsert": {"status": RunStatus.QUEUED.value}, "$set": fields}, True


def on_started(event: RunStarted) -> list[Update]:
    data = event.data
    fields = job_fields(data.run_id, data.job_id, data.job_name, data.job_type.value, data.trigger)
    taken_by = {"executor": data.executor, "attempt": data.attempt}
    return [
        # Who runs it: only a later attempt (a take-over) replaces an earlier one's executor.
        (
            {"_id": data.run_id, "attempt": {"$not": {"$gte": data.attempt}}},
            {"$set": {**fields, **taken_by}, "$setOnInsert": {"status": RunStatus.RUNNING.value}},
            True,
        ),
        # The first start time stays.
        ({"_id": data.run_id}, {"$min": {"started_at": data.started_at}}, False),
        # Queued becomes running; a terminal status never goes back.
        (
            {"_id": data.run_id, "status": RunStatus.QUEUED.value},
            {"$set": {"status": RunStatus.RUNNING.value}},
            False,
        ),
    ]


def on_progress(event: RunProgress) -> Update:
    data = event.data
    progress = data.model_dump(mode="python", exclude={"run_id"})
    newer = {"_id": data.run_id, **NOT_TERMINAL, "progress.at": {"$not": {"$gt": data.at}}}
    return newer, {"$set": {"progress": progress}}, False


def on_finished(event: RunFinished) -> Update:
    data = event.data
    duration = max((data.finished_at - data.started_at).total_seconds(), 0.0)
    finished = {
        "run_id": data.run_id,
        "job_id": data.job_id,
        "run_number": _number(data.run_id),
        "status": data.status.value,
        "counts": data.counts.model_dump(),
        "finished_at": data.finished_at,
        "duration_seconds": duration,
        "error": data.error,
        "rejects_file": data.rejects_file,
        "last_log_seq": data.last_log_seq,
        "finished_event_id": event.id,
    }
    return (
        {"_id": data.run_id, **NOT_TERMINAL},
        {"$set": finished, "$min": {"started_at": data.started_at}},
        True,
    )


def log_document(event: RunLog) -> dict[str, Any]:
    data = event.data
    return {
        "_id": f"{data.run_id}:{data.seq:010d}",  # one document per (run, seq): a redelivery is a no-op
        "run_id": data.run_id,
        "seq": data.seq,
        "level": data.level.value,
        "message": data.message,
        "fields": data.fields,
        "at": data.at,
    }


def _number(run_id: str) -> int:
    return int(run_id.split(".", 1)[1])
