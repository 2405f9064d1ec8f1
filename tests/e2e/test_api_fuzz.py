"""Property-based runs of the OpenAPI document against the catalog process, per operation and stateful
(operations chained by the document's links): no input yields a server error or an answer the document
does not describe."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.dev.processes import SystemProcesses
from shared.settings import CommonSettings
from shared.topology import Topology
from tests.conftest import TEST_SECRET_KEY, examples
from tests.support.broker import delete_topology
from tests.support.system import admin_token

pytestmark = pytest.mark.e2e


@pytest.fixture
def catalog_and_scheduler(settings: CommonSettings, tmp_path: Path) -> Iterator[SystemProcesses]:
    env = {
        "AMQP_URL": settings.amqp_url,
        "MONGO_URL": settings.mongo_url or "",
        "CONNECT_DB_PREFIX": settings.db_prefix,
        "CONNECT_AMQP_PREFIX": settings.amqp_prefix,
        "CONNECT_SECRET_KEY": TEST_SECRET_KEY,
        "CATALOG_RUN_REQUEST_TIMEOUT": "3",
    }
    processes = SystemProcesses(env=env, log_dir=Path("test-artifacts") / "fuzz-logs")
    try:
        processes.start("catalog")
        processes.start("scheduler")
        processes.wait_ready()
        yield processes
    finally:
        processes.stop()
        asyncio.run(delete_topology(settings.amqp_url, Topology(prefix=settings.amqp_prefix)))


CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def schemathesis(api_url: str, token: str, phases: str, cwd: Path, *options: str) -> str:
    """`st run` of the catalog's own document: each answer must be no server error and must conform to
    the document (a documented status, content type and body schema). Its report is kept as an artifact."""
    command = [
        str(Path(sys.executable).parent / "st"), "run", f"{api_url}/openapi.json",
        "--checks", CHECKS,
        "--header", f"Authorization: Bearer {token}",
        "--phases", phases,
        *options,
        "--workers", "2",
        "--request-timeout", "20",
        "--generation-deterministic",
        "--suppress-health-check", "all",
        "--exclude-path-regex", "/logs/stream$",  # a live tail (SSE) answers until the run ends
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=cwd)
    Path("test-artifacts").mkdir(exist_ok=True)
    (Path("test-artifacts") / f"schemathesis-{phases.replace(',', '-')}.txt").write_text(
        result.stdout + result.stderr
    )
    return result.stdout


def assert_every_case_passed(output: str, at_least: int) -> None:
    # The generator itself now and then trips over its own internals ("Runtime Error" in its report); that
    # says nothing of the API. What must hold: no answer failed a check (ST1xx: a server error, an
    # undocumented status, a body or content type the document does not describe), and the cases did run.
    report = output[-8000:]
    assert "Server error" not in output and not re.search(r"\bST1\d\d\b", output), report
    counts = re.search(r"(\d+) generated, (\d+) passed", output)
    assert counts is not None and int(counts[1]) > at_least and counts[1] == counts[2], report


async def test_schemathesis_per_operation_and_stateful_finds_no_server_error_nor_a_nonconforming_answer(
    catalog_and_scheduler: SystemProcesses, settings: CommonSettings, tmp_path: Path
) -> None:
    token = await admin_token(settings, "fuzz")
    api_url = f"{catalog_and_scheduler.processes['catalog'].url}/api/v1"

    per_operation = schemathesis(
        api_url, token, "examples,fuzzing", tmp_path, "--max-examples", str(examples(25, 300))
    )
    assert_every_case_passed(per_operation, at_least=500)

    # Stateful: scenarios chain operations through the document's links (create → get, run → getRun, …),
    # from valid requests only (the run above sent the invalid ones), so that creations succeed.
    budget = str(examples(40, 400))
    stateful = schemathesis(
        api_url, token, "stateful", tmp_path, "--max-examples", budget, "--mode", "positive"
    )
    assert_every_case_passed(stateful, at_least=20)
    scenarios = re.search(r"Scenarios:\s+(\d+)", stateful)
    links = re.search(r"API Links:\s+(\d+) covered / (\d+) selected", stateful)
    assert scenarios is not None and int(scenarios[1]) > 0, stateful[-8000:]
    assert links is not None and int(links[1]) > 0 and int(links[2]) > 50, stateful[-8000:]
