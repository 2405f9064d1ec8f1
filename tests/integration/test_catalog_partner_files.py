"""The catalog and an import's partner-file options (issue #17): every bad option is a 422 naming its field,
at creation and on edit, nothing stored; the job API shows the path the next fires will read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest

from shared.mongo import MongoClient
from shared.settings import CommonSettings
from shared.topology import Topology
from tests.support.api import contacts_table, import_job
from tests.support.catalog_api import Api, running_catalog, sftp_connection


@pytest.fixture
async def api(settings: CommonSettings, topology: Topology, mongo: MongoClient) -> AsyncIterator[Api]:
    async with running_catalog(settings, mongo, with_scheduler=False) as api:
        yield api


def job(connection_id: int, path: str = "in/c_{date}.csv", **source: Any) -> dict[str, Any]:
    body = import_job("partner", connection_id, path, "contacts")
    body["spec"]["source"].update(source)
    return body


BAD_OPTIONS = [
    ({"path": "in/c_{time}.csv"}, "spec.source.path", "unknown token {time}"),
    ({"path": "in/c_{date:%Q}.csv"}, "spec.source.path", "bad format in token {date:%Q}"),
    ({"path": "in/c_{date-2y}.csv"}, "spec.source.path", "bad offset in token {date-2y}"),
    ({"path": "in/c_{date.csv"}, "spec.source.path", "unmatched '{'"),
    ({"if_missing": "later"}, "spec.source.if_missing", "'fail', 'wait' or 'newest'"),
    ({"if_missing": "wait", "wait_minutes": 0}, "spec.source.wait_minutes", "greater than or equal to 1"),
    ({"if_missing": "wait", "wait_minutes": 721}, "spec.source.wait_minutes", "less than or equal to 720"),
    ({"path": "in/c.csv", "if_missing": "newest"}, "spec.source.if_missing", "needs a date token"),
    ({"path": "in/{date}/c.csv", "if_missing": "newest"}, "spec.source.if_missing", "in the file name"),
    ({"on_empty": "ignore"}, "spec.source.on_empty", "'succeed', 'skip' or 'fail'"),
    ({"max_age_hours": 0}, "spec.source.max_age_hours", "greater than or equal to 1"),
    ({"after_import": "move"}, "spec.source.after_import", "'keep', 'archive' or 'delete'"),
    ({"after_import": "archive"}, "spec.source.archive_dir", "needs archive_dir"),
    ({"archive_dir": "archive"}, "spec.source.archive_dir", "after_import: archive only"),
    ({"after_import": "archive", "archive_dir": "a/../b"}, "spec.source.archive_dir", "'..'"),
    ({"after_import": "archive", "archive_dir": "../../etc"}, "spec.source.archive_dir", "base directory"),
    ({"after_import": "archive", "archive_dir": "a/*"}, "spec.source.archive_dir", "no wildcards"),
]


@pytest.mark.parametrize(("options", "field", "message"), BAD_OPTIONS)
async def test_a_bad_option_is_a_422_naming_the_field(
    api: Api, options: dict[str, Any], field: str, message: str
) -> None:
    connection_id = await sftp_connection(api, base_dir="/in")
    await api.ok("POST", "/tables", json=contacts_table("contacts"))
    good = await api.ok("POST", "/jobs", json=job(connection_id))
    for method, path, body in (
        ("POST", "/jobs", job(connection_id, **options)),
        ("PUT", f"/jobs/{good['id']}", {**job(connection_id, **options), "version": good["version"]}),
    ):
        response = await api.call(method, path, json=body)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["field"] == field, error
        assert message in error["message"], error
    assert (await api.ok("GET", "/jobs"))["total"] == 1
    assert (await api.ok("GET", f"/jobs/{good['id']}"))["version"] == good["version"]


async def test_good_options_are_stored_as_given(api: Api) -> None:
    connection_id = await sftp_connection(api, base_dir="/in")
    await api.ok("POST", "/tables", json=contacts_table("contacts"))
    options = {"if_missing": "newest", "on_empty": "skip", "max_age_hours": 30, "after_import": "archive",
               "archive_dir": "done"}  # fmt: skip
    created = await api.ok("POST", "/jobs", json=job(connection_id, "c_{date-1d:%Y-%m-%d}.csv", **options))
    source = created["spec"]["source"]
    assert {k: source[k] for k in options} == options
    assert source["path"] == "c_{date-1d:%Y-%m-%d}.csv"


async def test_the_job_and_its_schedule_preview_show_the_path_the_next_fires_read(api: Api) -> None:
    connection_id = await sftp_connection(api, base_dir="/in")
    await api.ok("POST", "/tables", json=contacts_table("contacts"))
    body = job(connection_id, "c_{date}.csv")
    body["schedule"] = {
        "type": "recurring",
        "rule": {"kind": "daily", "at": "00:30:00"},
        "timezone": "Asia/Tokyo",
    }
    created = await api.ok("POST", "/jobs", json=body)
    preview = await api.ok("GET", f"/jobs/{created['id']}/schedule-preview?count=3")
    for fire in preview["fires"]:
        local, utc = datetime.fromisoformat(fire["local"]), datetime.fromisoformat(fire["utc"])
        assert local.date() != utc.date()  # 00:30 in Tokyo is the day before in UTC: the zone's date is read
        assert fire["source_path"] == f"c_{local:%Y%m%d}.csv"
    shown = (await api.ok("GET", f"/jobs/{created['id']}"))["next_source_path"]
    assert shown is not None and shown.startswith("c_") and shown.endswith(".csv") and len(shown) == 14
    plain = await api.ok("POST", "/jobs", json={**job(connection_id, "c.csv"), "name": "plain"})
    assert plain["next_source_path"] is None
