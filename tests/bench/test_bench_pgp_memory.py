"""bench/pgp_memory.py's own parts, in seconds: its arguments, and a run on two tiny files that goes
through both operations and checks the decrypted digest (the benchmark itself streams 1 GB)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

pgp_memory = importlib.import_module("pgp_memory")


def test_pgp_memory_arguments() -> None:
    assert pgp_memory.parse([]).size_list == [100, 1024]
    assert pgp_memory.parse(["--sizes", "1,2"]).size_list == [1, 2]
    with pytest.raises(SystemExit):
        pgp_memory.parse(["--sizes", "0"])


def test_pgp_memory_runs_on_tiny_files(tmp_path: Path) -> None:
    command = [sys.executable, str(BENCH / "pgp_memory.py"), "--sizes", "1,2", "--dir", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert [line.split()[:2] for line in lines[:4]] == [
        ["decrypt", "1"],
        ["encrypt", "1"],
        ["decrypt", "2"],
        ["encrypt", "2"],
    ]
    assert lines[4].startswith("decrypt: 2 MiB / 1 MiB peak RSS ratio: python ")
    assert list(tmp_path.iterdir()) == []  # its files and gpg home are gone
