"""Open SSH connections kept between runs, so a run on known connection settings skips key exchange and auth.

A pooled connection is found by a key that digests everything deciding the connection (host, port, user,
decrypted credentials, pinned host key, auth preference): a catalog edit of any of them gives a new key, so
the old session is never reused. The digest is an HMAC under a per-process random salt, so the pool holds
no secret, not even an unsalted hash of one.

Each run gets an SFTP channel of its own; up to `max_channels` runs share one connection (OpenSSH's
MaxSessions default is 10), beyond that another connection is opened. Opening the channel is a full round
trip over the connection, so a connection the server dropped since its last run is found out right there:
it is thrown away and the run gets one new connection instead (what that one raises is the run's error).
An idle connection is closed after `idle_seconds`; 0 keeps nothing (a connection per run).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncssh
from prometheus_client import CollectorRegistry, Counter

MAX_CHANNELS = 10  # OpenSSH's MaxSessions default
REUSE_TIMEOUT = 10.0  # a pooled connection that does not answer a channel open in this time is dead
CLOSE_TIMEOUT = 5.0
OUTCOMES = ("opened", "reused", "stale")

Connect = Callable[[], Awaitable[Any]]  # opens an authenticated asyncssh.SSHClientConnection


@dataclass(eq=False)
class _Pooled:
    key: str
    ssh: Any  # asyncssh.SSHClientConnection
    channels: int = 1  # the run that opened it holds the first
    expiry: asyncio.TimerHandle | None = field(default=None, repr=False)

    def idle_timer(self, handle: asyncio.TimerHandle | None) -> None:
        if self.expiry is not None:
            self.expiry.cancel()
        self.expiry = handle


class SshPool:
    def __init__(
        self,
        idle_seconds: float = 0.0,
        *,
        max_channels: int = MAX_CHANNELS,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.idle_seconds = idle_seconds
        self.max_channels = max_channels
        self.opened = self.reused = self.stale = 0  # also exported as connect_sftp_connections_total
        self._salt = secrets.token_bytes(32)
        self._pooled: dict[str, list[_Pooled]] = {}
        self._closing: set[asyncio.Future[Any]] = set()
        self._closed = False
        self._counter: Counter | None = None
        if registry is not None:
            self._counter = Counter(
                "connect_sftp_connections_total",
                "SSH connections the executor's runs used: opened, reused from the pool, or stale "
                "(a pooled connection the server had dropped, replaced by a new one)",
                ["outcome"],
                registry=registry,
            )
            for outcome in OUTCOMES:
                self._counter.labels(outcome)

    @property
    def reuses(self) -> bool:
        return self.idle_seconds > 0 and not self._closed

    def key(self, *settings: str | int | None) -> str:
        """A digest of the settings that decide a connection; secrets among them are not kept."""
        return hmac.new(self._salt, json.dumps(settings).encode(), hashlib.sha256).hexdigest()

    def connections(self, key: str | None = None) -> list[Any]:
        """The pooled connections (of one key), in use or idle."""
        return [p.ssh for k, entries in self._pooled.items() if key in (None, k) for p in entries]

    @contextlib.asynccontextmanager
    async def sftp_client(self, key: str, connect: Connect) -> AsyncIterator[Any]:
        """An SFTP client on its own channel of a pooled (or new) connection, closed when the block ends."""
        pooled, sftp = await self._channel(key, connect)
        try:
            yield sftp
        finally:
            await self._release(pooled, sftp)

    async def close(self) -> None:
        """Close every connection (shutdown); later runs get a connection of their own each."""
        self._closed = True
        for entries in self._pooled.values():
            for pooled in entries:
                pooled.idle_timer(None)
                self._close(pooled)
        self._pooled.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    # --- taking and giving back ---------------------------------------------------------------------

    async def _channel(self, key: str, connect: Connect) -> tuple[_Pooled, Any]:
        pooled = self._take(key)
        if pooled is not None:
            try:
                async with asyncio.timeout(REUSE_TIMEOUT):
                    return pooled, await pooled.ssh.start_sftp_client()
            except (asyncssh.Error, OSError, TimeoutError):
                self._stale(pooled)  # dropped (sshd restarted, idle-killed) or refusing: one new connection
            except BaseException:  # cancelled: the channel is not ours
                await self._give_back(pooled)
                raise
        ssh = await connect()
        self._count("opened")
        pooled = _Pooled(key, ssh)
        try:
            sftp = await ssh.start_sftp_client()
        except BaseException:
            await self._give_back(pooled)  # not pooled yet: closed
            raise
        if self.reuses:  # pooled once it has proved itself, so no other run shares a failing one
            self._pooled.setdefault(key, []).append(pooled)
        return pooled, sftp

    def _take(self, key: str) -> _Pooled | None:
        entries = self._pooled.get(key, [])
        for pooled in list(entries):
            if pooled.ssh.is_closed():  # the server closed it while it was idle
                self._drop(pooled)
                self._count("stale")
            elif pooled.channels < self.max_channels:
                pooled.channels += 1
                pooled.idle_timer(None)
                self._count("reused")
                return pooled
        return None

    def _stale(self, pooled: _Pooled) -> None:
        """Out of the pool: no new run gets it; runs still on it end as they will, and the last closes it.

        (It may be alive but refusing one more channel: a server MaxSessions below ours.)"""
        self._count("stale")
        self._drop(pooled)
        pooled.channels -= 1
        if pooled.channels == 0:
            self._close(pooled)

    async def _release(self, pooled: _Pooled, sftp: Any) -> None:
        try:
            with contextlib.suppress(Exception):
                sftp.exit()
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await sftp.wait_closed()  # the server has freed the session before it is counted free
        finally:
            await self._give_back(pooled)

    async def _give_back(self, pooled: _Pooled) -> None:
        pooled.channels -= 1
        if pooled.channels > 0:
            return
        if self.reuses and not pooled.ssh.is_closed() and pooled in self._pooled.get(pooled.key, []):
            loop = asyncio.get_running_loop()
            pooled.idle_timer(loop.call_later(self.idle_seconds, self._expire, pooled))
            return
        self._drop(pooled)
        pooled.ssh.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await pooled.ssh.wait_closed()

    def _expire(self, pooled: _Pooled) -> None:
        pooled.expiry = None
        if pooled.channels == 0:
            self._drop(pooled)
            self._close(pooled)

    def _drop(self, pooled: _Pooled) -> None:
        pooled.idle_timer(None)
        entries = self._pooled.get(pooled.key, [])
        if pooled in entries:
            entries.remove(pooled)
        if not entries:
            self._pooled.pop(pooled.key, None)

    def _close(self, pooled: _Pooled) -> None:
        pooled.ssh.close()
        waiting = asyncio.ensure_future(pooled.ssh.wait_closed())
        self._closing.add(waiting)
        waiting.add_done_callback(self._closing.discard)

    def _count(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)
        if self._counter is not None:
            self._counter.labels(outcome).inc()
