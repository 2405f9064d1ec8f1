from pydantic import Field
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
