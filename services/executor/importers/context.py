"""What an import run gets from the executor: its settings, and per attempt its identity and hooks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from services.executor.importers import sources
from services.executor.importers.pipeline import Checkpoint


@dataclass(frozen=True)
class ImportSettings:
    batch_size: int
    read_chunk_bytes: int
    max_in_flight: int = 2
    limits: sources.SourceLimits = sources.DEFAULT_LIMITS  # decompression and record-length bounds
    wait_minute_seconds: float = 60.0  # a minute of `if_missing: wait` (tests shorten it)
    spool_dir: str | None = (
        None  # decrypted files (EXECUTOR_SPOOL_DIR); None: the system's temporary directory
    )


@dataclass
class ImportContext:
    """What a run attempt brings to the importer: identity, resumption, hooks."""

    run_id: str
    tag: str  # identifies this attempt's writes (`_cx_run`)
    resume: Checkpoint | None = None
    checkpoint_doc: dict[str, Any] | None = None  # as stored: a complete load's `LoadDone` too
    save_checkpoint: Callable[[Checkpoint], Awaitable[None]] | None = None
    # Waits for the writer lock of (collection, table name); True when the run held it already.
    hold_table: Callable[[str, str], Awaitable[bool]] | None = None
    on_bytes: Callable[[str, int], None] = lambda direction, count: None
    on_records: Callable[[str, int], None] = lambda outcome, count: None
    dry_run: bool = False  # reads and checks, writes nothing (its store is a `DryRunStore`)
