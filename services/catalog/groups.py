"""Group use cases: ordered jobs run as one, on demand or on a schedule (the guide's Groups tab)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from services.catalog import audit, domain
from services.catalog.changes import SOURCE, Change, commit
from services.catalog.channels import check_rules
from services.catalog.definitions import DefinitionService
from services.catalog.domain import StoredGroup
from services.catalog.domain.audit import AuditEntry
from services.catalog.group_schemas import GroupCreate, GroupMember, GroupUpdate, GroupView
from services.catalog.ports import CatalogRecords, Definitions, UnitOfWork
from services.catalog.scheduler_client import request_run
from shared.contracts import GroupChanged, GroupDeleted, RunGroup, StopGroupRun
from shared.contracts.catalog import GroupChangedData, GroupDeletedData
from shared.contracts.groups import RunGroupData, StopGroupRunData
from shared.contracts.runs import Trigger
from shared.errors import Conflict
from shared.scheduling import validate_schedule


def group_changed(group: StoredGroup) -> GroupChanged:
    data = GroupChangedData(
        group_id=group.id,
        name=group.name,
        job_ids=group.job_ids,
        active=group.active,
        schedule=group.schedule,
        expires_at=group.expires_at,
        continue_on_failure=group.continue_on_failure,
    )
    return GroupChanged(source=SOURCE, subject=str(group.id), data=data)


async def remove_members(
    unit: UnitOfWork, job_ids: list[int], by: str
) -> tuple[list[GroupChanged], list[AuditEntry]]:
    """Deleted jobs leave their groups (inside the deleting transaction); the groups are announced, and
    each group's history shows the change with the jobs whose deletion made it."""
    events, entries = [], []
    for group in await unit.groups.containing(job_ids):
        remaining = tuple(j for j in group.job_ids if j not in job_ids)
        changed = group.model_copy(update={"job_ids": remaining, "version": group.version + 1})
        await unit.groups.replace(changed, group.version)
        events.append(group_changed(changed))
        left = [j for j in group.job_ids if j in job_ids]
        detail = {"jobs_deleted": left}
        entries.append(
            audit.change_entry(by, "group", group.id, "updated", before=group, after=changed, detail=detail)
        )
    return events, entries


class GroupService(DefinitionService[StoredGroup, GroupView]):
    kind = "group"

    def definitions(self, records: CatalogRecords) -> Definitions[StoredGroup]:
        return records.groups

    async def find(self, *, sort: str, offset: int, limit: int) -> tuple[list[GroupView], int]:
        """A page of all groups ordered by `sort` (a field, "-" first for descending), and how many there are."""
        groups, total = await self.repo.groups.page(sort=sort, offset=offset, limit=limit)
        return await self.views(groups), total

    async def views(self, groups: list[StoredGroup]) -> list[GroupView]:
        names = await self.repo.jobs.names({j for g in groups for j in g.job_ids})
        states = await self.reads.schedule_states("group", [g.id for g in groups])
        views = []
        for group in groups:
            state = states.get(group.id)
            views.append(
                GroupView(
                    **group.model_dump(
                        include={"id", "created_at", "created_by", "name", "continue_on_failure"}
                    ),
                    next_run=state.next_run if state else None,
                    previous_run=state.previous_run if state else None,
                    schedule_type=group.schedule.type,
                    expiration_date=group.expires_at,
                    state="active" if group.active else "inactive",
                    jobs=[GroupMember(id=j, name=names.get(j, "?")) for j in group.job_ids],
                    schedule=group.schedule,
                    notifications=list(group.notifications),
                    version=group.version,
                )
            )
        return views

    async def create(self, body: GroupCreate, by: str) -> GroupView:
        validate_schedule(body.schedule)
        await check_rules(self.repo, body.notifications)
        domain.check_instants(body.schedule, body.expires_at, datetime.now(UTC))

        async def work(unit: UnitOfWork) -> Change[StoredGroup]:
            group_id = await unit.groups.new_id()
            await _claim_members(unit, group_id, body.job_ids)
            group = StoredGroup(
                id=group_id,
                name=body.name,
                job_ids=tuple(body.job_ids),
                schedule=body.schedule,
                expires_at=body.expires_at,
                continue_on_failure=body.continue_on_failure,
                notifications=tuple(body.notifications),
                active=body.active,
                created_at=datetime.now(UTC),
                created_by=by,
            )
            await unit.groups.add(group)
            entry = audit.change_entry(by, "group", group.id, "created", after=group)
            return Change(group, [group_changed(group)], [entry])

        return await self.get((await commit(self.repo, self.bus, work)).id)

    async def replace(self, group_id: int, body: GroupUpdate, by: str) -> GroupView:
        validate_schedule(body.schedule)
        await check_rules(self.repo, body.notifications)
        current = await self.load(group_id)
        domain.check_instants(
            body.schedule, body.expires_at, datetime.now(UTC), before=(current.schedule, current.expires_at)
        )
        changes = body.model_dump(exclude={"version", "job_ids"}) | {"job_ids": tuple(body.job_ids)}
        return await self._edit(group_id, body.version, changes, by, "updated")

    async def set_active(self, group_id: int, active: bool, by: str) -> GroupView:
        version = (await self.load(group_id)).version
        return await self._edit(
            group_id, version, {"active": active}, by, "activated" if active else "deactivated"
        )

    async def _edit(
        self, group_id: int, version: int, changes: dict[str, Any], by: str, action: str
    ) -> GroupView:
        async def work(unit: UnitOfWork) -> Change[StoredGroup]:
            current = await self.load(group_id, unit)
            if current.version != version:
                raise Conflict(f"group {group_id} was changed by someone else; reload it", field="version")
            if "job_ids" in changes:
                await unit.jobs.leave_group(group_id)
                await _claim_members(unit, group_id, list(changes["job_ids"]))
            group = StoredGroup.model_validate(
                current.model_dump(by_alias=True) | changes | {"version": version + 1}
            )
            await unit.groups.replace(group, version)
            entry = audit.change_entry(by, "group", group_id, action, before=current, after=group)
            return Change(group, [group_changed(group)], [entry])

        return await self.get((await commit(self.repo, self.bus, work)).id)

    async def delete(self, group_id: int, confirm: bool, by: str) -> None:
        """Delete a group; its jobs stay as jobs."""
        domain.require_confirmation(confirm, "Delete")
        if await self.reads.group_run_in_flight(group_id):
            raise Conflict(f"group {group_id} is running; stop it first")

        async def work(unit: UnitOfWork) -> Change[None]:
            current = await self.load(group_id, unit)
            await unit.jobs.leave_group(group_id)
            await unit.groups.remove(group_id)
            event = GroupDeleted(
                source=SOURCE, subject=str(group_id), data=GroupDeletedData(group_id=group_id)
            )
            before = {"name": current.name, "version": current.version}
            return Change(
                None, [event], [audit.change_entry(by, "group", group_id, "deleted", before=before)]
            )

        await commit(self.repo, self.bus, work)

    async def expire(self, group_id: int) -> None:
        """Delete a group whose expiration date passed; its jobs stay."""
        if await self.repo.groups.get(group_id) is not None:
            await self.delete(group_id, confirm=True, by=audit.SYSTEM)

    async def run_now(self, group_id: int, by: str) -> str:
        domain.check_group_run_now(await self.load(group_id), datetime.now(UTC))
        command = RunGroup(
            source=SOURCE,
            subject=str(group_id),
            data=RunGroupData(group_id=group_id, trigger=Trigger.ON_DEMAND, requested_by=by),
        )
        group_run_id = await request_run(self.bus, command, self.run_request_timeout)
        detail = {"group_run_id": group_run_id}
        await audit.record(self.repo, audit.change_entry(by, "group", group_id, "run-now", detail=detail))
        return group_run_id

    async def stop(self, group_id: int, confirm: bool, by: str) -> str:
        domain.require_confirmation(confirm, "Stop")
        await self.load(group_id)
        group_run_id = await self.reads.group_run_in_flight(group_id)
        if group_run_id is None:
            raise Conflict(f"group {group_id} is not running")
        data = StopGroupRunData(group_run_id=group_run_id, requested_by=by)
        await self.bus.publish(StopGroupRun(source=SOURCE, subject=group_run_id, data=data))
        detail = {"group_run_id": group_run_id}
        await audit.record(self.repo, audit.change_entry(by, "group", group_id, "stop", detail=detail))
        return group_run_id


async def _claim_members(unit: UnitOfWork, group_id: int, job_ids: list[int]) -> None:
    """A job belongs to at most one group; every member must exist (`domain.check_members`)."""
    jobs = await unit.jobs.get_many(job_ids)
    domain.check_members(group_id, job_ids, {job.id: job.group_id for job in jobs})
    await unit.jobs.join_group(job_ids, group_id)
