"""docker-compose.yml: Compose-spec schema, health checks, replicas, and no inline secrets."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.deploy_helpers import DEPLOY, REPO, find_tool, load_yaml, run, run_ok

COMPOSE = REPO / "docker-compose.yml"
CONNECT_SERVICES = {"catalog": 8000, "scheduler": 8001, "executor": 8002, "logsink": 8003}
SECRET_WORDS = ("PASSWORD", "PASS", "SECRET", "KEY", "TOKEN", "CREDENTIAL")
CREDENTIAL_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.IGNORECASE)
REQUIRED_ENV = ("AMQP_URL", "MONGO_URL", "CONNECT_SECRET_KEY")
CONNECT_ENV = {"AMQP_URL", "MONGO_URL", "CONNECT_DB_PREFIX", "CONNECT_AMQP_PREFIX", "LOG_LEVEL"}
# Exactly the variables each container gets (so every secret reaches only the containers that use it).
SECRET_KEY_ENV = {"CONNECT_SECRET_KEY", "CONNECT_OLD_SECRET_KEYS", "CONNECT_SECRET_SALT"}
EXPECTED_ENV = {
    "catalog": CONNECT_ENV | SECRET_KEY_ENV | {"CATALOG_HTTP_PORT"},
    "scheduler": CONNECT_ENV | {"SCHEDULER_HTTP_PORT"},
    "executor": CONNECT_ENV
    | SECRET_KEY_ENV
    | {"EXECUTOR_HTTP_PORT", "EXECUTOR_CONCURRENCY", "CONNECT_GRACEFUL_TIMEOUT"},
    "logsink": CONNECT_ENV | SECRET_KEY_ENV | {"LOGSINK_HTTP_PORT", "LOGSINK_API_URL"},
    "rabbitmq": {"RABBITMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_PASS"},
    "mongodb": set(),
    "sftp": {"SFTP_USERS"},
    "prometheus": set(),
    "grafana": {
        "GF_SECURITY_ADMIN_USER",
        "GF_SECURITY_ADMIN_PASSWORD",
        "GF_USERS_ALLOW_SIGN_UP",
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH",
    },
}
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def environment(service: dict[str, Any]) -> dict[str, str | None]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return {k: v for k, _, v in (item.partition("=") for item in env)}
    return {k: None if v is None else str(v) for k, v in env.items()}


def env_example() -> dict[str, str]:
    values = {}
    for line in (DEPLOY / "env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"malformed line in env.example: {line!r}"
            values[key.strip()] = value.strip()
    return values


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} (what `docker compose config` renders)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match[str]) -> str:
        name, kind, arg = m[1], m[2], m[3]
        if env.get(name):
            return env[name]
        if kind == "?":
            raise LookupError(f"{name}: {arg}")
        return arg if kind == "-" else ""

    return INTERPOLATION.sub(one, value)


def render_compose(env: dict[str, str]) -> dict[str, Any]:
    return dict(interpolate(load_yaml(COMPOSE), env))


def duration_seconds(value: str) -> float:
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", value):
        total += float(number) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}[unit]
    assert total > 0, f"cannot parse duration {value!r}"
    return total


def test_validates_against_compose_spec() -> None:
    run_ok([find_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)])


def test_schema_check_rejects_an_invalid_compose_file(tmp_path: Path) -> None:
    bad = tmp_path / "docker-compose.yml"
    bad.write_text("services:\n  web:\n    image: nginx\n    healthchek: {}\n")
    proc = run([find_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(bad)])
    assert proc.returncode != 0, proc.stdout


def test_expected_services(services: dict[str, Any]) -> None:
    expected = {"rabbitmq", "mongodb", "sftp", "prometheus", "grafana", *CONNECT_SERVICES}
    assert expected <= set(services), f"missing: {expected - set(services)}"
    assert re.fullmatch(r"rabbitmq:4\.\d+-management", services["rabbitmq"]["image"]), (
        "a supported 4.x broker"
    )
    assert services["mongodb"]["image"].startswith("mongo:7")
    assert services["sftp"]["image"].startswith("atmoz/sftp")


def test_every_service_has_a_healthcheck(services: dict[str, Any]) -> None:
    for name, service in services.items():
        check = service.get("healthcheck")
        assert check and not check.get("disable"), f"{name} has no healthcheck"
        test = check.get("test")
        assert test and test != ["NONE"], f"{name}: empty healthcheck test"


def test_depends_on_waits_for_healthy(services: dict[str, Any]) -> None:
    for name, service in services.items():
        deps = service.get("depends_on") or {}
        assert not isinstance(deps, list), f"{name}: depends_on must use the long form with conditions"
        for dep, spec in deps.items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            assert spec.get("condition") == "service_healthy", (
                f"{name} -> {dep} must wait for service_healthy"
            )
    for name in CONNECT_SERVICES:
        assert {"rabbitmq", "mongodb"} <= set(services[name]["depends_on"]), (
            f"{name} must wait for the broker and db"
        )


def test_connect_services_run_the_one_image(services: dict[str, Any]) -> None:
    for name, port in CONNECT_SERVICES.items():
        service = services[name]
        build = service["build"]
        assert build["context"] in (".", "./") and build["dockerfile"] == "deploy/Dockerfile"
        assert service["command"] == ["serve", name]
        health = service["healthcheck"]["test"]
        assert "connect-healthcheck" in " ".join(health) and name in health
        port_env = environment(service).get(f"{name.upper()}_HTTP_PORT")
        assert port_env in (None, str(port)), f"{name}: unexpected port {port_env}"
    images = {services[name]["image"] for name in CONNECT_SERVICES}
    assert len(images) == 1, f"all four services must use one image, got {images}"


def test_replicas(services: dict[str, Any]) -> None:
    assert services["executor"]["deploy"]["replicas"] >= 2
    assert services["scheduler"]["deploy"]["replicas"] == 2
    for name, service in services.items():
        if (service.get("deploy") or {}).get("replicas", 1) > 1:
            for port in service.get("ports") or []:
                published = str(port).rsplit(":", 2)
                assert len(published) < 2, (
                    f"{name} has several replicas and cannot publish fixed host port {port}"
                )


def test_graceful_shutdown_fits_in_stop_grace_period(services: dict[str, Any]) -> None:
    for name in CONNECT_SERVICES:
        service = services[name]
        graceful = float(environment(service).get("CONNECT_GRACEFUL_TIMEOUT") or 30)
        grace = duration_seconds(service.get("stop_grace_period", "10s"))
        assert grace > graceful, (
            f"{name}: stop_grace_period {grace}s must exceed graceful timeout {graceful}s"
        )
    assert duration_seconds(services["executor"]["stop_grace_period"]) >= 100


def test_no_inline_secrets(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for key, value in environment(service).items():
            if any(word in key.upper() for word in SECRET_WORDS):
                assert value and re.fullmatch(r"\$\{\w+(:[?-][^}]*)?\}", value), (
                    f"{name}: {key} looks secret; interpolate it from .env (${{{key}}}), never write it here"
                )
            assert value is None or not CREDENTIAL_URL.search(value), (
                f"{name}: {key} holds a URL with credentials"
            )
    text = COMPOSE.read_text()
    assert not CREDENTIAL_URL.search(text), "a URL with credentials is written in docker-compose.yml"


def test_secret_check_would_catch_inline_secrets() -> None:
    assert CREDENTIAL_URL.search("amqp://guest:guest@rabbitmq:5672/")
    assert CREDENTIAL_URL.search("mongodb://u:p@mongo:27017/?replicaSet=rs0")
    assert not CREDENTIAL_URL.search("mongodb://mongodb:27017/?replicaSet=rs0")
    assert any(w in "CONNECT_SECRET_KEY" for w in SECRET_WORDS)


def test_each_container_gets_only_the_variables_it_needs() -> None:
    rendered = render_compose(env_example())["services"]
    assert set(rendered) == set(EXPECTED_ENV)
    for name, service in rendered.items():
        assert "env_file" not in service, f"{name}: env_file would hand it every variable of .env"
        assert set(environment(service)) == EXPECTED_ENV[name], f"{name}: {sorted(environment(service))}"
    example = env_example()
    for name in CONNECT_SERVICES:
        env = environment(rendered[name])
        assert env["AMQP_URL"] == example["AMQP_URL"] and env["MONGO_URL"] == example["MONGO_URL"]
    assert environment(rendered["rabbitmq"])["RABBITMQ_DEFAULT_PASS"] == example["RABBITMQ_DEFAULT_PASS"]
    assert "CONNECT_SECRET_KEY" not in environment(rendered["scheduler"]), "the scheduler reads no secret"


def test_missing_secrets_stop_the_rendering() -> None:
    for key in (*REQUIRED_ENV, "RABBITMQ_DEFAULT_PASS", "GF_SECURITY_ADMIN_PASSWORD", "SFTP_USERS"):
        env = {k: v for k, v in env_example().items() if k != key}
        with pytest.raises(LookupError, match=key):
            render_compose(env)


def test_every_interpolated_variable_is_in_env_example() -> None:
    referenced = {m[1] for m in INTERPOLATION.finditer(COMPOSE.read_text())}
    assert referenced <= set(env_example()) | {"LOGSINK_API_URL", "GF_SECURITY_ADMIN_USER"}, referenced - set(
        env_example()
    )


def test_secrets_come_from_an_uncommitted_env_file() -> None:
    ignored = {line.strip() for line in (REPO / ".gitignore").read_text().splitlines()}
    assert ".env" in ignored or "/.env" in ignored, ".env must be git-ignored"


def test_env_example_documents_every_variable() -> None:
    values = env_example()
    needed = {
        *REQUIRED_ENV,
        "RABBITMQ_DEFAULT_USER",
        "RABBITMQ_DEFAULT_PASS",
        "SFTP_USERS",
        "GF_SECURITY_ADMIN_PASSWORD",
    }
    assert needed <= set(values), f"env.example lacks {needed - set(values)}"
    assert values["AMQP_URL"].startswith("amqp://") and "@rabbitmq:5672" in values["AMQP_URL"]
    assert "replicaSet=rs0" in values["MONGO_URL"], "MongoDB must be used as a replica set (transactions)"
    for key, value in values.items():
        if any(word in key for word in ("PASS", "SECRET")):  # empty = an optional one left unset
            assert value == "" or "change-me" in value, f"{key} in env.example must be an obvious placeholder"
    assert values["CONNECT_SECRET_KEY"], "the one required key has a placeholder to replace"


def test_mongodb_is_a_self_initiating_replica_set(services: dict[str, Any]) -> None:
    mongo = services["mongodb"]
    command = mongo["command"]
    command = command if isinstance(command, list) else command.split()
    assert "--replSet" in command and command[command.index("--replSet") + 1] == "rs0"
    check = " ".join(mongo["healthcheck"]["test"])
    assert "rs.initiate" in check and "rs0" in check and "mongodb:27017" in check
    assert "isWritablePrimary" in check, "healthy only once the node is primary"


def test_rabbitmq_plugins(services: dict[str, Any]) -> None:
    mounts = services["rabbitmq"]["volumes"]
    target = [m for m in mounts if str(m).split(":")[1] == "/etc/rabbitmq/enabled_plugins"]
    assert target, "enabled_plugins must be mounted into the broker"
    text = (DEPLOY / "rabbitmq" / "enabled_plugins").read_text().strip()
    assert re.fullmatch(r"\[\s*[a-z_]+(\s*,\s*[a-z_]+)*\s*\]\.", text), f"not an Erlang term list: {text!r}"
    assert {"rabbitmq_management", "rabbitmq_prometheus"} <= set(re.findall(r"[a-z_]+", text))


def test_bind_mount_sources_exist(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for mount in service.get("volumes") or []:
            source = mount["source"] if isinstance(mount, dict) else str(mount).split(":")[0]
            if source.startswith((".", "/")):
                assert (REPO / source).exists(), f"{name}: bind mount source {source} does not exist"


def test_prometheus_and_grafana_use_the_committed_config(services: dict[str, Any]) -> None:
    prom = " ".join(map(str, services["prometheus"]["volumes"]))
    assert "./deploy/prometheus:/etc/prometheus" in prom
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    graf = " ".join(map(str, services["grafana"]["volumes"]))
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning" in graf
    assert "./deploy/grafana/connect-dashboard.json:/var/lib/grafana/dashboards/" in graf
