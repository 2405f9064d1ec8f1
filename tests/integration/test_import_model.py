"""Differential property tests of imports: the real executor (real database and sshd) against the model.

Each example defines fresh tables, seeds them through imports (checked against the model too), writes
a generated file (encodings, BOM, CRLF, quoting, blank lines, ragged rows, bad values, gzip) and
compares final table, counts and rejects with `tests.model.import_model`. Examples per mode are
written to `test-artifacts/import-model-examples.json`; `CONNECT_DEEP=1` runs many more.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from tests.conftest import DEEP, examples
from tests.integration.test_import_model_support import Runner, check
from tests.model.import_scenarios import Scenario, custom_scenarios, extension_scenarios, list_scenarios
from tests.support.executor_harness import Harness

pytestmark = pytest.mark.timeout(0 if DEEP else 170)


@pytest.fixture(name="runner")
def runner_fixture(harness: Harness) -> Runner:
    return Runner(harness)


@settings(max_examples=examples(25))
@given(scenario=list_scenarios())
async def test_list_imports_follow_the_model(runner: Runner, scenario: Scenario) -> None:
    await check(runner, scenario)


@settings(max_examples=examples(20))
@given(scenario=extension_scenarios())
async def test_profile_extension_imports_follow_the_model(runner: Runner, scenario: Scenario) -> None:
    await check(runner, scenario)


@settings(max_examples=examples(15))
@given(scenario=custom_scenarios("merge"))
async def test_custom_merge_imports_follow_the_model(runner: Runner, scenario: Scenario) -> None:
    await check(runner, scenario)


@settings(max_examples=examples(15))
@given(scenario=custom_scenarios("append"))
async def test_custom_append_imports_follow_the_model(runner: Runner, scenario: Scenario) -> None:
    await check(runner, scenario)


@settings(max_examples=examples(15))
@given(scenario=custom_scenarios("overwrite"))
async def test_custom_overwrite_imports_follow_the_model(runner: Runner, scenario: Scenario) -> None:
    await check(runner, scenario)
