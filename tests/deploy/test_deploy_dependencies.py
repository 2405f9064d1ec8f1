"""Dependencies: every import is declared, the locks pin what pyproject.toml asks for, installs use them.

requirements/runtime.lock (the image) and requirements/dev.lock (`make install`) come from `make lock`
(uv pip compile --universal --generate-hashes); these checks need neither uv nor the network.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.deploy.deploy_helpers import DEPLOY, REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
LOCKS = {"runtime": REPO / "requirements" / "runtime.lock", "dev": REPO / "requirements" / "dev.lock"}
FIRST_PARTY = {"services", "shared", "tests"}
# Modules that run only in `connect dev` and the tests, where the `embedded` extra is installed.
EMBEDDED_ONLY_FILES = ("services/dev/", "shared/embedded_server.py")


def requirements(specs: list[str]) -> dict[str, Requirement]:
    reqs = (Requirement(s) for s in specs)
    return {canonicalize_name(r.name): r for r in reqs if canonicalize_name(r.name) != "audience-connect"}


RUNTIME = requirements(PYPROJECT["project"]["dependencies"])
EMBEDDED = requirements(PYPROJECT["project"]["optional-dependencies"]["embedded"])


def third_party_imports() -> dict[str, set[str]]:
    """Top-level module → files importing it (nested imports too), for services/ and shared/."""
    found: dict[str, set[str]] = {}
    for root in ("services", "shared"):
        for path in sorted((REPO / root).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in FIRST_PARTY:
                        found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def distributions_of(module: str) -> set[str]:
    dists = importlib.metadata.packages_distributions().get(module, [])
    assert dists, f"import {module!r} comes from no installed distribution"
    return {canonicalize_name(d) for d in dists}


def locked(name: str) -> dict[str, tuple[Version, int]]:
    """Lock file → {package: (pinned version, number of hashes)}."""
    pins: dict[str, tuple[Version, int]] = {}
    current = None
    for line in LOCKS[name].read_text().splitlines():
        if m := re.match(r"^([A-Za-z0-9._-]+)==([^ ;\\]+)", line):
            current = canonicalize_name(m[1])
            pins[current] = (Version(m[2]), 0)
        elif current and line.strip().startswith("--hash=sha256:"):
            version, hashes = pins[current]
            pins[current] = (version, hashes + 1)
    assert pins, f"{LOCKS[name]} pins nothing"
    return pins


def test_every_third_party_import_is_a_declared_dependency() -> None:
    imports = third_party_imports()
    assert {"aio_pika", "aiormq", "starlette", "fastapi", "pymongo"} <= set(imports), "the scan finds imports"
    undeclared = {}
    for module, files in imports.items():
        dists = distributions_of(module)
        if dists & set(RUNTIME):
            continue
        if dists & set(EMBEDDED) and all(f.startswith(EMBEDDED_ONLY_FILES) for f in files):
            continue
        undeclared[module] = sorted(files)
    assert not undeclared, f"imported but not declared in [project].dependencies: {undeclared}"


def test_locks_pin_every_requirement_within_its_specifier_with_hashes() -> None:
    runtime, dev = locked("runtime"), locked("dev")
    for name, req in RUNTIME.items():
        assert name in runtime, f"{name} missing from runtime.lock: run `make lock`"
        assert req.specifier.contains(runtime[name][0], prereleases=True), (
            f"{name} {runtime[name][0]} vs {req}"
        )
    for extra in ("embedded", "test", "dev"):
        for name, req in requirements(PYPROJECT["project"]["optional-dependencies"][extra]).items():
            assert name in dev, f"{name} ([{extra}]) missing from dev.lock: run `make lock`"
            assert req.specifier.contains(dev[name][0], prereleases=True), f"{name} {dev[name][0]} vs {req}"
    for lock in (runtime, dev):
        assert all(hashes for _, hashes in lock.values()), "every pin carries hashes"
    differing = {n: (v, dev[n][0]) for n, (v, _) in runtime.items() if n in dev and dev[n][0] != v}
    assert not differing, f"tests run other versions than the image ships: {differing}"
    assert "uv" not in dev, "uv resolves the locks (make lock); it is not a project dependency"


# OpenTelemetry ships its instrumentation, semantic conventions and exporter helpers as 0.x betas in
# lockstep with the 1.x SDK (the SDK itself pins `opentelemetry-semantic-conventions==0.NNbN`): those are
# pre-releases by their project's versioning, pulled in by exact pins, not by `--pre`.
OTEL_BETA_SERIES = "opentelemetry-"


def test_pre_releases_are_named_in_their_own_specifiers_or_are_opentelemetrys_beta_series() -> None:
    pre = {name for name, (version, _) in locked("dev").items() if version.is_prerelease}
    assert {n for n in pre if not n.startswith(OTEL_BETA_SERIES)} == {"secantusdb"}, pre
    assert EMBEDDED["secantusdb"].specifier.prereleases, "its specifier names the pre-release it admits"
    for name, req in RUNTIME.items():
        if name in pre:  # a declared pre-release says so in its specifier (e.g. `>=0.66b0`)
            assert req.specifier.prereleases, f"{req}: name the pre-release it admits"
        else:
            assert not req.specifier.prereleases, f"{req}: runtime dependencies are releases"


def test_every_runtime_dependency_has_a_floor_and_a_ceiling_or_is_data() -> None:
    for name, req in RUNTIME.items():
        operators = {s.operator for s in req.specifier}
        assert ">=" in operators, f"{req}: a floor (no abandoned releases admitted)"
        assert "<" in operators or name == "tzdata", f"{req}: a major-version ceiling"


def test_installs_come_from_the_locks() -> None:
    makefile = (REPO / "Makefile").read_text()
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "--pre" not in makefile and "--pre" not in dockerfile
    assert "DEV_LOCK := requirements/dev.lock" in makefile
    assert "pip install -q --require-hashes -r $(DEV_LOCK)" in makefile
    assert "pip install -q --no-deps -e ." in makefile
    assert "pip install --require-hashes --no-deps -r requirements/runtime.lock" in dockerfile
    assert "pip install --no-deps /tmp/wheels/*.whl" in dockerfile
    installs = re.findall(r"pip install [^\n]*", makefile + dockerfile)
    assert all(
        "--require-hashes" in i or "--no-deps" in i or "uv==" in i or "--upgrade pip" in i for i in installs
    ), installs
    stamp_prereqs = re.search(r"^\$\(STAMP\):([^|\n]*)", makefile, re.M)
    assert stamp_prereqs and "$(DEV_LOCK)" in stamp_prereqs[1], "a changed lock reinstalls"


def test_lock_headers_say_how_to_regenerate() -> None:
    for path in LOCKS.values():
        assert "make lock" in path.read_text()[:500], f"{path.name}: regenerate with `make lock`"


def test_makefile_lock_target_exists() -> None:
    assert re.search(r"^lock:", (REPO / "Makefile").read_text(), re.M)


def test_no_stray_requirements_files() -> None:
    assert sorted(p.name for p in (REPO / "requirements").iterdir()) == ["dev.lock", "runtime.lock"]
    assert not list(Path(REPO).glob("requirements*.txt"))
