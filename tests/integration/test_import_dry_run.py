"""Dry runs of imports over real sshd and the real database: the counts a real run would have (the model
of `tests.model.import_model`), the first rejects, and nothing written, moved or held."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.executor.audience import COUNTERS, MongoAudienceStore
from services.executor.importers.dry_store import DryRunStore
from shared.contracts import RunFinished, RunRequested
from shared.contracts.jobs import ImportSpec
from shared.contracts.runs import RunCounts, RunStatus, Trigger
from tests.conftest import DEEP, examples
from tests.integration.test_import_model_support import (
    Runner,
    _compare_outcome,
    _resolve,
    seeded,
    spec_of,
)
from tests.model.import_files import render
from tests.model.import_model import model_import
from tests.model.import_scenarios import Scenario, custom_scenarios, extension_scenarios, list_scenarios
from tests.support.executor_harness import (
    CONTACT_FIELDS,
    CONTACT_MAPPING,
    Harness,
    audience_contents,
    csv_text,
    hold_table,
    import_spec,
    run_request,
)

pytestmark = pytest.mark.timeout(0 if DEEP else 120)
HEADER = ["id", "email", "points"]


def dry_request(spec: dict[str, Any], *, job_id: int | None = None) -> RunRequested:
    request = run_request(spec, job_id=job_id)
    return request.model_copy(update={"data": request.data.model_copy(update={"trigger": Trigger.DRY_RUN})})


async def dry_run(
    h: Harness, spec: dict[str, Any], *, batch_size: int = 1000, in_flight: int = 2
) -> RunFinished:
    request = dry_request(spec)
    await h.service(batch_size=batch_size, in_flight=in_flight).accept(request)
    return await h.finished(request.data.run_id, timeout=20)


@pytest.fixture(name="runner")
def runner_fixture(harness: Harness) -> Runner:
    return Runner(harness)


@settings(max_examples=examples(3, 30))
@given(scenario=list_scenarios())
async def test_dry_list_imports_count_as_the_model_and_write_nothing(
    runner: Runner, scenario: Scenario
) -> None:
    await check_dry(runner, scenario)


@settings(max_examples=examples(3, 30))
@given(scenario=extension_scenarios())
async def test_dry_profile_extension_imports_count_as_the_model(runner: Runner, scenario: Scenario) -> None:
    await check_dry(runner, scenario)


@settings(max_examples=examples(6, 60))  # the three modes, twice each on average
@given(scenario=st.sampled_from(("merge", "append", "overwrite")).flatmap(custom_scenarios))
async def test_dry_custom_imports_count_as_the_model_and_write_nothing(
    runner: Runner, scenario: Scenario
) -> None:
    await check_dry(runner, scenario)


async def check_dry(r: Runner, s: Scenario) -> None:
    """The scenario's tables seeded (real imports), then its file dry-run: the model's status, counts and
    first rejects; every audience collection, the source file and its folder exactly as before."""
    name, parent = await seeded(r, s)
    before = await r.state(name, s.table)
    riids = [row["RIID_"] for row in (parent[1] if parent else before) if "RIID_" in row]
    file = render(
        s.fmt, s.columns, tuple(replace(line, cells=_resolve(line.cells, riids)) for line in s.lines)
    )
    path = f"{name}.dry.csv"
    source = r.h.write(path, file.data)
    spec = spec_of(path, s.fmt, s.mapping, {**s.target, "table": name}, s.guards or {})
    expected = model_import(ImportSpec.model_validate(spec), s.table, before, file.records,
                            parent=parent, skipped=file.blank_lines)  # fmt: skip
    contents = await audience_contents(r.h)

    await r.service(s.batch_size, s.in_flight)  # the connection
    finished = await dry_run(r.h, spec, batch_size=s.batch_size, in_flight=s.in_flight)

    context = f"file {file.data[:600]!r}\nspec {spec}\nbefore {before}\nfinished {finished.data}"
    _compare_outcome(expected, finished, context)
    assert finished.data.dry_run, context
    assert await audience_contents(r.h) == contents, f"a dry run changed the database\n{context}"
    assert source.read_bytes() == file.data, context  # still there, unchanged
    assert sorted(p.name for p in r.h.root.iterdir() if p.name.startswith(path)) == [path], context
    assert finished.data.rejects_file is None
    if expected.status != "failed":
        lines = sorted(reject.line for reject in expected.rejects)[:20]
        assert [reject.line for reject in finished.data.first_rejects] == lines, context


async def contacts(h: Harness) -> None:
    await h.connection()
    await h.table("contacts", CONTACT_FIELDS, primary_key=("customer_id",))


def contacts_spec(path: str, mode: str) -> dict[str, Any]:
    return import_spec(path, {"kind": "custom", "table": "contacts", "mode": mode}, CONTACT_MAPPING)


async def test_a_dry_run_lists_its_first_rejects_and_logs_what_it_would_do(harness: Harness) -> None:
    h = harness
    await contacts(h)
    h.write("seed.csv", csv_text([HEADER, ["C1", "a@x.io", "1"], ["C2", "b@x.io", "2"]]))
    await h.run(contacts_spec("seed.csv", "merge"))
    bad = [[f"B{i}", "not-an-email", "1"] for i in range(25)]
    rows = [HEADER, ["C1", "a@x.io", "1"], ["C2", "new@x.io", "2"], ["C3", "c@x.io", "3"], *bad]
    source = h.write("next.csv", csv_text(rows))
    written = source.read_bytes()
    contents = await audience_contents(h)

    finished = await dry_run(h, contacts_spec("next.csv", "merge"), batch_size=2)

    assert finished.data.status == RunStatus.PARTIAL
    assert finished.data.counts == RunCounts(read=28, inserted=1, updated=1, unchanged=1, rejected=25)
    assert [(r.line, r.field) for r in finished.data.first_rejects] == [(i, "email") for i in range(5, 25)]
    assert await audience_contents(h) == contents
    assert source.read_bytes() == written
    assert (
        not list(h.root.glob("*.rejects.csv")) or sorted(p.name for p in h.root.glob("*.rejects.csv")) == []
    )
    logs = h.events.logs(finished.data.run_id)
    assert any(line.startswith("would reject line 5 (file 1): email:") for line in logs)
    assert any("would insert 1, would update 1, unchanged 1, would reject 25; nothing was written" in line
               for line in logs)  # fmt: skip


async def test_a_dry_overwrite_says_the_table_would_be_replaced(harness: Harness) -> None:
    h = harness
    await contacts(h)
    h.write("seed.csv", csv_text([HEADER, *[[f"OLD{i}", "o@x.io", "1"] for i in range(5)]]))
    await h.run(contacts_spec("seed.csv", "merge"))
    h.write(
        "new.csv", csv_text([HEADER, *[[f"N{i}", "n@x.io", str(i)] for i in range(7)], ["N1", "z@x.io", "9"]])
    )
    contents = await audience_contents(h)

    finished = await dry_run(h, contacts_spec("new.csv", "overwrite"), batch_size=3)

    assert finished.data.status == RunStatus.SUCCEEDED
    assert finished.data.counts == RunCounts(read=8, inserted=7, updated=1)  # N1 twice: the last wins
    assert await audience_contents(h) == contents
    logs = h.events.logs(finished.data.run_id)
    assert any("contents of contacts would be replaced by 7 rows (now 5)" in line for line in logs)


async def test_a_dry_run_takes_no_table_writer_lock(harness: Harness) -> None:
    """A run of another executor holds the table: a real run would wait for it; a dry run does not."""
    h = harness
    await contacts(h)
    await hold_table(h, "table_contacts", "999.1", "elsewhere")
    h.write("a.csv", csv_text([HEADER, ["C1", "a@x.io", "1"]]))

    finished = await dry_run(h, contacts_spec("a.csv", "merge"))

    assert finished.data.status == RunStatus.SUCCEEDED
    assert finished.data.counts == RunCounts(read=1, inserted=1)
    assert not any("waiting for run" in line for line in h.events.logs(finished.data.run_id))


async def test_a_dry_run_of_an_export_fails_and_sends_nothing(harness: Harness) -> None:
    """The catalog refuses it (422); a request that reaches the executor anyway ends failed, reported."""
    h = harness
    await contacts(h)
    spec = {"kind": "export", "source": {"kind": "table", "table": "contacts"},
            "destination": {"kind": "sftp", "connection_id": 1, "path_template": "out_{run_id}.csv"}}  # fmt: skip

    finished = await dry_run(h, spec)

    assert finished.data.status == RunStatus.FAILED
    assert finished.data.error == "dry run is for import jobs" and finished.data.dry_run
    assert list(h.root.iterdir()) == []


async def test_batches_planning_at_once_get_distinct_riids_from_the_dry_store(harness: Harness) -> None:
    """Found by the property above (in flight 4, batch size 1): two batches read the RIID_ counter at once,
    the second's read overwrote the first's count, both inserts got the same RIID_ and one was rejected as
    "RIID_ None already belongs to another record"; the real run inserts both."""
    await harness.audience[COUNTERS].insert_one({"_id": "riid:people", "value": 3})
    dry = DryRunStore(MongoAudienceStore(harness.mongo, harness.settings.audience_database))

    firsts = await asyncio.gather(*(dry.reserve_riids("people", 2) for _ in range(4)))

    assert sorted(firsts) == [4, 6, 8, 10]  # four ranges of two after the counter's 3, none shared
    counter = await harness.audience[COUNTERS].find_one({"_id": "riid:people"})
    assert counter is not None and counter["value"] == 3  # read, never advanced
