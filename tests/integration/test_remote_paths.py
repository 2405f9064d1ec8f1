"""The executor refuses `..` in every remote name at run time, whatever the base directory (issue #12,
defect 6): a job stored before the catalog checked, a path template, a zip archive's member."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime

import pytest

from services.executor.errors import SourceRefused
from services.executor.sftp import SftpSession
from shared.catalog_records import ConnectionRecord
from shared.contracts.runs import RunStatus
from tests.support.executor_harness import (
    CONTACT_FIELDS,
    CONTACT_MAPPING,
    Harness,
    csv_text,
    import_spec,
)

ROWS = [["id", "email", "points"], ["A", "a@x.io", "1"]]
TARGET = {"kind": "custom", "table": "contacts", "mode": "merge"}


async def contacts(h: Harness) -> None:
    await h.connection()
    await h.table("contacts", CONTACT_FIELDS, primary_key=("customer_id",))


@pytest.mark.parametrize("path", ["../../etc/passwd", "in/../../etc/passwd", "a/../b.csv", "..\\etc\\passwd"])
def test_a_session_under_root_refuses_dot_dot(path: str) -> None:
    connection = ConnectionRecord.model_validate(
        {"_id": 1, "name": "root", "base_dir": "/", "created_at": datetime.now(UTC), "created_by": "t"}
    )
    with pytest.raises(SourceRefused, match=r"'\.\.' segment"):
        SftpSession(connection, sftp=None).resolve(path)


async def test_an_import_path_that_climbs_back_inside_is_still_refused(harness: Harness) -> None:
    h = harness
    await contacts(h)
    h.write("people.csv", csv_text(ROWS))
    run = await h.run(import_spec(f"../{h.folder}/people.csv", TARGET, CONTACT_MAPPING))
    assert run.data.status == RunStatus.FAILED
    assert "'..' segment" in (run.data.error or "")
    assert await h.rows("contacts", "customer_id") == []


async def test_an_export_template_with_dot_dot_is_refused(harness: Harness) -> None:
    h = harness
    await contacts(h)
    destination = {"kind": "sftp", "connection_id": 1, "path_template": "out/../x_{run_id}.csv"}
    spec = {"kind": "export", "source": {"kind": "table", "table": "contacts"}, "destination": destination}
    run = await h.run(spec)
    assert run.data.status == RunStatus.FAILED and "'..' segment" in (run.data.error or "")
    assert not list(h.root.glob("x_*"))


async def test_a_zip_member_named_with_dot_dot_is_refused(harness: Harness) -> None:
    h = harness
    await contacts(h)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../people.csv", csv_text(ROWS))
    h.write("people.zip", buffer.getvalue())
    run = await h.run(import_spec("people.zip", TARGET, CONTACT_MAPPING))
    assert run.data.status == RunStatus.FAILED
    assert "member name '../people.csv' contains a '..' segment" in (run.data.error or "")
