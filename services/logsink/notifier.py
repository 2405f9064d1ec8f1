"""Making notifications: once a batch's final outcomes are recorded, the ones their rules owe.

Called from the batch write path, after the run records are written and before the batch's
messages are acknowledged: a crash in between redelivers the `RunFinished`, which makes the same
ids again (an insert of an id that is there does nothing), so none is lost and none doubled.

Cost: one read of the rules of the batch's finished jobs (and groups) — none for runs whose job had
no rules when they were requested (`RunFinished.notify` false: the job's snapshot says so, so a run
of a job without rules costs nothing here; rules added while it runs apply from the next run); only
for those that have rules, their records, the previous run's status (only when a rule listens for `recovered`) and
the channels named.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from services.logsink import messages, outcomes
from services.logsink.domain import Ended
from services.logsink.ports import NotificationReads
from shared.catalog_records import NotificationChannelRecord, NotificationRule
from shared.contracts.runs import RunStatus
from shared.notification_records import NotificationField as F
from shared.notification_records import NotificationStatus, OwnerKind, notification_id
from shared.run_records import GroupRunField, RunField, run_number

Document = dict[str, Any]


def recipient(channel: NotificationChannelRecord) -> str:
    return ", ".join(channel.to) if channel.kind == "smtp" else channel.url


def new_notification(
    owner_kind: OwnerKind,
    ended: Ended,
    due: outcomes.Due,
    channel: NotificationChannelRecord | None,
    body: Document,
    now: datetime,
) -> Document:
    """A pending notification, or one failed at once when its channel was deleted meanwhile."""
    doc: Document = {
        F.ID: body["notification_id"],
        F.RUN_ID: ended.run_id,
        F.OWNER_KIND: owner_kind,
        F.OWNER_ID: ended.owner_id,
        F.RULE: due.rule,
        F.CHANNEL_ID: due.channel_id,
        F.OUTCOME: due.outcome.value,
        F.ATTEMPTS: 0,
        F.LAST_ERROR: None,
        F.CREATED_AT: now,
        F.NEXT_ATTEMPT_AT: now,
        F.SENT_AT: None,
        F.CLAIMED_UNTIL: None,
        F.PAYLOAD: body,
    }
    if channel is None:
        missing = {F.CHANNEL_KIND: "unknown", F.CHANNEL_NAME: "", F.RECIPIENT: ""}
        error = f"channel {due.channel_id} no longer exists"
        return doc | missing | {F.STATUS: NotificationStatus.FAILED.value, F.LAST_ERROR: error}
    named = {
        F.CHANNEL_KIND: channel.kind.value,
        F.CHANNEL_NAME: channel.name,
        F.RECIPIENT: recipient(channel),
    }
    return doc | named | {F.STATUS: NotificationStatus.PENDING.value}


class NotificationMaker:
    def __init__(
        self,
        reads: NotificationReads,
        *,
        api_url: str,
        on_created: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.reads = reads
        self.api_url = api_url
        self.on_created = on_created  # wakes the sender
        self.clock = clock

    async def make(self, ended: Sequence[Ended]) -> int:
        """Insert the notifications these final outcomes owe; returns how many were new."""
        documents = [
            *await self._for_runs([e for e in ended if e.owner_kind == "job"]),
            *await self._for_group_runs([e for e in ended if e.owner_kind == "group"]),
        ]
        created = await self.reads.insert(documents)
        if created:
            self.on_created()
        return created

    async def _for_runs(self, ended: list[Ended]) -> list[Document]:
        ended = [e for e in ended if e.notify]  # the rest had no rules when requested: no read for them
        rules = await self.reads.rules("job", [e.owner_id for e in ended])
        ended = [e for e in ended if e.owner_id in rules]
        records = await self.reads.run_records([e.run_id for e in ended])
        owed: list[tuple[Ended, outcomes.Due, Document]] = []
        for end in ended:
            record = records.get(end.run_id)
            if record is None or not _recorded_by(record, RunField.FINISHED_EVENT_ID, end):
                continue  # another RunFinished of this run was recorded: it makes the notifications
            if not outcomes.notifies(record.get(RunField.TRIGGER)):
                continue
            status = RunStatus(record[RunField.STATUS])
            for due in await self._due("job", end, status, rules[end.owner_id]):
                notification = notification_id("job", end.run_id, due.rule, due.channel_id)
                body = messages.run_body(
                    notification, due.outcome.value, record, timed_out=end.timed_out, api_url=self.api_url
                )
                owed.append((end, due, body))
        return await self._documents("job", owed)

    async def _for_group_runs(self, ended: list[Ended]) -> list[Document]:
        rules = await self.reads.rules("group", [e.owner_id for e in ended])
        ended = [e for e in ended if e.owner_id in rules]
        records = await self.reads.group_run_records([e.run_id for e in ended])
        members = await self.reads.run_records(
            [m for r in records.values() for m in r.get(GroupRunField.MEMBER_RUN_IDS) or []]
        )
        owed: list[tuple[Ended, outcomes.Due, Document]] = []
        for end in ended:
            record = records.get(end.run_id)
            if record is None or not _recorded_by(record, GroupRunField.FINISHED_EVENT_ID, end):
                continue
            if not outcomes.notifies(record.get(GroupRunField.TRIGGER)):
                continue
            status = RunStatus(record[GroupRunField.STATUS])
            in_order = [
                members.get(run_id) or {RunField.ID: run_id, RunField.JOB_ID: int(run_id.split(".")[0])}
                for run_id in record.get(GroupRunField.MEMBER_RUN_IDS) or []
            ]
            for due in await self._due("group", end, status, rules[end.owner_id]):
                notification = notification_id("group", end.run_id, due.rule, due.channel_id)
                body = messages.group_body(
                    notification, due.outcome.value, record, in_order, api_url=self.api_url
                )
                owed.append((end, due, body))
        return await self._documents("group", owed)

    async def _due(
        self, owner_kind: str, end: Ended, status: RunStatus, rules: list[NotificationRule]
    ) -> list[outcomes.Due]:
        previous = None
        if outcomes.may_recover(status, rules):  # the one extra read, only when it can matter
            previous = await self.reads.previous_status(owner_kind, end.owner_id, run_number(end.run_id))
        return outcomes.matches(rules, outcomes.labels(status, timed_out=end.timed_out, previous=previous))

    async def _documents(
        self, owner_kind: OwnerKind, owed: list[tuple[Ended, outcomes.Due, Document]]
    ) -> list[Document]:
        channels = await self.reads.channels_by_id([due.channel_id for _, due, _ in owed])
        now = self.clock()
        return [
            new_notification(owner_kind, end, due, channels.get(due.channel_id), body, now)
            for end, due, body in owed
        ]


def _recorded_by(record: Document, field: str, end: Ended) -> bool:
    """The record's end is this event's (a second, refused end of the same run notifies nothing)."""
    return record.get(field) == end.event_id
