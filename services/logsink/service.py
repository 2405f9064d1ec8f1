"""Logsink use cases: apply each lifecycle event to the run record, store each log line once."""

from __future__ import annotations

from typing import Any

from services.logsink import domain
from services.logsink.errors import UnknownEvent
from services.logsink.ports import RunRecords
from shared.contracts import RunFinished, RunLog, RunProgress, RunRequested, RunStarted


class LogsinkService:
    def __init__(self, records: RunRecords) -> None:
        self.records = records

    async def record(self, body: dict[str, Any]) -> None:
        event_type = body.get("type")
        if event_type == RunLog.model_fields["type"].default:
            await self.records.add_log(domain.log_document(RunLog.model_validate(body)))
        elif event_type == RunRequested.model_fields["type"].default:
            await self._apply(domain.on_requested(RunRequested.model_validate(body)))
        elif event_type == RunStarted.model_fields["type"].default:
            await self._apply(*domain.on_started(RunStarted.model_validate(body)))
        elif event_type == RunProgress.model_fields["type"].default:
            await self._apply(domain.on_progress(RunProgress.model_validate(body)))
        elif event_type == RunFinished.model_fields["type"].default:
            await self._apply(domain.on_finished(RunFinished.model_validate(body)))
        else:
            raise UnknownEvent(f"logsink does not record events of type {event_type!r}")

    async def _apply(self, *updates: domain.Update) -> None:
        for filter_, update, upsert in updates:
            await self.records.apply(filter_, update, upsert=upsert)
