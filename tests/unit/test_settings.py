"""Settings read from the environment: common variables without prefix, service variables with one."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.catalog.config import CatalogSettings
from services.executor.config import ExecutorSettings
from services.logsink.config import LogsinkSettings
from services.scheduler.config import SchedulerSettings
from shared.settings import CommonSettings

COMMON_VARIABLES = (
    "AMQP_URL",
    "MONGO_URL",
    "CONNECT_DB_PREFIX",
    "LOG_LEVEL",
    "CONNECT_SECRET_KEY",
    "CONNECT_GRACEFUL_TIMEOUT",
    "CONNECT_AMQP_PREFIX",
    "CONNECT_DEV_MODE",
)
SERVICE_VARIABLES = tuple(
    f"{service}_{name}"
    for service in ("CATALOG", "SCHEDULER", "EXECUTOR", "LOGSINK")
    for name in ("HTTP_PORT", "HTTP_HOST", "PREFETCH", "CONCURRENCY")
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*COMMON_VARIABLES, *SERVICE_VARIABLES, "HTTP_PORT", "CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)


def test_common_settings_read_urls_and_prefix_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMQP_URL", "amqp://u:p@broker:5673/vh")
    monkeypatch.setenv("MONGO_URL", "mongodb://db:27018/?replicaSet=rs0")
    monkeypatch.setenv("CONNECT_DB_PREFIX", "staging_2")

    settings = CommonSettings()

    assert settings.amqp_url == "amqp://u:p@broker:5673/vh"
    assert settings.mongo_url == "mongodb://db:27018/?replicaSet=rs0"
    assert settings.db_prefix == "staging_2"


def test_database_names_carry_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECT_DB_PREFIX", "acme")

    settings = CommonSettings()

    assert settings.database("catalog") == "acme_catalog"
    assert settings.database("scheduler") == "acme_scheduler"
    assert settings.audience_database == "acme_audience"


def test_common_defaults_without_environment() -> None:
    settings = CommonSettings()

    assert settings.amqp_url == "amqp://guest:guest@localhost:5672/"
    assert settings.mongo_url is None
    assert settings.db_prefix == "connect"
    assert settings.database("logsink") == "connect_logsink"
    assert settings.audience_database == "connect_audience"
    assert settings.amqp_prefix == ""


@pytest.mark.parametrize("prefix", ["a/b", "a b", "x.y", "", "a$", "p" * 41])
def test_invalid_database_prefix_is_rejected(monkeypatch: pytest.MonkeyPatch, prefix: str) -> None:
    monkeypatch.setenv("CONNECT_DB_PREFIX", prefix)

    with pytest.raises(ValidationError) as error:
        CommonSettings()

    assert "CONNECT_DB_PREFIX" in str(error.value)


def test_secret_key_is_not_shown_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECT_SECRET_KEY", "very-secret-value-123")

    settings = CommonSettings()

    assert settings.secret_key == "very-secret-value-123"
    assert "very-secret-value-123" not in repr(settings)


def test_common_settings_are_frozen() -> None:
    settings = CommonSettings()

    with pytest.raises(ValidationError):
        settings.db_prefix = "other"


@pytest.mark.parametrize(
    ("settings_class", "port"),
    [(CatalogSettings, 8000), (SchedulerSettings, 8001), (ExecutorSettings, 8002), (LogsinkSettings, 8003)],
)
def test_default_http_ports(settings_class: type[CatalogSettings], port: int) -> None:
    assert settings_class().http_port == port


def test_executor_settings_use_the_executor_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECUTOR_HTTP_PORT", "9102")
    monkeypatch.setenv("EXECUTOR_CONCURRENCY", "5")

    settings = ExecutorSettings()

    assert settings.http_port == 9102
    assert settings.concurrency == 5


def test_executor_concurrency_default_and_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ExecutorSettings().concurrency == 2

    monkeypatch.setenv("EXECUTOR_CONCURRENCY", "0")
    with pytest.raises(ValidationError):
        ExecutorSettings()


def test_scheduler_settings_use_the_scheduler_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEDULER_HTTP_PORT", "9101")
    monkeypatch.setenv("EXECUTOR_HTTP_PORT", "9102")

    assert SchedulerSettings().http_port == 9101
    assert ExecutorSettings().http_port == 9102


def test_service_settings_ignore_other_services_and_unprefixed_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PORT", "9999")
    monkeypatch.setenv("SCHEDULER_HTTP_PORT", "9101")

    assert CatalogSettings().http_port == 8000
    assert ExecutorSettings().http_port == 8002
    assert LogsinkSettings().http_port == 8003


def test_service_port_out_of_range_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGSINK_HTTP_PORT", "70000")

    with pytest.raises(ValidationError):
        LogsinkSettings()


def test_a_notification_lease_must_outlast_a_send() -> None:
    assert LogsinkSettings().notify_lease > LogsinkSettings().notify_timeout
    with pytest.raises(ValidationError, match="LOGSINK_NOTIFY_LEASE"):
        LogsinkSettings(notify_lease=5, notify_timeout=10)
