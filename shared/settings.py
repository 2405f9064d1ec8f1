"""Settings common to every service, read from the environment (pydantic-settings).

Common variables carry no prefix (`AMQP_URL`, `MONGO_URL`, `LOG_LEVEL`); each service's own settings
use its prefix (`CATALOG_`, `SCHEDULER_`, `EXECUTOR_`, `LOGSINK_`), e.g. `EXECUTOR_HTTP_PORT`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    amqp_url: str = Field(default="amqp://guest:guest@localhost:5672/", alias="AMQP_URL")
    mongo_url: str | None = Field(default=None, alias="MONGO_URL")
    db_prefix: str = Field(default="connect", alias="CONNECT_DB_PREFIX", pattern=r"^[A-Za-z0-9_]{1,40}$")
    log_level: str = Field(default="INFO", alias="LOG_LEVEL")
    secret_key: str | None = Field(default=None, alias="CONNECT_SECRET_KEY", repr=False)
    # Rotation: the keys used before, comma-separated (each may be `file:...`); they decrypt, never encrypt.
    old_secret_keys: str = Field(default="", alias="CONNECT_OLD_SECRET_KEYS", repr=False)
    # the scrypt salt, needed (only) when CONNECT_SECRET_KEY is a passphrase
    secret_salt: str | None = Field(default=None, alias="CONNECT_SECRET_SALT", repr=False)
    graceful_timeout: float = Field(default=30.0, alias="CONNECT_GRACEFUL_TIMEOUT", gt=0)
    amqp_prefix: str = Field(default="", alias="CONNECT_AMQP_PREFIX", pattern=r"^[A-Za-z0-9_.-]{0,40}$")
    dev_mode: bool = Field(default=False, alias="CONNECT_DEV_MODE")
    # What publishers label their (structured-mode CloudEvents) bodies. `application/json` only while
    # upgrading from a release whose consumers read nothing else (docs/events.md, Upgrading).
    message_content_type: Literal["application/cloudevents+json", "application/json"] = Field(
        default="application/cloudevents+json", alias="CONNECT_MESSAGE_CONTENT_TYPE"
    )

    def database(self, service: str) -> str:
        """Name of a service's own database (each service is the sole writer of its collections)."""
        return f"{self.db_prefix}_{service}"

    @property
    def audience_database(self) -> str:
        """Database holding the audience data (lists and tables), written by executors."""
        return f"{self.db_prefix}_audience"


class ServiceSettings(BaseSettings):
    """Base of the per-service settings classes; subclasses set `env_prefix`."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    http_host: str = "0.0.0.0"
    http_port: int = Field(default=8000, ge=0, le=65535)
    prefetch: int = Field(default=16, ge=1, le=1000)
