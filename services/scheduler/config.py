from pydantic import AwareDatetime, Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class SchedulerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SCHEDULER_", extra="ignore", frozen=True)

    http_port: int = Field(default=8001, ge=0, le=65535)
    prefetch: int = Field(
        default=100,
        ge=1,
        le=1000,
        description=(
            "Unacknowledged deliveries per consumer: run-now commands waiting for an allocation in progress "
            "are allocated together, so a burst is as many transactions as it has batches of this size."
        ),
    )
    instance_id: str = Field(default="", description="Replica name in leases; empty: host name and pid.")
    outbox_relay_interval: float = Field(default=2.0, gt=0)
    outbox_relay_after: float = Field(default=5.0, ge=0, description="Age before an unsent entry is resent.")
    outbox_retention_seconds: float = Field(
        default=3600.0,
        gt=0,
        description=(
            "Published outbox entries older than this are deleted. A run-now entry answers a redelivered "
            "command: keep it longer than any command's deadline (the catalog's request timeout)."
        ),
    )
    tick_seconds: float = Field(default=1.0, gt=0, description="How often due slots are looked for.")
    partitions: int = Field(default=16, ge=1, le=1024, description="Schedules are spread over partitions.")
    partition_lease_seconds: float = Field(
        default=10.0, gt=0, description="A replica's claim on a partition; another takes over after it."
    )
    fire_concurrency: int = Field(default=4, ge=1, le=64, description="Partitions fired in parallel.")
    fire_batch: int = Field(default=500, ge=1, le=5000, description="Slots fired per transaction.")
    catch_up_slots: int = Field(
        default=1, ge=0, description="After downtime, how many of the most recent missed slots still fire."
    )
    catch_up_max_age_seconds: float = Field(
        default=0, ge=0, description="Missed slots older than this never fire (0: no age limit)."
    )
    catch_up_grace_seconds: float = Field(
        default=90.0,
        ge=0,
        description=(
            "Slots due this recently always fire: the longest a replica's death can delay a slot "
            "(partition lease + the database's transaction lifetime, 60 s on mongod)."
        ),
    )
    transaction_wait_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How long a fire waits on a conflicting transaction before the next pass.",
    )
    expire_resend_seconds: float = Field(default=60.0, gt=0)
    # Test-only: the schedule clock runs `clock_scale` times faster than real time from `clock_origin`.
    clock_origin: AwareDatetime | None = None
    clock_scale: float = Field(default=1.0, gt=0)
