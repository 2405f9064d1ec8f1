"""deploy/Dockerfile, .dockerignore and the image's health-check script."""

from __future__ import annotations

import fnmatch
import http.server
import json
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.deploy_helpers import DEPLOY, REPO, find_tool, run, run_ok

DOCKERFILE = DEPLOY / "Dockerfile"
HEALTHCHECK_SCRIPT = DEPLOY / "healthcheck.py"
BUILD_TOOLS = ("build-essential", "gcc", "g++", "make", "cmake", "python3-dev", "libffi-dev", "libssl-dev")
# The one system software the services run (shared/pgp drives gpg): installed in the final stage, nothing else.
RUNTIME_PACKAGES = {"gpg", "gpg-agent", "gpgconf"}


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        keyword, _, rest = buf.partition(" ")
        out.append((keyword.upper(), rest.strip()))
        buf = ""
    assert not buf, "dangling line continuation at end of Dockerfile"
    return out


def stages(text: str) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions(text):
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def global_args(text: str) -> dict[str, str]:
    args = {}
    for keyword, rest in instructions(text):
        if keyword == "FROM":
            break
        if keyword == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            args[key.strip()] = value.strip()
    return args


def exec_form(rest: str) -> list[str]:
    try:
        value = json.loads(rest)
    except json.JSONDecodeError:
        pytest.fail(f"not exec (JSON) form: {rest!r}")
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), rest
    return value


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return DOCKERFILE.read_text()


def test_hadolint_passes(dockerfile: str) -> None:
    hadolint = find_tool("hadolint")
    run_ok([hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)])


def test_hadolint_would_catch_a_bad_dockerfile() -> None:
    hadolint = find_tool("hadolint")
    bad = "FROM python:latest\nRUN apt-get update && apt-get install -y gcc\nCMD python app.py\n"
    proc = run([hadolint, "--no-color", "--failure-threshold", "style", "-"], stdin=bad)
    assert proc.returncode != 0 and "DL" in proc.stdout, proc.stdout + proc.stderr


def test_multi_stage_on_python_311_slim(dockerfile: str) -> None:
    args = global_args(dockerfile)
    froms = [rest for keyword, rest in instructions(dockerfile) if keyword == "FROM"]
    assert len(froms) >= 2, "expected a builder stage and a runtime stage"
    for rest in froms:
        image = rest.split()[0]
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), image)
        assert image.startswith("python:3.11-slim"), f"stage not on python:3.11-slim: {rest}"
    assert re.search(r"\bAS\s+builder\b", froms[0], re.IGNORECASE), "first stage should be named builder"


def test_final_stage_has_no_build_tools_and_only_copies_the_venv(dockerfile: str) -> None:
    final = stages(dockerfile)[-1]
    for keyword, rest in final:
        if keyword == "RUN":
            assert "apk add" not in rest, f"package install in final stage: {rest}"
            for install in re.findall(r"apt-get install ([^&;]*)", rest):
                packages = {word for word in install.split() if not word.startswith("-")}
                assert packages <= RUNTIME_PACKAGES, f"package install in final stage: {rest}"
            assert not re.search(r"\bpip\d*\s+install\b", rest), f"pip install in final stage: {rest}"
            for tool in BUILD_TOOLS:
                assert not re.search(rf"(^|\s){re.escape(tool)}(\s|$)", rest), (
                    f"{tool} in final stage: {rest}"
                )
    copies = [rest for keyword, rest in final if keyword == "COPY"]
    assert any("--from=builder" in c and "/opt/venv" in c for c in copies), (
        "final stage must take /opt/venv from builder"
    )
    envs = " ".join(rest for keyword, rest in final if keyword == "ENV")
    assert "/opt/venv/bin" in envs, "the venv's bin dir must be on PATH in the final stage"


def test_runs_as_numeric_non_root_user(dockerfile: str) -> None:
    final = stages(dockerfile)[-1]
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users, "final stage must set USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, (
        "USER must be a numeric non-root UID (Kubernetes runAsNonRoot checks it)"
    )
    assert not gid or (gid.isdigit() and int(gid) != 0)
    # nothing after USER switches back to root
    after = final[[k for k, _ in final].index("USER") :]
    assert all(k != "USER" or r.split(":")[0] not in ("root", "0") for k, r in after)


def test_exec_form_entrypoint_and_cmd(dockerfile: str) -> None:
    final = stages(dockerfile)[-1]
    entrypoints = [rest for keyword, rest in final if keyword == "ENTRYPOINT"]
    cmds = [rest for keyword, rest in final if keyword == "CMD"]
    assert entrypoints and cmds
    assert exec_form(entrypoints[-1]) == ["connect"], (
        "ENTRYPOINT must be exec-form so connect is PID 1 and gets SIGTERM"
    )
    assert exec_form(cmds[-1]) == ["serve", "catalog"]


def test_healthcheck_uses_python_script_on_healthz(dockerfile: str) -> None:
    final = stages(dockerfile)[-1]
    checks = [rest for keyword, rest in final if keyword == "HEALTHCHECK"]
    assert checks, "final stage needs a HEALTHCHECK"
    _, _, command = checks[-1].partition(" CMD ")
    argv = exec_form(command.strip())
    assert argv[0] in ("python", "python3"), "slim has no curl: the health check must use python"
    script_in_image = argv[1]
    copies = [rest for keyword, rest in final if keyword == "COPY"]
    assert any(c.split()[-1] == script_in_image and "deploy/healthcheck.py" in c for c in copies), (
        f"{script_in_image} must be copied from deploy/healthcheck.py"
    )
    assert "/healthz" in HEALTHCHECK_SCRIPT.read_text()


# ---------------------------------------------------------------------------- .dockerignore


def _dockerignore_rules() -> list[tuple[bool, str]]:
    rules = []
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        rules.append((negate, pattern.strip("/")))
    return rules


def _pattern_matches(pattern: str, path: str) -> bool:
    regex = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            regex += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            regex += ".*"
            i += 2
        else:
            regex += (
                fnmatch.translate(pattern[i])[4:-3]
                if pattern[i] not in "*?"
                else ("[^/]*" if pattern[i] == "*" else "[^/]")
            )
            i += 1
    return re.fullmatch(regex, path) is not None


def dockerignored(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matching a parent directory matches its contents."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negate, pattern in _dockerignore_rules():
        if any(_pattern_matches(pattern, c) for c in candidates):
            excluded = not negate
    return excluded


def test_dockerignore_matcher_sanity() -> None:
    assert _pattern_matches("**", "a/b") and _pattern_matches("**/__pycache__", "services/x/__pycache__")
    assert not _pattern_matches("services", "servicesx")


def test_copy_sources_exist_and_are_in_the_build_context(dockerfile: str) -> None:
    for stage in stages(dockerfile):
        for keyword, rest in stage:
            if keyword not in ("COPY", "ADD") or "--from=" in rest:
                continue
            words = [w for w in shlex.split(rest) if not w.startswith("--")]
            for src in words[:-1]:
                assert (REPO / src).exists(), f"COPY source {src} does not exist in the repository"
                assert not dockerignored(src), f"COPY source {src} is excluded by .dockerignore"
                if (REPO / src).is_dir():
                    for py in (REPO / src).rglob("*.py"):
                        rel = py.relative_to(REPO).as_posix()
                        if "__pycache__" not in rel:
                            assert not dockerignored(rel), f"{rel} would be missing from the image"


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    for path in (
        ".env",
        ".git/config",
        ".venv/bin/python",
        "var/data",
        "tests/unit/x.py",
        "services/__pycache__/x.cpython-311.pyc",
    ):
        assert dockerignored(path), f"{path} must not be sent to the Docker build context"


# ---------------------------------------------------------------------------- health-check script


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.status if self.path == "/healthz" else 404
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[http.server.HTTPServer, type[_Handler]]]:
    handler = type("Handler", (_Handler,), {"status": 200})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _check(service_args: list[str], env: dict[str, str]) -> int:
    base = {"PATH": "/usr/bin:/bin", "CONNECT_HEALTHCHECK_TIMEOUT": "3"}
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK_SCRIPT), *service_args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).returncode


def test_healthcheck_script_reads_port_from_env(
    health_server: tuple[http.server.HTTPServer, type[_Handler]],
) -> None:
    server, handler = health_server
    port = str(server.server_address[1])
    assert _check(["executor"], {"EXECUTOR_HTTP_PORT": port}) == 0
    assert _check([], {"CONNECT_SERVICE": "logsink", "LOGSINK_HTTP_PORT": port}) == 0
    # the port of another service does not count
    assert _check(["executor"], {"CATALOG_HTTP_PORT": port, "EXECUTOR_HTTP_PORT": "1"}) == 1
    handler.status = 503
    assert _check(["executor"], {"EXECUTOR_HTTP_PORT": port}) == 1


def test_healthcheck_script_fails_when_nothing_listens() -> None:
    assert _check(["scheduler"], {"SCHEDULER_HTTP_PORT": "1"}) == 1
    assert _check(["no-such-service"], {}) == 1


def test_healthcheck_script_finds_the_service_of_pid1() -> None:
    sys.path.insert(0, str(DEPLOY))
    try:
        import healthcheck
    finally:
        sys.path.remove(str(DEPLOY))
    assert Path(healthcheck.__file__).resolve() == HEALTHCHECK_SCRIPT.resolve()
    assert healthcheck.DEFAULT_PORTS == {
        "catalog": 8000,
        "scheduler": 8001,
        "executor": 8002,
        "logsink": 8003,
    }
    # what /proc/1/cmdline holds for ENTRYPOINT ["connect"] + CMD ["serve", "executor"]
    assert (
        healthcheck.service_from_cmdline(b"/opt/venv/bin/python\0/opt/venv/bin/connect\0serve\0executor\0")
        == "executor"
    )
    assert healthcheck.service_from_cmdline(b"/opt/venv/bin/connect\0serve\0logsink\0") == "logsink"
    assert healthcheck.service_from_cmdline(b"/sbin/docker-init\0--\0sleep\0") is None
