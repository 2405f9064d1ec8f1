"""A run attempt's work is built by the type of its job's spec."""

from __future__ import annotations

from typing import Any, cast

import pytest

from services.executor.domain import Tally
from services.executor.domain.outcomes import ImportOutcome
from services.executor.ports import RunWork
from services.executor.work import Attempt, WorkFactory
from shared.contracts.jobs import ExportSpec, ImportSpec
from shared.errors import PermanentError
from tests.unit.factories import import_spec


class Work:
    def __init__(self, name: str) -> None:
        self.name, self.tally, self.bytes_total = name, Tally(), None

    async def run(self) -> ImportOutcome:
        return ImportOutcome(self.tally, None)


async def test_the_builder_of_the_specs_type_builds_the_work() -> None:
    built: list[tuple[str, Any]] = []

    async def imports(spec: ImportSpec, attempt: Attempt) -> RunWork:
        built.append(("import", spec))
        return Work("import")

    async def exports(spec: ExportSpec, attempt: Attempt) -> RunWork:
        built.append(("export", spec))
        return Work("export")

    factory = WorkFactory()
    factory.add(ImportSpec, imports)
    factory.add(ExportSpec, exports)
    spec, attempt = import_spec(), cast(Attempt, object())
    work = await factory.build(spec, attempt)
    assert cast(Work, work).name == "import"
    assert built == [("import", spec)]


async def test_a_spec_without_a_builder_is_refused() -> None:
    with pytest.raises(PermanentError, match="no work for a ImportSpec"):
        await WorkFactory().build(import_spec(), cast(Attempt, object()))
