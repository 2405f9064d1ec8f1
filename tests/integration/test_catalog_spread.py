"""`schedule.spread_minutes` through the API: refused with a 422 naming it where it cannot hold (nothing
stored), kept where it can, and the schedule preview shows the shifted fire times of each job and group."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest

from shared.contracts.jobs import RecurringSchedule
from shared.mongo import MongoClient
from shared.scheduling import SCHEDULE_ADAPTER, spread_offset
from shared.settings import CommonSettings
from shared.topology import Topology
from tests.integration.test_catalog_input_checks import FUTURE, contacts, refused, total
from tests.support.api import import_job
from tests.support.catalog_api import Api, running_catalog

FIELD = "schedule.spread_minutes"
EVERY_15 = {"type": "recurring", "rule": {"kind": "every", "minutes": 15}, "timezone": "UTC"}


@pytest.fixture
async def api(settings: CommonSettings, topology: Topology, mongo: MongoClient) -> AsyncIterator[Api]:
    async with running_catalog(settings, mongo, with_scheduler=False) as api:
        yield api


REFUSED = [
    EVERY_15 | {"spread_minutes": 15},  # as long as the interval: would reach the next slot
    {"type": "recurring", "rule": {"kind": "cron", "expression": "*/10 * * * *"}, "spread_minutes": 12},
    {"type": "recurring", "rule": {"kind": "daily", "at": "02:00"}, "spread_minutes": 60},
    {"type": "one_time", "at": FUTURE, "spread_minutes": 5},
    {"type": "on_demand", "spread_minutes": 1},
    {"type": "on_event", "trigger": "crm.ready", "spread_minutes": 30},
]


async def test_a_spread_that_cannot_hold_is_refused_naming_the_field(api: Api) -> None:
    connection_id = await contacts(api)
    job = import_job("spread", connection_id, "a.csv", "contacts")
    created = await api.ok("POST", "/jobs", json=job | {"name": "kept", "schedule": EVERY_15})
    for schedule in REFUSED:
        await refused(api, "POST", "/jobs", job | {"schedule": schedule}, FIELD)
        await refused(api, "PUT", f"/jobs/{created['id']}", job | {"version": 1, "schedule": schedule}, FIELD)
        group = {"name": "g", "job_ids": [created["id"]], "schedule": schedule}
        await refused(api, "POST", "/groups", group, FIELD)
    assert await total(api, "/jobs") == 1 and await total(api, "/groups") == 0
    assert (await api.ok("GET", f"/jobs/{created['id']}"))["version"] == 1


async def test_the_preview_shows_each_owners_shifted_fire_times(api: Api) -> None:
    connection_id = await contacts(api)
    schedule = EVERY_15 | {"spread_minutes": 14}
    job = await api.ok(
        "POST",
        "/jobs",
        json=import_job("spread", connection_id, "a.csv", "contacts") | {"schedule": schedule},
    )
    assert job["schedule"]["spread_minutes"] == 14
    group = await api.ok("POST", "/groups", json={"name": "g", "job_ids": [job["id"]], "schedule": schedule})
    model = SCHEDULE_ADAPTER.validate_python(schedule)
    assert isinstance(model, RecurringSchedule)
    start = "2031-06-01T00:00:00Z"
    for kind, owner_id in (("job", job["id"]), ("group", group["id"])):
        offset = spread_offset(model, kind, owner_id)
        page = await api.ok(
            "GET", f"/{kind}s/{owner_id}/schedule-preview", params={"from": start, "count": 3}
        )
        assert page["spread_offset_seconds"] == offset.total_seconds()
        slots = [datetime.fromisoformat(f["slot"]) for f in page["fires"]]
        assert [datetime.fromisoformat(f["utc"]) for f in page["fires"]] == [s + offset for s in slots]
        assert slots[1] - slots[0] == timedelta(minutes=15)
        following = await api.ok(
            "GET", f"/{kind}s/{owner_id}/schedule-preview", params={"from": page["next_from"], "count": 1}
        )
        assert datetime.fromisoformat(following["fires"][0]["slot"]) == slots[-1] + timedelta(minutes=15)
