"""The executor's partner-file rules that need no server (`importers/partner_files.py`): archived names,
the load-done checkpoint a take-over reads, and which date and zone a run's tokens read."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.executor.domain import Tally
from services.executor.importers.partner_files import LoadDone, archived_name, done_of, job_zone, run_moment
from services.executor.importers.pipeline import Checkpoint
from services.executor.sftp import RemoteFile
from tests.support.executor_harness import run_request


@pytest.mark.parametrize(
    ("name", "archived"),
    [
        ("contacts_20261207.csv", "contacts_20261207.12.7.csv"),
        ("c.csv.gz", "c.12.7.csv.gz"),
        ("contacts", "contacts.12.7"),
    ],
)
def test_the_run_id_goes_before_the_extensions(name: str, archived: str) -> None:
    assert archived_name(name, "12.7") == archived


def test_load_done_survives_the_lease_document_and_is_no_resume_position() -> None:
    tally = Tally(read=5, inserted=3, updated=1, rejected=1)
    done = done_of(tally, [RemoteFile("/base/in/c.csv", 10)], "/base/in/c.csv.1.1.rejects.csv")
    doc = done.to_doc()
    back = LoadDone.done_in(doc)
    assert back is not None and back.files == ("/base/in/c.csv",)
    assert (back.tally().read, back.tally().inserted, back.tally().rejected) == (5, 3, 1)
    assert back.rejects_file == "/base/in/c.csv.1.1.rejects.csv"
    assert LoadDone.done_in(Checkpoint(file=0, line=9).to_doc()) is None  # an ordinary checkpoint
    assert LoadDone.done_in(None) is None


def test_a_run_now_reads_its_request_time_in_utc() -> None:
    request = run_request({"kind": "import", "source": {"kind": "sftp", "connection_id": 1, "path": "c.csv"},
                           "mapping": [{"column": "a", "field": "a"}],
                           "target": {"kind": "custom", "table": "t"}})  # fmt: skip
    assert run_moment(request.data) == request.data.requested_at
    assert job_zone(request.data) == "UTC"
    slot = datetime(2026, 12, 7, 23, 30, tzinfo=UTC)
    assert run_moment(request.data.model_copy(update={"slot": slot})) == slot
