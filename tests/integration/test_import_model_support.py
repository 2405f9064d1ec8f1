"""Runs a model scenario through the real executor (harness: real database and sshd) and compares.

Holds no tests: `test_import_model.py` draws scenarios and calls `check`.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.executor.service import ExecutorService
from shared.catalog_records import LIST_SYSTEM_FIELDS
from shared.contracts import RunFinished
from shared.contracts.jobs import ImportSpec
from tests.model.import_files import FileFormat, Line, render
from tests.model.import_model import NEW_RIID, Outcome, Record, Table, model_import
from tests.model.import_scenarios import Scenario, resolve
from tests.support.executor_harness import Harness, read_csv

EXAMPLES: Counter[str] = Counter()  # examples run per mode, written to test-artifacts/ by `save_counts`
OUTCOMES: Counter[str] = Counter()  # what the examples' main runs covered: mode, status, reject reasons
_names = itertools.count(1)
PLAIN = FileFormat()


@dataclass
class Runner:
    h: Harness
    services: dict[tuple[int, int], ExecutorService] = field(default_factory=dict)
    connected: bool = False

    async def service(self, batch_size: int, in_flight: int) -> ExecutorService:
        if not self.connected:
            await self.h.connection()
            self.connected = True
        key = (batch_size, in_flight)
        if key not in self.services:
            self.services[key] = self.h.service(batch_size=batch_size, in_flight=in_flight)
        return self.services[key]

    async def define(self, name: str, table: Table, parent: str | None = None) -> None:
        system = {f.name for f in LIST_SYSTEM_FIELDS}
        own = [f for f in table.fields if table.kind == "custom" or f.name not in system]
        await self.h.table(name, [f.model_dump() for f in own], kind=table.kind,
                           primary_key=table.primary_key, parent_list=parent)  # fmt: skip

    async def state(self, name: str, table: Table) -> list[Record]:
        return await self.h.rows(name, table.key[0])

    async def rejects(self, run_id: str) -> list[tuple[int, str]]:
        found = self.h.mongo[self.h.settings.database("executor")]["run_rejects"].find({"run": run_id})
        return sorted([(doc["line"], doc["field"]) async for doc in found])


def spec_of(
    path: str, fmt: FileFormat, mapping: Any, target: dict[str, Any], guards: dict[str, float]
) -> dict[str, Any]:
    compression = "gzip" if fmt.gzip and not path.endswith(".gz") else "auto"
    return {
        "kind": "import",
        "source": {"kind": "sftp", "connection_id": 1, "path": path, "compression": compression},
        "format": {
            "delimiter": fmt.delimiter,
            "quote": fmt.quote,
            "header": fmt.header,
            "encoding": fmt.encoding,
        },
        "mapping": [{"column": c, "field": f, "date_format": d} for c, f, d in mapping],
        "target": target,
        "guards": guards,
    }


async def import_and_compare(r: Runner, *, name: str, table: Table, fmt: FileFormat, columns: tuple[str, ...],
                             lines: tuple[Line, ...], mapping: Any, target: dict[str, Any],
                             guards: dict[str, float] | None = None, parent: tuple[Table, list[Record]] | None = None,
                             options: tuple[int, int] = (1000, 2)) -> Outcome:  # fmt: skip
    """Runs one import of these lines and asserts the outcome is the model's (which it returns)."""
    before = await r.state(name, table)
    riids = (
        [row["RIID_"] for row in parent[1]] if parent else [row["RIID_"] for row in before if "RIID_" in row]
    )
    resolved = tuple(replace(line, cells=_resolve(line.cells, riids)) for line in lines)
    file = render(fmt, columns, resolved)
    # gzip: by the name's `.gz` (compression auto) or, for every other file, by `compression: gzip`
    number = next(_names)
    path = f"{name}.{number}.csv" + (".gz" if fmt.gzip and number % 2 else "")
    r.h.write(path, file.data)
    spec = spec_of(path, fmt, mapping, {**target, "table": name}, guards or {})
    expected = model_import(ImportSpec.model_validate(spec), table, before, file.records,
                            parent=parent, skipped=file.blank_lines)  # fmt: skip
    finished = await r.h.run(spec, service=await r.service(*options), timeout=20)
    after = await r.state(name, table)
    context = f"file {file.data[:600]!r}\nspec {spec}\nbefore {before}\nfinished {finished.data}"
    _compare_outcome(expected, finished, context)
    _compare_rows(expected.table, after, before, context)
    leftovers = [c for c in await r.h.audience.list_collection_names() if c.startswith(f"table_{name}__")]
    assert not leftovers, f"collections left behind: {leftovers}\n{context}"
    if expected.status != "failed":
        stored = await r.rejects(finished.data.run_id)
        _compare_rejects(expected, stored, context)
        if stored:  # the rejects file next to the source says the same
            written = read_csv(r.h.root / f"{path}.{finished.data.run_id}.rejects.csv")
            assert [(int(line), name) for line, name, _ in written[1:]] == stored, (
                f"rejects file {written}\n{context}"
            )
    return expected


def _resolve(cells: tuple[str, ...] | None, riids: list[int]) -> tuple[str, ...] | None:
    return None if cells is None else tuple(resolve(c, riids) for c in cells)


async def check(r: Runner, s: Scenario) -> None:
    """Seeds the scenario's tables through imports (each checked too), then runs its file."""
    EXAMPLES[s.mode] += 1
    name, parent = await seeded(r, s)
    expected = await import_and_compare(r, name=name, table=s.table, fmt=s.fmt, columns=s.columns, lines=s.lines,
                                        mapping=s.mapping, target=s.target, guards=s.guards, parent=parent,
                                        options=(s.batch_size, s.in_flight))  # fmt: skip
    OUTCOMES[f"{s.mode} {expected.status}"] += 1
    OUTCOMES.update(f"{s.mode} reject: {reject.reason}" for reject in expected.rejects)
    OUTCOMES.update(f"{s.mode} {name}" for name, count in expected.counts.items() if count and name != "read")
    save_counts()  # after each example, so an interrupted deep run still reports what it ran


async def seeded(r: Runner, s: Scenario) -> tuple[str, tuple[Table, list[Record]] | None]:
    """The scenario's tables, defined and seeded through imports (each checked): the table's name and,
    for a profile extension, its parent list with its records."""
    name = f"m{next(_names)}"
    parent: tuple[Table, list[Record]] | None = None
    if s.parent is not None:
        await r.define(f"{name}p", s.parent)
        await r.define(name, s.table, parent=f"{name}p")
        members = await _seed(
            r, f"{name}p", s.parent, s.parent_seed, {"kind": "list", "match_columns": ["EMAIL_ADDRESS_"]}
        )
        parent = (s.parent, _in_seed_order(members, s.parent_seed))
        await _seed(
            r, name, s.table, s.seed, {"kind": "profile_extension", "match_column": "RIID_"}, parent=parent
        )
    else:
        await r.define(name, s.table)
        seed_target: dict[str, Any] = {"kind": "custom"}
        if s.mode == "list":
            seed_target = {"kind": "list", "match_columns": ["EMAIL_ADDRESS_"]}
        await _seed(r, name, s.table, s.seed, seed_target)
    return name, parent


async def _seed(r: Runner, name: str, table: Table, seed: tuple[dict[str, str], ...], target: dict[str, Any],
                parent: tuple[Table, list[Record]] | None = None) -> list[Record]:  # fmt: skip
    if not seed:
        return []
    columns = tuple(seed[0])
    lines = tuple(Line(tuple(record[c] for c in columns)) for record in seed)
    mapping = [(c, c, None) for c in columns]
    await import_and_compare(r, name=name, table=table, fmt=PLAIN, columns=columns, lines=lines,
                             mapping=mapping, target=target, parent=parent)  # fmt: skip
    return await r.state(name, table)


def _in_seed_order(members: list[Record], seed: tuple[dict[str, str], ...]) -> list[Record]:
    by_email = {m["EMAIL_ADDRESS_"]: m for m in members}
    return [by_email[record["EMAIL_ADDRESS_"].lower()] for record in seed]


def _compare_outcome(expected: Outcome, finished: RunFinished, context: str) -> None:
    actual = finished.data.counts.model_dump()
    assert finished.data.status.value == expected.status, (
        f"status {finished.data.status}: {finished.data.error}\n{context}"
    )
    if expected.status == "failed":
        assert (actual["inserted"], actual["updated"]) == (0, 0), (
            f"a failed run reports writes {actual}\n{context}"
        )
        return
    wanted = {k: v for k, v in expected.counts.items() if k in actual}
    assert {k: actual[k] for k in wanted} == wanted, f"counts {actual} != model {expected.counts}\n{context}"


def _canonical(row: Record, known_riids: set[Any]) -> str:
    def value(v: Any) -> Any:
        if isinstance(v, datetime):
            return v.astimezone(UTC).isoformat()
        if isinstance(v, int | float) and not isinstance(v, bool):
            return float(v)
        return v

    canon = {k: value(v) for k, v in row.items()}
    if "RIID_" in canon and row["RIID_"] is not NEW_RIID and row["RIID_"] not in known_riids:
        canon["RIID_"] = NEW_RIID
    return json.dumps(canon, sort_keys=True, ensure_ascii=False)


def _compare_rows(expected: list[Record], actual: list[Record], before: list[Record], context: str) -> None:
    known = {row["RIID_"] for row in before if "RIID_" in row}
    riids = [row["RIID_"] for row in actual if "RIID_" in row]
    assert len(riids) == len(set(riids)), f"RIID_ values repeat: {riids}\n{context}"
    want, got = Counter(_canonical(r, known) for r in expected), Counter(_canonical(r, known) for r in actual)
    missing, extra = sorted((want - got).elements()), sorted((got - want).elements())
    assert not missing and not extra, (
        f"table differs from the model\nmissing {missing}\nextra {extra}\n{context}"
    )


def _compare_rejects(expected: Outcome, actual: list[tuple[int, str]], context: str) -> None:
    wanted = {reject.line: reject for reject in expected.rejects}
    assert [line for line, _ in actual] == sorted(wanted), (
        f"rejects {actual} != model {expected.rejects}\n{context}"
    )
    for line, reject_field in actual:
        named = {part for part in re.split(r"[\s,+/|]+", reject_field) if part}
        assert named and named <= wanted[line].fields, (
            f"line {line}: field {reject_field!r} not in {wanted[line]}\n{context}"
        )


def save_counts(path: Path = Path("test-artifacts") / "import-model-examples.json") -> None:
    path.parent.mkdir(exist_ok=True)
    previous = json.loads(path.read_text()) if path.exists() else {}
    examples = {**previous.get("examples", {}), **EXAMPLES}
    outcomes = {**previous.get("outcomes", {}), **OUTCOMES}
    path.write_text(json.dumps({"examples": examples, "outcomes": outcomes}, indent=2, sort_keys=True) + "\n")
