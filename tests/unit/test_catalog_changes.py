"""Job and group changes without a database (`tests/support/catalog_fakes.py`): all or nothing, each with the
events announcing it committed together and delivered after the commit."""

from __future__ import annotations

import pytest

from services.catalog.domain import StoredGroup, StoredJob
from services.catalog.group_schemas import GroupUpdate
from services.catalog.groups import GroupService
from services.catalog.jobs import JobService
from shared.contracts import GroupChanged, JobDeleted
from shared.contracts.jobs import JobType
from shared.errors import Conflict, NotFound
from tests.support.catalog_fakes import FakeCatalog, IdleReads, RecordingBus
from tests.unit.factories import T0, import_spec


async def a_group_of_two(catalog: FakeCatalog) -> StoredGroup:
    for job_id in (1, 2):
        job = StoredJob(id=job_id, name=f"job {job_id}", job_type=JobType.IMPORT, active=True,
                        spec=import_spec(), group_id=5, created_at=T0, created_by="ann")  # fmt: skip
        await catalog.jobs.add(job)
    group = StoredGroup(id=5, name="morning", job_ids=(1, 2), version=2, created_at=T0, created_by="ann")
    await catalog.groups.add(group)
    return group


async def test_jobs_are_deleted_all_or_none_and_leave_their_group_in_the_same_commit() -> None:
    catalog, bus = FakeCatalog(), RecordingBus()
    await a_group_of_two(catalog)
    jobs = JobService(catalog, IdleReads(), bus, run_request_timeout=1.0)

    with pytest.raises(NotFound, match="job\\(s\\) 99 do not exist; nothing was deleted"):
        await jobs.delete([1, 99], confirm=True, by="ops")
    assert sorted(catalog.jobs.items) == [1, 2] and catalog.outbox == [] and bus.published == []

    assert await jobs.delete([1], confirm=True, by="ops") == [1]
    assert sorted(catalog.jobs.items) == [2]
    group = catalog.groups.items[5]
    assert group.job_ids == (2,) and group.version == 3
    deleted, changed = catalog.outbox
    assert isinstance(deleted, JobDeleted) and deleted.data.job_id == 1
    assert isinstance(changed, GroupChanged) and changed.data.job_ids == (2,)
    assert bus.published == catalog.delivered == catalog.outbox  # published once committed


async def test_a_group_edited_from_an_older_version_is_refused_and_nothing_changes() -> None:
    catalog, bus = FakeCatalog(), RecordingBus()
    group = await a_group_of_two(catalog)
    groups = GroupService(catalog, IdleReads(), bus, run_request_timeout=1.0)

    with pytest.raises(Conflict, match="changed by someone else") as refused:
        await groups.replace(5, GroupUpdate(version=1, name="evening", job_ids=[2]), "ops")
    assert refused.value.field == "version"
    assert catalog.groups.items[5] == group and catalog.jobs.items[1].group_id == 5
    assert catalog.outbox == [] and bus.published == []

    view = await groups.replace(5, GroupUpdate(version=2, name="evening", job_ids=[2]), "ops")
    assert (view.name, [m.id for m in view.jobs], view.version) == ("evening", [2], 3)
    assert catalog.jobs.items[1].group_id is None and catalog.jobs.items[2].group_id == 5
    assert [type(event) for event in bus.published] == [GroupChanged]
