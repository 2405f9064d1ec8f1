"""The SSH connection pool's bookkeeping (services/executor/ssh_pool.py), over stand-in connections.

Real sshd behaviour (reuse, a killed connection, a catalog edit) is in
tests/integration/test_executor_ssh_reuse.py; here: sharing bounds, the idle timer, shutdown, cancellation.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import asyncssh
import pytest
from prometheus_client import CollectorRegistry

from services.executor import main, sftp
from services.executor.config import ExecutorSettings
from services.executor.ssh_pool import SshPool


class FakeSftp:
    def __init__(self) -> None:
        self.exited = False

    def exit(self) -> None:
        self.exited = True

    async def wait_closed(self) -> None:
        return None


class FakeSsh:
    def __init__(self, fail_channel: BaseException | None = None) -> None:
        self.closed = asyncio.Event()
        self.fail_channel = fail_channel
        self.channels: list[FakeSftp] = []
        self.hold_channel: asyncio.Event | None = None  # set: channel opens wait for it

    def is_closed(self) -> bool:
        return self.closed.is_set()

    def close(self) -> None:
        self.closed.set()

    async def wait_closed(self) -> None:
        await self.closed.wait()

    async def start_sftp_client(self) -> FakeSftp:
        if self.hold_channel is not None:
            await self.hold_channel.wait()
        if self.fail_channel is not None:
            raise self.fail_channel
        sftp = FakeSftp()
        self.channels.append(sftp)
        return sftp


class Connector:
    def __init__(self) -> None:
        self.opened: list[FakeSsh] = []
        self.next_fail: BaseException | None = None

    async def __call__(self) -> FakeSsh:
        ssh = FakeSsh(self.next_fail)
        self.next_fail = None
        self.opened.append(ssh)
        return ssh


async def use(pool: SshPool, key: str, connect: Connector) -> Any:
    async with pool.sftp_client(key, connect) as sftp:
        return sftp


async def test_runs_in_a_row_share_one_connection_each_with_its_own_channel() -> None:
    pool, connect = SshPool(30), Connector()
    first, second = await use(pool, "k", connect), await use(pool, "k", connect)
    assert len(connect.opened) == 1 and first is not second
    assert first.exited and second.exited  # each run's channel closed at its end
    assert (pool.opened, pool.reused) == (1, 1)
    assert not connect.opened[0].is_closed()
    await pool.close()
    assert connect.opened[0].is_closed()


async def test_another_key_never_gets_the_connection_of_a_key() -> None:
    pool, connect = SshPool(30), Connector()
    await use(pool, pool.key("h", 22, "ann", "old password", None, "hk", "password"), connect)
    await use(pool, pool.key("h", 22, "ann", "new password", None, "hk", "password"), connect)
    assert len(connect.opened) == 2 and pool.reused == 0
    await pool.close()


def test_the_key_changes_with_every_setting_and_holds_no_secret() -> None:
    pool = SshPool(30)
    base: tuple[str | int, ...] = (
        "host",
        22,
        "ann",
        "s3cret-password",
        "-----BEGIN KEY-----",
        "ssh-ed25519 AAAA",
        "publickey",
    )
    keys = {pool.key(*base)}
    for index in range(len(base)):
        changed: list[str | int] = list(base)
        changed[index] = f"{changed[index]}x" if isinstance(changed[index], str) else 2222
        keys.add(pool.key(*changed))
    assert len(keys) == len(base) + 1
    assert pool.key(*base) == pool.key(*base)
    assert all("s3cret" not in key for key in keys)
    assert SshPool(30).key(*base) != pool.key(*base)  # salted per process: no guessable plain hash


async def test_concurrent_runs_share_a_connection_up_to_the_channel_bound() -> None:
    pool, connect = SshPool(30, max_channels=2), Connector()
    async with pool.sftp_client("k", connect), pool.sftp_client("k", connect):
        assert len(connect.opened) == 1
        async with pool.sftp_client("k", connect):
            assert len(connect.opened) == 2  # the third run would exceed the bound: a second connection
    assert len(pool.connections("k")) == 2
    await pool.close()


async def test_a_connection_closed_while_idle_is_replaced() -> None:
    pool, connect = SshPool(30), Connector()
    await use(pool, "k", connect)
    connect.opened[0].close()  # the server dropped it
    await use(pool, "k", connect)
    assert (pool.opened, pool.reused, pool.stale) == (2, 0, 1)
    assert pool.connections("k") == [connect.opened[1]]
    await pool.close()


async def test_a_reused_connection_that_loses_the_channel_open_is_replaced_once() -> None:
    pool, connect = SshPool(30), Connector()
    await use(pool, "k", connect)
    connect.opened[0].fail_channel = asyncssh.ConnectionLost("reset by peer")
    await use(pool, "k", connect)
    assert (pool.opened, pool.reused, pool.stale) == (2, 1, 1)
    assert connect.opened[0].is_closed() and pool.connections("k") == [connect.opened[1]]
    await pool.close()


async def test_a_new_connection_failing_is_the_runs_error_and_is_not_pooled() -> None:
    pool, connect = SshPool(30), Connector()
    await use(pool, "k", connect)
    connect.opened[0].fail_channel = asyncssh.ConnectionLost("reset by peer")
    connect.next_fail = asyncssh.ChannelOpenError(1, "administratively prohibited")
    with pytest.raises(asyncssh.ChannelOpenError):
        await use(pool, "k", connect)
    assert len(connect.opened) == 2  # one reconnect, not a loop
    assert pool.connections() == [] and connect.opened[1].is_closed()


async def test_a_live_connection_refusing_one_more_channel_is_not_closed_under_its_runs() -> None:
    pool, connect = SshPool(30), Connector()
    async with pool.sftp_client("k", connect):
        connect.opened[0].fail_channel = asyncssh.ChannelOpenError(1, "administratively prohibited")
        await use(pool, "k", connect)  # a server MaxSessions below ours: a second connection
        assert not connect.opened[0].is_closed()
        assert len(connect.opened) == 2
    await pool.close()


async def test_an_idle_connection_is_closed_after_the_idle_time() -> None:
    pool, connect = SshPool(0.05), Connector()
    await use(pool, "k", connect)
    async with asyncio.timeout(10):
        await connect.opened[0].closed.wait()
    assert pool.connections() == []
    await pool.close()


async def test_a_connection_in_use_is_not_closed_by_the_idle_timer() -> None:
    pool, connect = SshPool(0.05), Connector()
    await use(pool, "held", connect)
    async with pool.sftp_client("held", connect):  # taken again before its idle time
        await use(pool, "other", connect)
        async with asyncio.timeout(10):
            await connect.opened[1].closed.wait()  # the idle time has passed: the other one expired
        assert not connect.opened[0].is_closed()
    async with asyncio.timeout(10):
        await connect.opened[0].closed.wait()  # given back: its idle timer runs again
    await pool.close()


async def test_idle_zero_keeps_nothing() -> None:
    pool, connect = SshPool(0), Connector()
    await use(pool, "k", connect)
    await use(pool, "k", connect)
    assert len(connect.opened) == 2 and all(ssh.is_closed() for ssh in connect.opened)
    assert (pool.opened, pool.reused) == (2, 0) and pool.connections() == []


async def test_shutdown_closes_every_connection_and_later_runs_are_not_pooled() -> None:
    pool, connect = SshPool(30), Connector()
    await use(pool, "a", connect)
    await use(pool, "b", connect)
    await pool.close()
    assert all(ssh.is_closed() for ssh in connect.opened)
    await use(pool, "a", connect)
    assert connect.opened[2].is_closed() and pool.connections() == []


async def test_a_run_cancelled_while_its_channel_opens_gives_the_channel_back() -> None:
    pool, connect = SshPool(30, max_channels=1), Connector()
    await use(pool, "k", connect)
    connect.opened[0].hold_channel = asyncio.Event()
    task = asyncio.ensure_future(use(pool, "k", connect))
    while pool.reused == 0:
        await asyncio.sleep(0)  # lets the task reach the channel open (no time passes)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    connect.opened[0].hold_channel = None
    await use(pool, "k", connect)
    assert len(connect.opened) == 1  # its one channel is free again
    await pool.close()


async def test_outcomes_are_counted_in_the_registry() -> None:
    registry = CollectorRegistry()
    pool, connect = SshPool(30, registry=registry), Connector()
    await use(pool, "k", connect)
    await use(pool, "k", connect)
    connect.opened[0].close()
    await use(pool, "k", connect)

    def value(outcome: str) -> float | None:
        return registry.get_sample_value("connect_sftp_connections_total", {"outcome": outcome})

    assert (value("opened"), value("reused"), value("stale")) == (2, 1, 1)
    await pool.close()


async def test_the_executor_installs_its_pool_at_start_and_closes_it_at_stop() -> None:
    runtime = SimpleNamespace(on_start=[], on_stop=[], metrics=SimpleNamespace(registry=CollectorRegistry()))
    main._pool_ssh_connections(runtime, ExecutorSettings(ssh_idle_seconds=12))  # type: ignore[arg-type]
    before = sftp._pool
    for hook in runtime.on_start:
        await hook()
    installed = sftp._pool
    assert installed is not before and installed.idle_seconds == 12 and installed.reuses
    sample = {"outcome": "opened"}
    assert runtime.metrics.registry.get_sample_value("connect_sftp_connections_total", sample) == 0
    for hook in runtime.on_stop:
        await hook()
    assert not installed.reuses and sftp._pool is before
