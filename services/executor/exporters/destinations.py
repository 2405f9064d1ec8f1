"""Export destinations: a file on SFTP (temporary name, then renamed; optional gzip and `.ready`),
or a REST push in the Responsys merge-list-members style (batches ≤ 200, retried on 429/5xx)."""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from services.executor.domain.export import CsvEncoder
from services.executor.errors import DestinationFailed
from services.executor.pgp_files import EncryptKeys
from services.executor.sftp import SftpSession
from shared.catalog_records import ConnectionRecord
from shared.contracts.jobs import RestDestination
from shared.pgp import encrypt_stream
from shared.redact import Redactor, remember
from shared.secrets import SecretBox, open_field

logger = logging.getLogger(__name__)
Rows = AsyncIterator[list[dict[str, Any]]]


async def write_csv_file(
    sftp: SftpSession,
    path: str,
    encoder: CsvEncoder,
    rows: Rows,
    *,
    header: bool,
    gzip: bool,
    encrypt: EncryptKeys | None = None,
) -> tuple[str, int]:
    """Stream the CSV to `path` (via a temporary name); returns the full path and the row count.

    With `encrypt` the bytes (gzipped first, when asked) pass through gpg on their way: a failed
    encryption fails the upload, so nothing reaches the final name."""
    count = 0

    async def plain() -> AsyncIterator[bytes]:
        nonlocal count
        packer = zlib.compressobj(6, zlib.DEFLATED, 31) if gzip else None

        def pack(data: bytes) -> bytes:
            return packer.compress(data) if packer else data

        if header and (out := await asyncio.to_thread(pack, encoder.header())):
            yield out
        async for batch in rows:
            count += len(batch)
            # Encoding and compressing a batch is CPU work: off the event loop.
            if out := await asyncio.to_thread(pack, await asyncio.to_thread(encoder.rows, batch)):
                yield out
        if packer:
            yield packer.flush()

    async def produce(write: Callable[[bytes], Awaitable[None]]) -> None:
        chunks = plain()
        if encrypt is not None:
            chunks = encrypt_stream(chunks, encrypt.recipients, encrypt.sign_with, encrypt.sign_passphrase,
                                    armor=encrypt.armor)  # fmt: skip
        async for chunk in chunks:
            await write(chunk)

    full = await sftp.write_stream(path, produce)
    return full, count


@dataclass
class PushResult:
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    failed_batches: list[str] = field(default_factory=list)
    first_refusal: str | None = None  # why the destination refused its first record (scrubbed)

    def refused(self, count: int, reason: str) -> None:
        self.rejected += count
        if count and self.first_refusal is None:
            self.first_refusal = reason


class RestPusher:
    """POST `{base_url}/rest/api/v1.3/lists/{list}/members` with `recordData` and a `mergeRule`."""

    def __init__(
        self,
        connection: ConnectionRecord,
        destination: RestDestination,
        secrets: SecretBox,
        *,
        max_attempts: int = 5,
        backoff: float = 0.5,
        timeout: float = 30.0,
        log: Callable[[str], Awaitable[None]],
        stop_requested: Callable[[], bool],
    ) -> None:
        if not connection.base_url:
            raise DestinationFailed(f"connection {connection.name} has no base URL")
        self.url = f"{connection.base_url.rstrip('/')}/rest/api/v1.3/lists/{destination.list_name}/members"
        self.token = open_field(secrets, "connection", connection, "token_encrypted") or ""
        # What the endpoint answers may echo the token: scrubbed before it is logged or kept.
        self.redactor = Redactor([self.token])
        remember(self.redactor)
        self.destination = destination
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.timeout = timeout
        self.log = log
        self.stop_requested = stop_requested

    def body(self, columns: Sequence[str], records: list[list[Any]]) -> dict[str, Any]:
        return {
            "recordData": {"fieldNames": list(columns), "records": records, "mapTemplateName": None},
            "mergeRule": {
                "insertOnNoMatch": True,
                "updateOnMatch": "REPLACE_ALL",
                "matchColumnName1": self.destination.match_column,
                "matchColumnName2": None,
                "matchOperator": "NONE",
                "defaultPermissionStatus": "OPTIN",
                "htmlValue": "H",
                "textValue": "T",
                "optinValue": "I",
                "optoutValue": "O",
                "rejectRecordIfChannelEmpty": None,
            },
        }

    async def push(self, columns: Sequence[str], rows: Rows, cell: Callable[[Any], str]) -> PushResult:
        result = PushResult()
        headers = {"Authorization": self.token, "Content-Type": "application/json"}
        number = 0
        async with httpx.AsyncClient(timeout=self.timeout, headers=headers) as client:
            pending: list[list[str]] = []
            async for batch in rows:
                for row in batch:
                    pending.append([cell(row.get(c)) for c in columns])
                    if len(pending) == self.destination.batch_size:
                        number += 1
                        await self._send(client, number, columns, pending, result)
                        pending = []
            if pending:
                number += 1
                await self._send(client, number, columns, pending, result)
        return result

    async def _send(
        self,
        client: httpx.AsyncClient,
        number: int,
        columns: Sequence[str],
        records: list[list[str]],
        result: PushResult,
    ) -> None:
        result.sent += len(records)
        body = self.body(columns, records)
        reason = ""
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = await client.post(self.url, json=body)
            except httpx.HTTPError as exc:
                reason = self.redactor.scrub(f"{type(exc).__name__}: {exc}")
            else:
                if response.status_code < 300:
                    rejected, first = _record_failures(response)
                    result.accepted += len(records) - rejected
                    result.refused(rejected, self.redactor.scrub(first)[:200])
                    return
                # Scrubbed before it is cut short, so no part of a secret survives the cut.
                reason = f"HTTP {response.status_code}: {self.redactor.scrub(response.text)[:200]}"
                if response.status_code != 429 and response.status_code < 500:
                    break  # the endpoint refuses this batch: retrying cannot help
                if attempt < self.max_attempts:
                    delay = _retry_after(response) or self.backoff * 2 ** (attempt - 1)
                    await self.log(f"batch {number}: {reason}; retry {attempt} in {delay:.1f}s")
                    await asyncio.sleep(delay)
                    continue
            if attempt < self.max_attempts and not reason.startswith("HTTP"):
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
        failure = f"batch {number} ({len(records)} records) failed: {reason}"
        result.refused(len(records), failure)
        result.failed_batches.append(failure)
        await self.log(failure)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return min(float(value), 30.0) if value else None
    except ValueError:
        return None


def _record_failures(response: httpx.Response) -> tuple[int, str]:
    """Responsys answers each record with its RIID or `MERGEFAILED: reason`: (failures, first reason)."""
    try:
        payload = response.json()
    except ValueError:
        return 0, ""
    records = (payload.get("recordData") or {}).get("records") if isinstance(payload, dict) else None
    if not isinstance(records, list):
        return 0, ""
    failed = [r[0] for r in records if r and isinstance(r[0], str) and r[0].startswith("MERGEFAILED")]
    return len(failed), failed[0] if failed else ""
