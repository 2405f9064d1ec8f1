"""Property-based run of the OpenAPI document against the running catalog: no input yields a 500."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import RunningSystem

pytestmark = pytest.mark.e2e


async def test_schemathesis_finds_no_server_errors(system: RunningSystem, tmp_path: Path) -> None:
    schemathesis = Path(sys.executable).parent / "st"
    command = [
        str(schemathesis), "run", f"{system.api_url}/openapi.json",
        "--checks", "not_a_server_error",
        "--header", f"Authorization: Bearer {system.token}",
        "--max-examples", "12",
        "--phases", "examples,coverage,fuzzing",
        "--workers", "2",
        "--request-timeout", "20",
        "--generation-deterministic",
        "--suppress-health-check", "all",
        "--exclude-path-regex", "/logs/stream$",  # a live tail (SSE) answers until the run ends
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    report = result.stdout[-6000:] + result.stderr[-2000:]
    (Path("test-artifacts") / "schemathesis.txt").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, report
    assert "not_a_server_error" in result.stdout
