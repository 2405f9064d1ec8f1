"""Catalog use cases: tokens, connections and tables (runs: `services.catalog.runs`)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from services.catalog import audit, domain
from services.catalog.domain import Role, StoredToken
from services.catalog.errors import RateLimited
from services.catalog.ports import AudienceSchema, CatalogRecords, CatalogRepository, SftpProbe, UnitOfWork
from services.catalog.schemas import (
    ConnectionCreate,
    ConnectionTest,
    ConnectionView,
    HostKeyRequest,
    HostKeyView,
    SftpConnectionCreate,
    TableCreate,
    TableView,
)
from shared.catalog_records import ConnectionKind, ConnectionRecord, TableRecord
from shared.errors import NotFound, Unauthorized, ValidationFailed
from shared.secrets import Binding, SecretBox

logger = logging.getLogger(__name__)
SOURCE = "connect/catalog"


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    expires_at: datetime | None = field(default=None, compare=False)  # of its token: a cached one expires too


def _now() -> datetime:
    return datetime.now(UTC)


async def issue_token(
    repo: CatalogRepository, name: str, role: Role, *, expires_at: datetime | None = None
) -> str:
    """A new API token; only its hash is stored, so it is shown once."""
    return (await create_token(repo, name, role, expires_at=expires_at))[0]


async def create_token(
    repo: CatalogRepository,
    name: str,
    role: Role,
    *,
    expires_at: datetime | None = None,
    by: str = "connect admin",
) -> tuple[str, StoredToken]:
    """A new API token and its record (`tok_…` id), audited in the same transaction; the token itself
    is returned here only (the audit entry names the token, never holds it)."""
    token = f"cnt_{secrets.token_urlsafe(32)}"
    stored = StoredToken(
        domain.hash_token(token),
        name,
        role,
        _now(),
        token_id=f"tok_{secrets.token_hex(8)}",
        expires_at=expires_at,
    )
    facts = {"token_id": stored.token_id, "role": role.value, "expires_at": expires_at}
    await audit.with_entry(
        repo, lambda unit: unit.tokens.add(stored), audit.token_entry(by, name, "created", after=facts)
    )
    return token, stored


async def existing_connection(records: CatalogRecords, connection_id: int) -> ConnectionRecord:
    connection = await records.connections.get(connection_id)
    if connection is None:
        raise NotFound(f"connection {connection_id} does not exist", field="connection_id")
    return connection


async def existing_table(records: CatalogRecords, name: str, field: str = "table") -> TableRecord:
    table = await records.tables.get(name)
    if table is None:
        raise NotFound(f"table '{name}' does not exist", field=field)
    return table


class CatalogService:
    """Tokens, connections and tables (jobs: `services.catalog.jobs`; groups: `services.catalog.groups`)."""

    def __init__(
        self,
        repo: CatalogRepository,
        secret_box: SecretBox,
        *,
        audience: AudienceSchema,
        probe: SftpProbe,
        token_cache_seconds: float = 0.0,
        failure_limit: int = 10,
        failure_window: float = 60.0,
    ) -> None:
        self.repo = repo
        self.failures = domain.FailureLimiter(failure_limit, failure_window)
        self.tokens: domain.TokenCache[Principal] = domain.TokenCache(token_cache_seconds)
        self._lookups: dict[str, asyncio.Future[Principal]] = {}
        self.secret_box = secret_box
        self.audience = audience
        self.probe = probe

    # --- tokens ------------------------------------------------------------------------------------
    async def authenticate(self, token: str, client: str | None = None) -> Principal:
        """The token's principal; `client` (an address) is refused for a while after repeated failures."""
        if client is not None and (wait := self.failures.retry_after(client, time.monotonic())) is not None:
            raise RateLimited(wait)
        try:
            return await self._authenticate(token)
        except Unauthorized:
            if client is not None:
                self.failures.record(client, time.monotonic())
            # never the token: a prefix of its hash is enough to tell repeated attempts apart
            logger.warning(
                "authentication failed", extra={"client": client, "token_hash": domain.hash_token(token)[:8]}
            )
            raise

    async def _authenticate(self, token: str) -> Principal:
        token_hash = domain.hash_token(token)
        cached = self.tokens.get(token_hash, time.monotonic())
        if cached is not None and (cached.expires_at is None or _now() < cached.expires_at):
            return cached
        # A burst with one token arrives before the first lookup returns: the requests share that lookup.
        lookup = self._lookups.get(token_hash)
        if lookup is None:
            lookup = asyncio.ensure_future(self._look_up(token_hash))
            self._lookups[token_hash] = lookup
            lookup.add_done_callback(lambda _: self._lookups.pop(token_hash, None))
        return await asyncio.shield(lookup)

    async def _look_up(self, token_hash: str) -> Principal:
        now = time.monotonic()
        stored = await self.repo.tokens.get(token_hash)
        if stored is None:
            raise Unauthorized("invalid or revoked token")
        wall = _now()
        if (refusal := stored.refusal(wall)) is not None:
            raise Unauthorized(f"this token is {refusal}")
        if domain.last_used_is_stale(stored.last_used_at, wall):
            await self.repo.tokens.touch(token_hash, wall)
        principal = Principal(name=stored.name, role=stored.role, expires_at=stored.expires_at)
        self.tokens.put(token_hash, principal, now)
        return principal

    async def create_token(
        self, name: str, role: Role, expires_at: datetime | None, by: str
    ) -> tuple[str, StoredToken]:
        if expires_at is not None and expires_at <= _now():
            raise ValidationFailed("expires_at must be in the future", field="expires_at")
        return await create_token(self.repo, name, role, expires_at=expires_at, by=by)

    async def list_tokens(self, *, offset: int, limit: int) -> tuple[list[StoredToken], int]:
        return await self.repo.tokens.page(offset=offset, limit=limit)

    async def revoke_token(self, token_id: str, by: str) -> None:
        """Revoked at once on this replica; other replicas stop at most `token_cache_seconds` later.
        Audited in the revocation's transaction."""

        async def revoke(unit: UnitOfWork) -> StoredToken:
            stored = await unit.tokens.revoke(token_id, _now())
            if stored is None:
                raise NotFound(f"token {token_id} does not exist or is already revoked", field="token_id")
            await unit.audit.add(
                [audit.token_entry(by, stored.name, "revoked", before={"token_id": token_id})]
            )
            return stored

        stored = await self.repo.atomically(revoke)
        self.tokens.drop(stored.token_hash)

    # --- connections -------------------------------------------------------------------------------
    async def create_connection(self, body: ConnectionCreate, by: Principal) -> ConnectionView:
        if isinstance(body, SftpConnectionCreate):
            key = body.private_key.get_secret_value() if body.private_key else None
            domain.validate_sftp_connection(private_key=key, host_key=body.host_key, base_dir=body.base_dir)
        document: dict[str, Any] = body.model_dump(exclude={"password", "private_key", "token"}, mode="json")
        document.update(_id=await self.repo.connections.new_id(), created_at=_now(), created_by=by.name)
        secrets_to_store = {
            "password_encrypted": getattr(body, "password", None),
            "private_key_encrypted": getattr(body, "private_key", None),
            "token_encrypted": getattr(body, "token", None),
        }
        for key, secret in secrets_to_store.items():
            if secret is not None:
                binding = Binding("connection", document["_id"], key)
                document[key] = self.secret_box.encrypt(secret.get_secret_value(), binding)
        connection = ConnectionRecord.model_validate(document)
        entry = audit.change_entry(by.name, "connection", connection.id, "created", after=connection)
        await audit.with_entry(self.repo, lambda unit: unit.connections.add(connection), entry)
        return connection_view(connection)

    async def get_connection(self, connection_id: int) -> ConnectionView:
        return connection_view(await existing_connection(self.repo, connection_id))

    async def list_connections(self, *, offset: int, limit: int) -> tuple[list[ConnectionView], int]:
        connections, total = await self.repo.connections.page(offset=offset, limit=limit)
        return [connection_view(connection) for connection in connections], total

    async def test_connection(self, connection_id: int) -> ConnectionTest:
        """Connect with the stored credentials and pinned host key; report what happened."""
        record = await existing_connection(self.repo, connection_id)
        if record.kind != ConnectionKind.SFTP:
            raise ValidationFailed("only SFTP connections can be tested", field="connection_id")
        return await self.probe.test(record, self.secret_box)

    async def fetch_host_key(self, body: HostKeyRequest) -> HostKeyView:
        return await self.probe.host_key(body.host, body.port)

    # --- tables ------------------------------------------------------------------------------------
    async def create_table(self, body: TableCreate, by: Principal) -> TableView:
        parent = None
        if body.parent_list:
            parent = await existing_table(self.repo, body.parent_list, field="parent_list")
        fields = domain.table_fields(body.kind, body.fields)
        domain.validate_new_table(body.name, body.kind, tuple(body.primary_key), fields, parent)
        table = TableRecord(
            name=body.name,
            kind=body.kind,
            primary_key=tuple(body.primary_key),
            parent_list=body.parent_list,
            fields=fields,
            created_at=_now(),
            created_by=by.name,
        )
        entry = audit.change_entry(by.name, "table", table.name, "created", after=table)
        await audit.with_entry(self.repo, lambda unit: unit.tables.add(table), entry)
        await self.audience.create(table)
        return TableView.model_validate(table.model_dump())

    async def get_table(self, name: str) -> TableView:
        return TableView.model_validate((await existing_table(self.repo, name)).model_dump())

    async def list_tables(self, *, offset: int, limit: int) -> tuple[list[TableView], int]:
        tables, total = await self.repo.tables.page(offset=offset, limit=limit)
        return [TableView.model_validate(table.model_dump()) for table in tables], total


def connection_view(record: ConnectionRecord) -> ConnectionView:
    auth: Literal["password", "private_key", "token"] = "password"
    if record.kind == ConnectionKind.REST:
        auth = "token"
    elif record.private_key_encrypted:
        auth = "private_key"
    secrets = {"password_encrypted", "private_key_encrypted", "token_encrypted"}
    return ConnectionView(**record.model_dump(exclude=secrets), auth=auth)
