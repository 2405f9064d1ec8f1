"""What the catalog's use cases need from the outside world, in the catalog's own words (`adapters/`).

The catalog's records are kept by `CatalogRepository`, a store per kind of record (`jobs`, `groups`,
`connections`, `tables`, `tokens`), each read and write on its own. A change of several records runs in
`CatalogRepository.atomically`: its `UnitOfWork` has the same stores, within one transaction, and keeps
the events announcing the change with it (the outbox); `deliver` publishes them once committed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from services.catalog.domain import JobQuery, StoredGroup, StoredJob, StoredToken
from services.catalog.domain.audit import AuditEntry, AuditQuery
from services.catalog.domain.idempotency import Answer, Attempt
from services.catalog.schemas import ConnectionTest, HostKeyView
from shared.catalog_records import ConnectionRecord, NotificationChannelRecord, PgpKeyRecord, TableRecord
from shared.contracts import Envelope
from shared.pgp import InspectedKey
from shared.schedule_state import ScheduleState
from shared.secrets import SecretBox

T = TypeVar("T")
Item = TypeVar("Item", covariant=True)


class Definitions(Protocol[Item]):
    """User definitions (jobs, groups) by id."""

    async def get(self, item_id: int) -> Item | None: ...


class JobStore(Definitions[StoredJob], Protocol):
    async def new_id(self) -> int: ...

    async def get_many(self, job_ids: Sequence[int]) -> list[StoredJob]:
        """Those of the jobs that exist, in no particular order."""
        ...

    async def names(self, ids: Iterable[int]) -> dict[int, str]:
        """The name of each of the jobs that exists."""
        ...

    async def page(self, query: JobQuery, *, offset: int, limit: int) -> tuple[list[StoredJob], int]:
        """A page of the jobs `query` selects, in its order, and how many it selects in all."""
        ...

    async def add(self, record: StoredJob) -> None:
        """Raises `Conflict` when its name is taken."""
        ...

    async def replace(self, record: StoredJob, version: int) -> bool:
        """Store `record` over the one with its id, if that one is still at `version`; whether it was."""
        ...

    async def remove(self, job_ids: Sequence[int]) -> None: ...

    async def naming_key(self, key_id: int) -> dict[int, str]:
        """The jobs whose `pgp` settings name the key, by id: their names."""
        ...

    async def join_group(self, job_ids: Sequence[int], group_id: int) -> None: ...

    async def leave_group(self, group_id: int) -> None:
        """Every job of the group leaves it."""
        ...


class GroupStore(Definitions[StoredGroup], Protocol):
    async def new_id(self) -> int: ...

    async def names(self, ids: Iterable[int]) -> dict[int, str]:
        """The name of each of the groups that exists."""
        ...

    async def containing(self, job_ids: Sequence[int]) -> list[StoredGroup]:
        """The groups with any of the jobs among their members."""
        ...

    async def page(self, *, sort: str, offset: int, limit: int) -> tuple[list[StoredGroup], int]:
        """A page of all groups ordered by `sort` (a field of `StoredGroup`, "-" first for descending)."""
        ...

    async def add(self, record: StoredGroup) -> None:
        """Raises `Conflict` when its name is taken."""
        ...

    async def replace(self, record: StoredGroup, version: int) -> bool:
        """Store `record` over the one with its id, if that one is still at `version`; whether it was."""
        ...

    async def remove(self, group_id: int) -> None: ...


class ConnectionStore(Protocol):
    async def new_id(self) -> int: ...

    async def get(self, connection_id: int) -> ConnectionRecord | None: ...

    async def page(self, *, offset: int, limit: int) -> tuple[list[ConnectionRecord], int]:
        """A page of all connections by id, and how many there are."""
        ...

    async def add(self, record: ConnectionRecord) -> None:
        """Raises `Conflict` when its name is taken."""
        ...


class NotificationChannelStore(Protocol):
    async def new_id(self) -> int: ...

    async def get(self, channel_id: int) -> NotificationChannelRecord | None: ...

    async def existing(self, channel_ids: Iterable[int]) -> set[int]:
        """Those of `channel_ids` that name a channel."""
        ...

    async def page(self, *, offset: int, limit: int) -> tuple[list[NotificationChannelRecord], int]: ...

    async def add(self, record: NotificationChannelRecord) -> None:
        """Raises `Conflict` when its name is taken."""
        ...

    async def remove(self, channel_id: int) -> bool:
        """Whether there was one to remove."""
        ...


class PgpKeyStore(Protocol):
    async def new_id(self) -> int: ...

    async def get(self, key_id: int) -> PgpKeyRecord | None: ...

    async def get_many(self, key_ids: Iterable[int]) -> dict[int, PgpKeyRecord]:
        """Those of the keys that exist, by id."""
        ...

    async def page(self, *, offset: int, limit: int) -> tuple[list[PgpKeyRecord], int]: ...

    async def add(self, record: PgpKeyRecord) -> None:
        """Raises `Conflict` when its name is taken."""
        ...

    async def remove(self, key_id: int) -> bool:
        """Whether there was one to remove."""
        ...


class TableStore(Protocol):
    async def get(self, name: str) -> TableRecord | None: ...

    async def extensions_of(self, list_name: str) -> list[TableRecord]:
        """The profile extension tables of a list."""
        ...

    async def page(self, *, offset: int, limit: int) -> tuple[list[TableRecord], int]:
        """A page of all tables by name, and how many there are."""
        ...

    async def add(self, record: TableRecord) -> None:
        """Raises `Conflict` when its name is taken."""
        ...


class TokenStore(Protocol):
    async def get(self, token_hash: str) -> StoredToken | None: ...

    async def add(self, token: StoredToken) -> None: ...

    async def page(self, *, offset: int, limit: int) -> tuple[list[StoredToken], int]:
        """A page of all tokens, oldest first, revoked ones included, and how many there are."""
        ...

    async def revoke(self, token_id: str, when: datetime) -> StoredToken | None:
        """Marks the token revoked (kept, for the list); None when no unrevoked token has that id (a second
        revocation is a 404, as a second DELETE of anything is)."""
        ...

    async def touch(self, token_hash: str, when: datetime) -> None:
        """Records the token's last use."""
        ...


class AuditStore(Protocol):
    async def add(self, entries: Sequence[AuditEntry]) -> None:
        """Store entries; within a unit of work, committed with the change they describe."""
        ...

    async def page(self, query: AuditQuery, *, offset: int, limit: int) -> tuple[list[AuditEntry], int]:
        """A page of the entries `query` selects, newest first, and how many it selects in all."""
        ...


class CatalogRecords(Protocol):
    """The catalog's records, a store per kind."""

    @property
    def jobs(self) -> JobStore: ...

    @property
    def groups(self) -> GroupStore: ...

    @property
    def connections(self) -> ConnectionStore: ...

    @property
    def tables(self) -> TableStore: ...

    @property
    def tokens(self) -> TokenStore: ...

    @property
    def channels(self) -> NotificationChannelStore: ...

    @property
    def keys(self) -> PgpKeyStore: ...

    @property
    def audit(self) -> AuditStore: ...


class UnitOfWork(CatalogRecords, Protocol):
    """The records within one transaction: what its stores change is committed together, or not at all."""

    async def announce(self, event: Envelope) -> None:
        """Keep `event` for publishing, committed with the change it announces (the outbox)."""
        ...


class CatalogRepository(CatalogRecords, Protocol):
    async def atomically(self, work: Callable[[UnitOfWork], Awaitable[T]]) -> T:
        """Run `work` in one transaction, again when the database asks for it (a transient conflict);
        raises `Conflict` when the change would take a name already taken."""
        ...

    async def deliver(self, bus: CommandBus, events: Sequence[Envelope]) -> None:
        """Publish events just committed by `atomically`; those that fail are published later."""
        ...


class ReadModels(Protocol):
    async def schedule_states(self, kind: str, owner_ids: Iterable[int]) -> dict[int, ScheduleState]: ...

    async def run_in_flight(self, job_id: int) -> str | None: ...

    async def jobs_in_flight(self, job_ids: Iterable[int]) -> list[int]: ...

    async def group_run_in_flight(self, group_id: int) -> str | None: ...


class CommandBus(Protocol):
    async def publish(self, message: Envelope) -> None: ...

    async def request(self, message: Envelope, *, timeout: float) -> Any: ...


class AudienceSchema(Protocol):
    async def create(self, table: TableRecord) -> None:
        """Create a new table's collection and its unique indexes in the audience database."""
        ...


class KeyReader(Protocol):
    async def inspect(self, material: bytes, passphrase: str | None, field: str) -> InspectedKey:
        """One OpenPGP key's facts, its passphrase proven; raises `shared.pgp.PgpError` (naming `field`,
        where the key was given, or `passphrase`) for what is not one usable key."""
        ...


class SftpProbe(Protocol):
    async def host_key(self, host: str, port: int) -> HostKeyView: ...

    async def test(self, connection: ConnectionRecord, secret_box: SecretBox) -> ConnectionTest: ...


class IdempotencyRecords(Protocol):
    """The attempts made under an `Idempotency-Key`, by caller and key, and their first answers (kept 24 h,
    stored encrypted: an answer may hold a secret shown once, such as a new token)."""

    async def claim(self, attempt: Attempt) -> Attempt | None:
        """Store `attempt` (no answer yet) unless one is stored under its caller and key: then that one."""
        ...

    async def reclaim(self, expired: Attempt, attempt: Attempt) -> bool:
        """Store `attempt` in place of `expired`, if that one is still stored as read; whether it was."""
        ...

    async def complete(self, attempt: Attempt, answer: Answer) -> None:
        """Keep `answer` as the attempt's, to be given again."""
        ...

    async def release(self, attempt: Attempt) -> None:
        """Forget an attempt still without an answer, so that a retry with its key runs."""
        ...

    async def find(self, caller: str, key: str) -> Attempt | None: ...
