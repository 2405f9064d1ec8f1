"""SSH connections reused between runs (services/executor/ssh_pool.py), against the real sshd.

Connections are counted twice: by the pool (opened / reused / stale) and by the server (one sshd child
process per connection).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from services.executor.sftp import open_sftp, use_pool
from services.executor.ssh_pool import SshPool
from shared import redact
from shared.catalog_records import ConnectionRecord
from shared.contracts.runs import RunStatus
from shared.secrets import Binding
from tests.support.executor_harness import (
    CONTACT_FIELDS,
    CONTACT_MAPPING,
    Harness,
    csv_text,
    import_spec,
)
from tests.support.servers import Sshd
from tests.support.waiting import eventually

PRIVATE_KEY_OF_1 = Binding("connection", 1, "private_key_encrypted")


@pytest.fixture
async def pool() -> AsyncIterator[SshPool]:
    pool = SshPool(30)
    previous = use_pool(pool)
    yield pool
    await pool.close()
    use_pool(previous)


def install(pool: SshPool) -> None:
    """Replace the test's pool by another one (the fixture restores the executor's default)."""
    use_pool(pool)


# --- the server's side: one sshd child per connection ---------------------------------------------------


def listener_pid(sshd: Sshd) -> int:
    return int((sshd.root.parent / "sshd.pid").read_text())


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # exited meanwhile
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def descendants(pid: int) -> list[int]:
    found = children(pid)
    return found + [grandchild for child in found for grandchild in descendants(child)]


def server_connections(sshd: Sshd) -> int:
    return len(children(listener_pid(sshd)))


# --- runs -------------------------------------------------------------------------------------------------


async def contacts(h: Harness, private_key: str | None = None) -> None:
    await h.connection(private_key=private_key)
    fields: list[dict[str, Any]] = CONTACT_FIELDS  # type: ignore[assignment]
    await h.table("contacts", fields, primary_key=("customer_id",))
    h.write("a.csv", csv_text([["id", "email", "points"], ["C1", "a@x.io", "1"]]))
    h.write("b.csv", csv_text([["id", "email", "points"], ["C2", "b@x.io", "2"]]))


def spec(path: str) -> dict[str, object]:
    return import_spec(path, {"kind": "custom", "table": "contacts", "mode": "merge"}, CONTACT_MAPPING)


async def succeeds(h: Harness, path: str, job_id: int) -> None:
    # One attempt: a reconnect must be the pool's, not the executor retrying the run.
    run = await h.run(spec(path), job_id=job_id, service=h.service(max_attempts=1))
    assert run.data.status == RunStatus.SUCCEEDED, run.data.error


async def test_two_runs_in_a_row_open_one_ssh_connection(
    harness: Harness, pool: SshPool, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    await contacts(h)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        await succeeds(h, "a.csv", 901)
        await succeeds(h, "b.csv", 902)
        gc.collect()  # a read left running when the channel closed gracefully would be logged now
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
    assert (pool.opened, pool.reused, pool.stale) == (1, 1, 0)
    assert len(pool.connections()) == 1
    await eventually(lambda: server_connections(h.sshd) == 1, what="sshd serves exactly one connection")
    assert [r["customer_id"] for r in await h.rows("contacts", "customer_id")] == ["C1", "C2"]


async def test_a_key_edited_in_the_catalog_opens_a_new_connection_and_the_old_key_is_not_used(
    harness: Harness, pool: SshPool
) -> None:
    h = harness
    authorized = h.sshd.root.parent / "authorized_keys"
    original = authorized.read_text()
    old, new = (asyncssh.generate_private_key("ssh-ed25519") for _ in range(2))
    try:
        authorized.write_text(original + old.export_public_key().decode())
        await contacts(h, private_key=old.export_private_key().decode())
        await succeeds(h, "a.csv", 911)
        # The edit: the server now accepts only the new key, the catalog holds only the new key.
        authorized.write_text(original + new.export_public_key().decode())
        await h.mongo[h.settings.database("catalog")]["connections"].update_one(
            {"_id": 1},
            {
                "$set": {
                    "private_key_encrypted": h.box.encrypt(
                        new.export_private_key().decode(), PRIVATE_KEY_OF_1
                    )
                }
            },
        )
        await succeeds(h, "b.csv", 912)  # authenticated with the new key: the old one is refused now
    finally:
        authorized.write_text(original)
    assert (pool.opened, pool.reused) == (2, 0)  # the old key's session was not reused


async def test_a_connection_the_server_killed_between_runs_does_not_fail_the_next_run(
    harness: Harness, pool: SshPool
) -> None:
    h = harness
    await contacts(h)
    await succeeds(h, "a.csv", 921)
    await eventually(lambda: server_connections(h.sshd) == 1, what="sshd serves the pooled connection")
    killed = descendants(listener_pid(h.sshd))
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    await eventually(lambda: not set(killed) & set(descendants(listener_pid(h.sshd))), what="sshd child gone")
    await succeeds(h, "b.csv", 922)  # at once: the client may or may not have seen the close yet
    assert (pool.opened, pool.stale) == (2, 1)


async def test_an_idle_connection_is_closed_after_the_idle_time(harness: Harness, pool: SshPool) -> None:
    h = harness
    install(idle := SshPool(0.5))
    try:
        await contacts(h)
        await succeeds(h, "a.csv", 931)
        [connection] = idle.connections()
        async with asyncio.timeout(15):
            await connection.wait_closed()
        assert idle.connections() == []
        await eventually(lambda: server_connections(h.sshd) == 0, what="sshd's connection ended")
        await succeeds(h, "b.csv", 932)
        assert (idle.opened, idle.reused) == (2, 0)
    finally:
        await idle.close()


async def test_idle_zero_opens_a_connection_per_run_and_keeps_none(harness: Harness, pool: SshPool) -> None:
    h = harness
    install(none := SshPool(0))
    await contacts(h)
    await succeeds(h, "a.csv", 941)
    await succeeds(h, "b.csv", 942)
    assert (none.opened, none.reused) == (2, 0) and none.connections() == []
    await eventually(lambda: server_connections(h.sshd) == 0, what="no connection left open")


async def test_every_run_on_a_reused_connection_registers_the_secrets_with_its_redactor(
    harness: Harness, pool: SshPool
) -> None:
    h = harness
    await contacts(h)
    doc = await h.mongo[h.settings.database("catalog")]["connections"].find_one({"_id": 1})
    connection = ConnectionRecord.model_validate(doc)
    key_line = next(line for line in h.sshd.private_key.splitlines() if len(line) > 40)

    async def run() -> redact.Redactor:
        bound = redact.Redactor()
        redact.bind(bound)  # this task's (this "run's") redactor
        async with open_sftp(connection, h.box) as sftp:
            assert await sftp.exists("a.csv")
        return bound

    first = await asyncio.create_task(run())
    second = await asyncio.create_task(run())
    assert pool.reused == 1
    assert first.scrub(key_line) == second.scrub(key_line) == redact.MASK
