"""Builders of valid messages and job specifications for the unit tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shared.contracts import (
    Envelope,
    GroupChanged,
    GroupDeleted,
    JobChanged,
    JobDeleted,
    RunFinished,
    RunJob,
    RunLog,
    RunProgress,
    RunRequested,
    RunStarted,
    StopRun,
)
from shared.contracts.catalog import (
    Expire,
    ExpireData,
    GroupChangedData,
    GroupDeletedData,
    JobChangedData,
    JobDeletedData,
)
from shared.contracts.groups import (
    GroupRunFinished,
    GroupRunFinishedData,
    GroupRunStarted,
    GroupRunStartedData,
    RunGroup,
    RunGroupData,
    StopGroupRun,
    StopGroupRunData,
)
from shared.contracts.jobs import (
    CustomTableTarget,
    FieldMapping,
    ImportSpec,
    JobSnapshot,
    JobType,
    SftpSource,
)
from shared.contracts.runs import (
    LogLevel,
    RunCounts,
    RunFinishedData,
    RunJobData,
    RunLogData,
    RunProgressData,
    RunRequestedData,
    RunStartedData,
    RunStatus,
    StopRunData,
    Trigger,
)
from shared.contracts.triggers import TriggerData, TriggerFired

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def import_spec(
    path: str = "in/people.csv", *, mapping: tuple[tuple[str, str], ...] | None = None
) -> ImportSpec:
    pairs = mapping if mapping is not None else (("Email", "email"), ("Name", "name"))
    return ImportSpec(
        source=SftpSource(connection_id=1, path=path),
        mapping=tuple(FieldMapping(column=column, field=field) for column, field in pairs),
        target=CustomTableTarget(table="people"),
    )


def job_snapshot(job_id: int = 7, name: str = "nightly people") -> JobSnapshot:
    return JobSnapshot(job_id=job_id, name=name, job_type=JobType.IMPORT, version=3, spec=import_spec())


def run_job(job_id: int = 7, *, command_id: str | None = None) -> RunJob:
    extra: dict[str, Any] = {"id": command_id} if command_id is not None else {}
    return RunJob(
        source="connect/catalog", data=RunJobData(job=job_snapshot(job_id), requested_by="ops"), **extra
    )


def run_requested(run_id: str = "7.1") -> RunRequested:
    return RunRequested(
        source="connect/scheduler",
        subject=run_id,
        data=RunRequestedData(
            run_id=run_id,
            job=job_snapshot(int(run_id.split(".")[0])),
            trigger=Trigger.SCHEDULED,
            requested_by="scheduler",
            requested_at=T0,
        ),
    )


def run_started(
    run_id: str = "7.1", *, at: datetime = T0, executor: str = "ex-1", attempt: int = 1
) -> RunStarted:
    return RunStarted(
        source="connect/executor",
        data=RunStartedData(
            run_id=run_id,
            job_id=int(run_id.split(".")[0]),
            job_name="nightly people",
            job_type=JobType.IMPORT,
            trigger=Trigger.SCHEDULED,
            executor=executor,
            attempt=attempt,
            started_at=at,
        ),
    )


def run_progress(run_id: str = "7.1", *, at: datetime = T0) -> RunProgress:
    return RunProgress(
        source="connect/executor",
        data=RunProgressData(
            run_id=run_id,
            records_read=10,
            records_written=9,
            records_rejected=1,
            bytes_read=512,
            bytes_total=1024,
            records_per_second=5.5,
            at=at,
        ),
    )


def run_log(run_id: str = "7.1", seq: int = 1) -> RunLog:
    return RunLog(
        source="connect/executor",
        data=RunLogData(
            run_id=run_id,
            seq=seq,
            level=LogLevel.WARNING,
            message="hello",
            fields={"n": 1, "ok": True},
            at=T0,
        ),
    )


def run_finished(
    run_id: str = "7.1",
    *,
    status: RunStatus = RunStatus.SUCCEEDED,
    started_at: datetime = T0,
    finished_at: datetime = T0 + timedelta(seconds=90),
) -> RunFinished:
    return RunFinished(
        source="connect/executor",
        data=RunFinishedData(
            run_id=run_id,
            job_id=int(run_id.split(".")[0]),
            status=status,
            counts=RunCounts(read=10, inserted=6, updated=3, rejected=1),
            started_at=started_at,
            finished_at=finished_at,
            rejects_file="in/people.csv.7.1.rejects.csv",
            last_log_seq=4,
        ),
    )


def sample_message(cls: type[Envelope]) -> Envelope:
    """One valid instance of every message class in `ALL_MESSAGES`."""
    samples: dict[type[Envelope], Envelope] = {
        RunJob: run_job(),
        StopRun: StopRun(source="connect/catalog", data=StopRunData(run_id="7.1", requested_by="ops")),
        RunRequested: run_requested(),
        RunStarted: run_started(),
        RunProgress: run_progress(),
        RunLog: run_log(),
        RunFinished: run_finished(),
        JobChanged: JobChanged(
            source="connect/catalog", data=JobChangedData(job=job_snapshot(), active=True)
        ),
        JobDeleted: JobDeleted(source="connect/catalog", data=JobDeletedData(job_id=7)),
        GroupChanged: GroupChanged(
            source="connect/catalog",
            data=GroupChangedData(group_id=2, name="morning", job_ids=(7, 8), active=False),
        ),
        GroupDeleted: GroupDeleted(source="connect/catalog", data=GroupDeletedData(group_id=2)),
        Expire: Expire(source="connect/scheduler", data=ExpireData(kind="job", id=7)),
        RunGroup: RunGroup(source="connect/catalog", data=RunGroupData(group_id=2, requested_by="ops")),
        StopGroupRun: StopGroupRun(
            source="connect/catalog", data=StopGroupRunData(group_run_id="2.5", requested_by="ops")
        ),
        GroupRunStarted: GroupRunStarted(
            source="connect/scheduler",
            data=GroupRunStartedData(
                group_run_id="2.5",
                group_id=2,
                group_name="morning",
                job_ids=(7, 8),
                trigger=Trigger.GROUP,
                started_at=T0,
            ),
        ),
        GroupRunFinished: GroupRunFinished(
            source="connect/scheduler",
            data=GroupRunFinishedData(
                group_run_id="2.5",
                group_id=2,
                status=RunStatus.FAILED,
                member_run_ids=("7.3", "8.1"),
                finished_at=T0,
                error="8.1 failed",
            ),
        ),
        TriggerFired: TriggerFired(
            source="crm",
            data=TriggerData(
                name="crm.export-ready", idempotency_key="batch-42", params={"day": "2024-05-01"}
            ),
        ),
    }
    if cls not in samples:
        raise AssertionError(f"add a sample {cls.__name__} to tests/unit/factories.py")
    return samples[cls]
