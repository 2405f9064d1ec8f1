from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class LogsinkSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LOGSINK_", extra="ignore", frozen=True)

    http_port: int = Field(default=8003, ge=0, le=65535)
    # Unacknowledged deliveries in flight on the ingest channel: a few batches, so the next batch is full
    # when one is written (a message is acknowledged only after its batch is written).
    prefetch: int = Field(default=15000, ge=1, le=30000)
    # Larger batches put more of a run's lines into each stored chunk (a document costs the database far
    # more than a line in it); a flood's batch of 5,000 is written in well under a second.
    batch_size: int = Field(default=5000, ge=1, le=10000)
    # Batches written at once: the database writes one while the logsink reads the reply of another
    # (their writes are order-tolerant, as between two logsinks; acknowledgements stay in order).
    writes_in_flight: int = Field(default=2, ge=1, le=8)
    flush_interval: float = Field(default=0.2, gt=0, le=10, description="Seconds a batch waits at most.")
    log_retention_days: float = Field(default=30, gt=0, description="Run log lines expire after this.")
    # Notifications (issue #16): the logsink sends them (docs/notifications.md).
    api_url: str = Field(
        default="http://localhost:8000", description="The catalog's address as receivers reach it, for links."
    )
    notify_attempts: int = Field(
        default=6, ge=1, le=50, description="Sends of a notification before it fails."
    )
    notify_backoff: float = Field(
        default=10.0, gt=0, description="Seconds before the second attempt; doubled each time."
    )
    notify_max_backoff: float = Field(default=3600.0, gt=0)
    notify_timeout: float = Field(default=10.0, gt=0, description="Seconds one send may take.")
    notify_lease: float = Field(
        default=60.0, gt=0, description="A claim's lease; longer than a send's timeout."
    )
    notify_poll_interval: float = Field(
        default=30.0,
        gt=0,
        description="Seconds between looks for due ones left by another sender (new ones and this "
        "sender's retries are claimed at once).",
    )
    notify_concurrency: int = Field(default=4, ge=1, le=64)

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> LogsinkSettings:
        # A lease shorter than a send would let a second sender claim a notification still being sent.
        if self.notify_lease <= self.notify_timeout:
            raise ValueError("LOGSINK_NOTIFY_LEASE must be longer than LOGSINK_NOTIFY_TIMEOUT")
        return self
