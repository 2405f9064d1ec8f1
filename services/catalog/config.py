from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class CatalogSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CATALOG_", extra="ignore", frozen=True)

    http_port: int = Field(default=8000, ge=0, le=65535)
    run_request_timeout: float = Field(default=10.0, gt=0)
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    outbox_relay_interval: float = Field(default=2.0, gt=0)
    outbox_retention_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="How long a published outbox entry is kept before the relay deletes it.",
    )
    # A revoked (deleted) token is refused at most this long after; 0 looks every token up every time.
    token_cache_seconds: float = Field(default=5.0, ge=0)
    # This many failed tokens or sign-ins from one client within the window → 429 (counted per replica).
    auth_failure_limit: int = Field(default=10, ge=1)
    auth_failure_window: float = Field(default=60.0, gt=0)
