"""Domain code does no I/O (DESIGN.md §9): no domain module, nor anything of the project it imports, imports
a driver, a broker client, an HTTP framework or a metrics client."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IO_PACKAGES = {"pymongo", "aio_pika", "aiormq", "faststream", "httpx", "fastapi", "starlette", "uvicorn",
               "prometheus_client", "aiosmtplib", "socket", "subprocess", "wiredtiger", "secantus"}  # fmt: skip
DOMAINS = ["services.catalog.domain", "services.executor.domain", "services.logsink.domain",
           "services.logsink.outcomes", "services.logsink.messages", "services.scheduler.domain"]  # fmt: skip


def module_path(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def imports_of(module: str) -> set[str]:
    path = module_path(module)
    assert path is not None, module
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def io_reached_from(start: str) -> dict[str, str]:
    """I/O package → the project module that imports it, over everything `start` imports in the project."""
    seen, todo, found = set(), [start], {}
    while todo:
        module = todo.pop()
        if module in seen or module_path(module) is None:
            continue
        seen.add(module)
        for name in imports_of(module):
            top = name.split(".")[0]
            if top in IO_PACKAGES:
                found.setdefault(top, module)
            elif top in {"services", "shared"}:
                todo.append(name)
    return found


@pytest.mark.parametrize("domain", DOMAINS)
def test_a_domain_imports_no_io(domain: str) -> None:
    assert io_reached_from(domain) == {}


def test_the_check_sees_io_imported_by_a_module_a_domain_imports() -> None:
    assert io_reached_from("services.catalog.adapters.repository").get("pymongo") is not None
    assert io_reached_from("services.catalog.main")  # the wiring reaches every adapter
