from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class SchedulerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SCHEDULER_", extra="ignore", frozen=True)

    http_port: int = Field(default=8001, ge=0, le=65535)
    outbox_relay_interval: float = Field(default=2.0, gt=0)
    outbox_relay_after: float = Field(default=5.0, ge=0, description="Age before an unsent entry is resent.")
