"""Every MongoDB collection of Connect, in one place, as `shared/topology.py` holds every queue.

Each service owns one database (`CommonSettings.database(service)`) and is the only writer of its
collections; a service that reads another's (the catalog shows the logsink's runs, the executor
reads the catalog's connections) names them from here, never by a string of its own. The audience
tables are named by their table definitions (`shared.audience`), beside the one counter collection.
"""

from __future__ import annotations

from typing import Final


class CatalogCollections:
    JOBS: Final = "jobs"
    GROUPS: Final = "groups"
    CONNECTIONS: Final = "connections"
    TABLES: Final = "tables"
    TOKENS: Final = "tokens"
    NOTIFICATION_CHANNELS: Final = "notification_channels"
    PGP_KEYS: Final = "pgp_keys"
    COUNTERS: Final = "counters"  # the next job, group and connection ids
    OUTBOX: Final = "outbox"
    CONSOLE_SESSIONS: Final = "console_sessions"
    AUDIT: Final = "audit_log"  # who changed what, when (one entry per change, in its transaction)
    IDEMPOTENCY: Final = "idempotency_keys"  # the first answer under each caller's Idempotency-Key, for 24 h


class SchedulerCollections:
    SCHEDULES: Final = "schedule_state"  # read by the catalog too (next and previous run)
    LEDGER: Final = "fire_ledger"
    OUTBOX: Final = "outbox"
    GROUP_RUNS: Final = "group_runs"
    PARTITIONS: Final = "partitions"
    INSTANCES: Final = "scheduler_instances"


class ExecutorCollections:
    RUN_LEASES: Final = "run_leases"  # a run's lease, and the one-writer-per-table hold
    RUN_REJECTS: Final = "run_rejects"  # read by the catalog (a run's rejected records)
    EXPORT_WATERMARKS: Final = "export_watermarks"


class LogsinkCollections:
    """The run history: read by the catalog (Completed jobs, logs)."""

    RUNS: Final = "runs"
    GROUP_RUNS: Final = "group_runs"
    RUN_LOGS: Final = "run_logs"
    NOTIFICATIONS: Final = "notifications"  # shared.notification_records; the logsink sends them


AUDIENCE_COUNTERS: Final = "_connect_counters"  # in the audience database, beside the tables
