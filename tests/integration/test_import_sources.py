"""Import sources and formats over real sshd: CSV edge cases, globs, ready/count files, gzip/zip, errors."""

from __future__ import annotations

import gzip
import io
import os
import time
import zipfile

import pytest

from shared.contracts.runs import RunStatus
from tests.support.executor_harness import (
    CONTACT_FIELDS,
    CONTACT_MAPPING,
    Harness,
    csv_text,
    import_spec,
    read_csv,
)


async def contacts(h: Harness, **connection: str) -> None:
    await h.connection(**connection)
    await h.table("contacts", CONTACT_FIELDS, primary_key=("customer_id",))


def spec(path: str, mapping: list[tuple[str, str]] = CONTACT_MAPPING, **extra: object) -> dict[str, object]:
    return import_spec(path, {"kind": "custom", "table": "contacts", "mode": "merge"}, mapping, **extra)


async def ids(h: Harness) -> list[str]:
    return [r["customer_id"] for r in await h.rows("contacts", "customer_id")]


async def test_csv_edge_cases_load_and_rejects_file_names_line_field_and_reason(harness: Harness) -> None:
    h = harness
    await contacts(h)
    data = (
        "\ufeffid;email;points;note\r\n"
        'C1;"a@x.io";1;"semi; colon"\r\n'
        "\r\n"
        'C2;b@x.io;2;"two\r\nlines"\r\n'
        "C3;c@x.io\r\n"  # line 6: missing columns
        "C4;d@x.io;4;x;extra\r\n"  # line 7: an extra column
        "C5;Zoë@x.io;5;ok\r\n"
        "C1;a2@x.io;11;dup\r\n"
        "C6;f@x.io;1e3;bad\r\n"  # line 10: not an integer
    )
    h.write("edge.csv", data.encode("utf-8"))
    run = await h.run(spec("edge.csv", format={"delimiter": ";"}), job_id=40)
    assert run.data.status == RunStatus.PARTIAL
    assert run.data.counts.model_dump() == {"read": 7, "inserted": 3, "updated": 1, "rejected": 3,
                                            "unchanged": 0, "skipped": 1}  # fmt: skip
    assert await h.rows("contacts", "customer_id") == [
        {"customer_id": "C1", "email": "a2@x.io", "points": 11},
        {"customer_id": "C2", "email": "b@x.io", "points": 2},
        {"customer_id": "C5", "email": "zoë@x.io", "points": 5},
    ]
    assert run.data.rejects_file == str(h.root / "edge.csv.40.1.rejects.csv")
    assert read_csv(h.root / "edge.csv.40.1.rejects.csv") == [
        ["line", "field", "reason"],
        ["6", "columns", "expected 4 columns, found 2"],
        ["7", "columns", "expected 4 columns, found 5"],
        ["10", "points", "'1e3' is not an integer"],
    ]
    assert any(str(h.root / "edge.csv.40.1.rejects.csv") in line for line in h.events.logs("40.1"))


async def test_latin1_positional_columns_and_date_formats(harness: Harness) -> None:
    h = harness
    await h.connection()
    fields = [{"name": "code", "type": "string", "required": True}, {"name": "city", "type": "string"},
              {"name": "since", "type": "date"}]  # fmt: skip
    await h.table("places", fields, primary_key=("code",))
    h.write("places.txt", "Z1|Zürich|31.12.2023\nG1|Genève|01.02.2024\n".encode("latin-1"))
    mapping = [{"column": "1", "field": "code"}, {"column": "2", "field": "city"},
               {"column": "3", "field": "since", "date_format": "%d.%m.%Y"}]  # fmt: skip
    spec_ = {"kind": "import", "source": {"kind": "sftp", "connection_id": 1, "path": "places.txt"},
             "format": {"delimiter": "|", "header": False, "encoding": "latin-1"}, "mapping": mapping,
             "target": {"kind": "custom", "table": "places", "mode": "merge"}}  # fmt: skip
    run = await h.run(spec_)
    assert run.data.status == RunStatus.SUCCEEDED, run.data.error
    rows = await h.rows("places", "code")
    assert [(r["code"], r["city"], r["since"].date().isoformat()) for r in rows] == [
        ("G1", "Genève", "2024-02-01"),
        ("Z1", "Zürich", "2023-12-31"),
    ]


async def test_glob_picks_the_newest_or_all_files_in_name_order_gzip_and_zip(harness: Harness) -> None:
    h = harness
    await contacts(h)
    header = ["id", "email", "points"]
    h.write("in/day1.csv.gz", gzip.compress(csv_text([header, ["A", "a@x.io", "1"]]).encode()))
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("day2.csv", csv_text([header, ["B", "b@x.io", "2"]]))
    h.write("in/day2.csv.zip", archive.getvalue())
    newest = h.write("in/day3.csv", csv_text([header, ["C", "c@x.io", "3"]]))
    old = time.time() - 3600
    os.utime(h.root / "in/day1.csv.gz", (old, old))
    os.utime(h.root / "in/day2.csv.zip", (old, old))
    assert newest.exists()
    run = await h.run(spec("in/day*"))
    assert run.data.counts.read == 1 and await ids(h) == ["C"]
    every = await h.run(spec("in/day*", source={"pick": "all"}))
    assert every.data.status == RunStatus.SUCCEEDED, every.data.error
    # C holds day3's values already: unchanged, not rewritten
    assert every.data.counts.model_dump() == {"read": 3, "inserted": 2, "updated": 0, "rejected": 0,
                                              "unchanged": 1, "skipped": 0}  # fmt: skip
    assert await ids(h) == ["A", "B", "C"]


async def test_ready_and_count_files(harness: Harness) -> None:
    h = harness
    await contacts(h)
    h.write("r.csv", csv_text([["id", "email", "points"], ["A", "a@x.io", "1"], ["B", "b@x.io", "2"]]))
    missing = await h.run(spec("r.csv", source={"ready_file": "required"}))
    assert missing.data.status == RunStatus.FAILED
    assert missing.data.error == "ready file r.csv.ready is missing"
    h.write("r.csv.count", "3\n")
    h.write("r.csv.ready", "")
    wrong = await h.run(spec("r.csv", source={"ready_file": "required", "count_file": True}))
    assert wrong.data.error == "count file of r.csv says 3 records, the file holds 2"
    assert await ids(h) == []  # checked before anything was written
    h.write("r.csv.count", "2\n")
    ok = await h.run(spec("r.csv", source={"ready_file": "required", "count_file": True}))
    assert ok.data.status == RunStatus.SUCCEEDED and await ids(h) == ["A", "B"]


@pytest.mark.parametrize(
    "case", ["missing file", "host key mismatch", "wrong key", "bad header", "outside base"]
)
async def test_permanent_errors_fail_at_once_with_a_clear_message(harness: Harness, case: str) -> None:
    h = harness
    other_key = "-----BEGIN OPENSSH PRIVATE KEY-----\n"  # replaced below by a real, unauthorised key
    if case == "wrong key":
        import asyncssh

        other_key = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()
    connection = {
        "host key mismatch": {"host_key": h.sshd.other_host_key},
        "wrong key": {"private_key": other_key},
    }.get(case, {})
    await contacts(h, **connection)
    h.write("x.csv", csv_text([["id", "mail", "points"], ["A", "a@x.io", "1"]]))
    path = {"missing file": "nope.csv", "outside base": "../../etc/passwd"}.get(case, "x.csv")
    started = time.monotonic()
    run = await h.run(spec(path))
    assert run.data.status == RunStatus.FAILED
    assert time.monotonic() - started < 10  # no retries for permanent errors
    expected = {
        "missing file": "file nope.csv: not found",
        "host key mismatch": "host key does not match the pinned key",
        "wrong key": "authentication failed",
        "bad header": "bad header: column(s) email not found in ['id', 'mail', 'points']",
        "outside base": "leaves the connection's base directory",
    }[case]
    assert expected in (run.data.error or ""), run.data.error
    assert not [m for m in h.events.logs(run.data.run_id) if "retrying" in m]
