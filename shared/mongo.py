"""MongoDB client lifecycle (PyMongo's asyncio client) and the embedded server for dev and tests."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pymongo
from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import OperationFailure, PyMongoError

from shared.children import end_with_parent
from shared.errors import PermanentError, RetryableError

MongoClient = AsyncMongoClient[dict[str, Any]]
T = TypeVar("T")

# Server refusals that a later try can pass (MongoDB's retryable and transient error codes): a lost
# primary, a shutdown, a network fault, a timeout, a write conflict, a lock or cursor lost meanwhile.
TRANSIENT_CODES = frozenset(
    {6, 7, 24, 43, 50, 89, 91, 112, 189, 251, 262, 9001, 10107, 11600, 11602, 13435, 13436}
)
TRANSIENT_LABELS = ("RetryableWriteError", "TransientTransactionError", "UnknownTransactionCommitResult")


def database_error(what: str, exc: PyMongoError) -> RetryableError | PermanentError:
    """A driver error as Connect's own, the one translation of every service.

    A refusal the server would repeat (an `OperationFailure` that is neither labelled transient nor of a
    transient code: a document too large, an invalid update) is permanent; everything else (no server,
    a lost connection, a timeout, a conflict) is retryable: the same work may succeed later."""
    refused = isinstance(exc, OperationFailure) and exc.code not in TRANSIENT_CODES
    if refused and not any(exc.has_error_label(label) for label in TRANSIENT_LABELS):
        return PermanentError(f"database refused {what}: {exc}")
    return RetryableError(f"database error while {what}: {exc}")


@contextlib.contextmanager
def database_errors(what: str, *, passing: tuple[type[PyMongoError], ...] = ()) -> Iterator[None]:
    """Translate the driver errors of the block (`database_error`); `passing` are left to the caller, who
    handles them as an answer (a duplicate key that means "taken")."""
    try:
        yield
    except passing:
        raise
    except PyMongoError as exc:
        raise database_error(what, exc) from exc


async def in_transaction(
    client: MongoClient, work: Callable[[AsyncClientSession], Awaitable[T]], *, timeout: float | None = None
) -> T:
    """`work` in one transaction, run again by the driver on transient conflicts (for at most `timeout`
    seconds, else its default of 120 s). Driver errors come out as they are: wrap the call in
    `database_errors` where the caller has no answer of its own for one."""
    with pymongo.timeout(timeout) if timeout is not None else contextlib.nullcontext():
        async with client.start_session() as session:
            return await session.with_transaction(work)


INDEX_OPTIONS_CONFLICT = (85, 86)  # IndexOptionsConflict, IndexKeySpecsConflict


async def ensure_ttl_index(collection: Any, key: str, seconds: int) -> None:
    """Documents expire `seconds` after their `key` date; a changed retention adjusts the index in place."""
    try:
        await collection.create_index([(key, pymongo.ASCENDING)], expireAfterSeconds=seconds)
    except OperationFailure as exc:
        if exc.code not in INDEX_OPTIONS_CONFLICT:
            raise
        await collection.database.command(
            "collMod", collection.name, index={"keyPattern": {key: 1}, "expireAfterSeconds": seconds}
        )


def create_client(url: str) -> MongoClient:
    return AsyncMongoClient(url, tz_aware=True, serverSelectionTimeoutMS=5000)


async def ping(client: MongoClient) -> bool:
    try:
        await client.admin.command("ping")
    except PyMongoError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# An open transaction whose client died (SIGKILL) holds its documents until the server reaps it:
# connection close does not abort it. mongod's `transactionLifetimeLimitSeconds` (60 s) would stall
# every writer of those documents for a minute; our transactions are short and never idle, so the
# embedded server reaps after 5 s idle (docs/guarantees.md, "Scheduler replica killed at a slot").
EMBEDDED_TRANSACTION_LIFETIME_SECONDS = 5.0

# EMBEDDED_RETRYABLE_WRITES_NOTE: the embedded server keeps a record of every retryable write and scans
# all of them (up to 10,000) on each write, so its cost per write grew with recent writes (17-21 % of its
# CPU under load). The records live in its memory only, so they protect just a dropped loopback
# connection to a live server - a server that dies forgets them. Connect's writes are idempotent on
# their own (keyed ids, guarded updates, upserts) and retried by its own loops, so the embedded URL
# turns the driver's retryable writes off (docs/guarantees.md, "Retryable writes on the embedded server").
# The server runs from `shared/embedded_server.py`, which binds the transaction lifetime in and closes two
# gaps of its query planner that scanned whole collections (docs/guarantees.md, "Embedded server: candidates
# by _id").


class EmbeddedMongo:
    """The embedded MongoDB-compatible server (SecantusDB) as a separate process on a loopback port.

    Used whenever `MONGO_URL` is unset: a real server over the wire protocol, never an in-process fake.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        log_file: Path | None = None,
        transaction_lifetime: float = EMBEDDED_TRANSACTION_LIFETIME_SECONDS,
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.log_file = log_file or data_dir.parent / f"{data_dir.name}.log"
        self.transaction_lifetime = transaction_lifetime
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        # retryWrites=false: see EMBEDDED_RETRYABLE_WRITES_NOTE.
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true&retryWrites=false"

    def start(self, timeout: float = 30.0) -> str:
        if importlib.util.find_spec("secantus") is None:
            raise RetryableError(
                "the embedded database is not installed: pip install 'audience-connect[embedded]'"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "shared.embedded_server", str(self.transaction_lifetime),
                 "--host", "127.0.0.1", "--port", str(self.port),
                 "--storage-path", str(self.data_dir), "--log-level", "WARNING"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=end_with_parent,
            )  # fmt: skip
        self._wait_until_listening(timeout)
        return self.url

    def _wait_until_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RetryableError(f"embedded database exited at start-up; see {self.log_file}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RetryableError(f"embedded database did not listen on port {self.port} within {timeout}s")

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


async def wait_for(client: MongoClient, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await ping(client):
        if time.monotonic() > deadline:
            raise RetryableError("database not reachable")
        await asyncio.sleep(0.2)
