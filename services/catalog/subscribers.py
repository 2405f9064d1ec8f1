"""Thin consumer of the catalog's commands: the scheduler's expirations."""

from __future__ import annotations

from services.catalog.groups import GroupService
from services.catalog.jobs import JobService
from shared.contracts import Expire
from shared.runtime import ServiceRuntime


def register_subscribers(runtime: ServiceRuntime, jobs: JobService, groups: GroupService) -> None:
    @runtime.broker.subscriber(runtime.topology.catalog_commands, title="catalog.commands")
    async def on_expire(command: Expire) -> None:
        """The expiration date passed: delete the definition (loaded records stay). Idempotent."""
        if command.data.kind == "job":
            await jobs.expire(command.data.id)
        else:
            await groups.expire(command.data.id)
