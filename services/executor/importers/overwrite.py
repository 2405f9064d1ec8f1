"""An overwrite: the file loads into a new collection beside the table, swapped in only once its guards
pass (max reject %, max shrink %). Failed or stopped, the table stays as it was and the new one goes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from services.executor.audience import MongoAudienceStore
from services.executor.domain import Tally
from services.executor.domain.guards import shrink_guard
from services.executor.errors import RunStopped
from services.executor.importers.validation import check_rejects, enforce
from services.executor.reporting import RunReporter
from services.executor.repository import MongoRejectStore
from shared.catalog_records import TableRecord
from shared.contracts.jobs import ImportGuards


class Staging:
    def __init__(self, store: MongoAudienceStore, table: TableRecord, run_id: str) -> None:
        self.store = store
        self.table = table
        self.run_id = run_id
        self.collection = f"{table.collection}__loading_{run_id.replace('.', '_')}"
        self.swapped = False

    async def prepare(self) -> None:
        await self.store.drop(self.collection)  # a partial load of an earlier attempt
        await self.store.ensure_table(self.table, self.collection)

    async def swap_in(
        self,
        tally: Tally,
        rejects: MongoRejectStore,
        reporter: RunReporter,
        guards: ImportGuards,
        *,
        stop_requested: Callable[[], bool],
    ) -> None:
        # The load saved its rejects as it went: the guard counts them all, in the store.
        await rejects.save(self.run_id, tally.take_rejections())
        rejected = tally.rejected = await rejects.count(self.run_id)
        await check_rejects(reporter, guards.max_reject_percent, rejected, tally.read)
        before = await self.store.count(self.table.collection)
        after = await self.store.count(self.collection)
        if guards.max_shrink_percent is not None:
            await enforce(reporter, shrink_guard(self.table.name, before, after, guards.max_shrink_percent))
        if stop_requested():
            raise RunStopped
        if self.store.dry:  # the guards passed: a real run would swap the new contents in here
            self.swapped = True
            await reporter.log(
                f"dry run: the contents of {self.table.name} would be replaced by {after} rows (now {before})",
                rows=after,
            )
            return
        await self.store.swap_in(self.collection, self.table.collection)
        self.swapped = True
        await reporter.log(
            f"new contents of {self.table.name} swapped in: {after} rows (were {before})", rows=after
        )

    async def discard(self, tally: Tally) -> None:
        """Unless swapped in: nothing a user can see was written, and the new collection goes."""
        if self.swapped:
            return
        tally.nothing_written()
        with contextlib.suppress(Exception):
            await self.store.drop(self.collection)
