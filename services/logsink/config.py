from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class LogsinkSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LOGSINK_", extra="ignore", frozen=True)

    http_port: int = Field(default=8003, ge=0, le=65535)
    prefetch: int = Field(default=200, ge=1, le=5000)
