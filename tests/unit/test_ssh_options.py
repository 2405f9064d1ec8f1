"""One SSH client configuration: the catalog's connection test connects exactly as a run does (issue #15)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import asyncssh
import pytest

from services.catalog.adapters import sftp_probe
from services.executor import sftp
from services.executor.errors import SourceRefused, SourceUnavailable
from services.executor.ssh_pool import SshPool
from shared.catalog_records import ConnectionRecord
from shared.secrets import Binding, SecretBox
from tests.conftest import TEST_SECRET_KEY

BOX = SecretBox(TEST_SECRET_KEY)
HOST_KEY = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
CLIENT_KEY = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()


def connection(**secrets: str) -> ConnectionRecord:
    return ConnectionRecord.model_validate(
        {"_id": 1, "name": "partner", "host": "sftp.example", "port": 2222, "username": "ann",
         "host_key": HOST_KEY, "created_at": datetime.now(UTC), "created_by": "t"}
        | {f"{name}_encrypted": BOX.encrypt(value, Binding("connection", 1, f"{name}_encrypted")) for name, value in secrets.items()}
    )  # fmt: skip


def comparable(call: tuple[tuple[Any, ...], dict[str, Any]]) -> dict[str, Any]:
    """The options of one `asyncssh.connect` call, keys shown by their public form."""
    args, options = call
    trusted, _, _ = options["known_hosts"]
    return options | {
        "host": args[0],
        "known_hosts": [k.export_public_key().decode() for k in trusted],
        "client_keys": [k.export_public_key().decode() for k in options["client_keys"]],
    }


def connect_calls(record: ConnectionRecord, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """How the catalog's test and then an executor's run call `asyncssh.connect` (refused at once)."""
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def refuse(*args: Any, **kwargs: Any) -> None:
        calls.append((args, kwargs))
        raise asyncssh.ConnectionLost("refused by the test")

    monkeypatch.setattr(asyncssh, "connect", refuse)
    answer = asyncio.run(sftp_probe.AsyncsshProbe().test(record, BOX))
    assert answer.ok is False

    async def run() -> None:
        previous = sftp.use_pool(SshPool())
        try:
            async with sftp.open_sftp(record, BOX):
                pass
        finally:
            sftp.use_pool(previous)

    with pytest.raises(SourceUnavailable):
        asyncio.run(run())
    return [comparable(call) for call in calls]


@pytest.mark.parametrize(
    ("secrets", "preferred_auth"),
    [
        ({"password": "s3cret"}, "password,keyboard-interactive"),
        ({"private_key": CLIENT_KEY}, "publickey,password"),
    ],
    ids=["password", "private-key"],
)
def test_the_connection_test_and_a_run_connect_with_the_same_options(
    secrets: dict[str, str], preferred_auth: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe, run = connect_calls(connection(**secrets), monkeypatch)
    assert probe == run
    assert probe["preferred_auth"] == preferred_auth
    assert (probe["host"], probe["port"], probe["username"]) == ("sftp.example", 2222, "ann")
    assert probe["known_hosts"] == [HOST_KEY] and probe["agent_path"] is None and probe["config"] is None
    assert probe["password"] == secrets.get("password")
    assert len(probe["client_keys"]) == ("private_key" in secrets)


def test_an_unreadable_private_key_is_refused_alike_before_any_server_is_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record = connection(private_key="not a key")
    monkeypatch.setattr(asyncssh, "connect", pytest.fail)
    answer = asyncio.run(sftp_probe.AsyncsshProbe().test(record, BOX))

    async def run() -> None:
        async with sftp.open_sftp(record, BOX):
            pass

    with pytest.raises(SourceRefused) as refused:
        asyncio.run(run())
    assert answer.ok is False
    assert answer.message == str(refused.value) == "connection partner: the private key cannot be read"
