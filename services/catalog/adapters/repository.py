"""MongoDB adapter of the catalog's own records (`ports.CatalogRepository`; the stores: `records`) and its
outbox (the runs read model: `runs_read_model`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import TypeVar

from pymongo.asynchronous.client_session import AsyncClientSession as Session
from pymongo.errors import DuplicateKeyError

from services.catalog.adapters.audit_log import MongoAuditStore
from services.catalog.adapters.records import (
    Database,
    MongoConnectionStore,
    MongoGroupStore,
    MongoJobStore,
    MongoNotificationChannelStore,
    MongoPgpKeyStore,
    MongoTableStore,
    MongoTokenStore,
)
from services.catalog.ports import CommandBus, UnitOfWork
from shared.collections import CatalogCollections
from shared.contracts import Envelope
from shared.errors import Conflict
from shared.mongo import MongoClient, database_errors, in_transaction
from shared.outbox import RETENTION, Entry, Outbox

T = TypeVar("T")


class MongoCatalogRecords:
    """A store per kind of record, each in `session` (a transaction's) or on its own (`None`)."""

    def __init__(self, db: Database, session: Session | None = None) -> None:
        self.jobs = MongoJobStore(db, session)
        self.groups = MongoGroupStore(db, session)
        self.connections = MongoConnectionStore(db, session)
        self.tables = MongoTableStore(db, session)
        self.tokens = MongoTokenStore(db, session)
        self.channels = MongoNotificationChannelStore(db, session)
        self.keys = MongoPgpKeyStore(db, session)
        self.audit = MongoAuditStore(db, session)


class MongoUnitOfWork(MongoCatalogRecords):
    """The stores within one transaction; the events announced go to the outbox in it."""

    def __init__(self, db: Database, session: Session, outbox: Outbox) -> None:
        super().__init__(db, session)
        self.session = session
        self.outbox = outbox

    async def announce(self, event: Envelope) -> None:
        # One entry per event, stored under the event's id (as the catalog always did).
        await self.outbox.add(self.session, [event], entry_id=event.id)


class MongoCatalogRepository(MongoCatalogRecords):
    """The catalog's own collections. Multi-document changes run in transactions with the outbox."""

    def __init__(self, client: MongoClient, db_name: str, *, outbox_retention: timedelta = RETENTION) -> None:
        self.client = client
        self.db = client[db_name]
        super().__init__(self.db)
        self.outbox = Outbox(self.db[CatalogCollections.OUTBOX], retention=outbox_retention)

    async def ensure_indexes(self) -> None:
        for collection in (
            CatalogCollections.CONNECTIONS,
            CatalogCollections.TABLES,
            CatalogCollections.JOBS,
            CatalogCollections.GROUPS,
            CatalogCollections.NOTIFICATION_CHANNELS,
            CatalogCollections.PGP_KEYS,
        ):
            await self.db[collection].create_index("name", unique=True)
        await self.db[CatalogCollections.JOBS].create_index("group_id")
        await self.db[CatalogCollections.GROUPS].create_index("job_ids")
        await self.db[CatalogCollections.TOKENS].create_index("token_id")
        await self.audit.ensure_indexes()
        await self.outbox.ensure_indexes()

    async def atomically(self, work: Callable[[UnitOfWork], Awaitable[T]]) -> T:
        """Run `work` in one transaction (retried by the driver on transient conflicts)."""

        async def in_session(session: Session) -> T:
            return await work(MongoUnitOfWork(self.db, session, self.outbox))

        with database_errors("a catalog change"):
            try:
                return await in_transaction(self.client, in_session)
            except DuplicateKeyError as exc:
                raise Conflict(f"the name {_duplicate_name(exc)} is already taken", field="name") from exc

    async def deliver(self, bus: CommandBus, events: Sequence[Envelope]) -> None:
        await self.outbox.deliver(bus, [Entry.of(event) for event in events])


def _duplicate_name(exc: DuplicateKeyError) -> str:
    key = (exc.details or {}).get("keyValue") or {}
    return f"'{key['name']}'" if "name" in key else "given"
