import os
import socket

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


def default_executor_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class ExecutorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="EXECUTOR_", extra="ignore", frozen=True)

    http_port: int = Field(default=8002, ge=0, le=65535)
    executor_id: str = Field(default_factory=default_executor_id, pattern=r"^[A-Za-z0-9_.-]{1,100}$")
    concurrency: int = Field(default=2, ge=1, le=64, description="EXECUTOR_CONCURRENCY: runs held at once.")
    lease_seconds: float = Field(default=30.0, ge=2)
    reaper_interval: float = Field(default=5.0, gt=0)
    progress_interval: float = Field(default=2.0, gt=0)
    log_flush_seconds: float = Field(
        default=1.0,
        gt=0,
        le=10,
        description="How long a run's log lines wait for the one write that lets them out.",
    )
    batch_size: int = Field(default=1000, ge=1, le=100_000)
    read_chunk_bytes: int = Field(default=256 * 1024, ge=1024)
    writes_in_flight: int = Field(default=2, ge=1, le=16, description="Batches written at once per run.")
    max_attempts: int = Field(default=3, ge=1, le=20)
    retry_backoff: float = Field(default=2.0, ge=0)
    rest_max_attempts: int = Field(default=5, ge=1, le=20)
    rest_backoff: float = Field(default=0.5, ge=0)
    max_decompression_ratio: int = Field(
        default=200, ge=2, description="A compressed source inflating beyond this ratio is refused (bombs)."
    )
    max_decompressed_bytes: int = Field(
        default=64 << 30, ge=1 << 20, description="A compressed source inflating beyond this size is refused."
    )
    max_record_length: int = Field(
        default=4 << 20, ge=1024, description="Characters of one source record; a longer one fails the run."
    )
    spool_dir: str | None = Field(
        default=None,
        description="EXECUTOR_SPOOL_DIR: where encrypted imports are decrypted to before they are read "
        "(deleted after the run); unset: the system's temporary directory. Needs room for the largest file.",
    )
    finished_lease_days: float = Field(
        default=30,
        gt=0,
        description="EXECUTOR_FINISHED_LEASE_DAYS: a finished run's lease is kept this long after it ended (it "
        "refuses a late duplicate RunRequested of the run), then the executors delete it (hourly).",
    )
    ssh_idle_seconds: float = Field(
        default=30.0,
        ge=0,
        description="EXECUTOR_SSH_IDLE_SECONDS: an SSH connection idle this long is closed; until then later runs "
        "on the same connection settings reuse it (0: a connection per run).",
    )
