"""The secret scrubber: every form a remote system may echo a secret in is masked (issue #12, defect 5)."""

from __future__ import annotations

import asyncio
import base64
import contextvars
import json
import logging
import sys
from datetime import UTC, datetime
from urllib.parse import quote, quote_plus

import asyncssh
import pytest

from services.executor.errors import SourceRefused, SourceUnavailable
from services.executor.sftp import _translated
from shared import redact
from shared.catalog_records import ConnectionRecord
from shared.logging import JsonFormatter
from shared.redact import MASK, Redactor, connection_redactor
from shared.secrets import Binding, SecretBox
from tests.conftest import TEST_SECRET_KEY

PASSWORD = "pa ss/wörd+1="
PEM = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()


@pytest.mark.parametrize(
    "form",
    [
        PASSWORD,
        quote(PASSWORD, safe=""),
        quote_plus(PASSWORD),
        quote(PASSWORD, safe="").lower(),
        base64.b64encode(PASSWORD.encode()).decode(),
        base64.urlsafe_b64encode(PASSWORD.encode()).decode().rstrip("="),
        json.dumps(PASSWORD)[1:-1],
    ],
)
def test_every_echoed_form_of_a_secret_is_masked(form: str) -> None:
    assert (
        Redactor([PASSWORD]).scrub(f"server said: <{form}> twice <{form}>")
        == f"server said: <{MASK}> twice <{MASK}>"
    )


def test_basic_auth_of_user_and_password_is_masked() -> None:
    redactor = Redactor()
    redactor.add_basic_auth("ann", PASSWORD)
    echoed = "Authorization: Basic " + base64.b64encode(f"ann:{PASSWORD}".encode()).decode()
    assert redactor.scrub(echoed) == f"Authorization: Basic {MASK}"


def test_each_body_line_of_a_pem_key_is_masked() -> None:
    body = [line for line in PEM.splitlines() if len(line) >= 16 and not line.startswith("-----")]
    text = "key dump:\n" + "\n".join(body)
    scrubbed = Redactor([PEM]).scrub(text)
    assert all(line not in scrubbed for line in body)
    assert scrubbed.startswith("key dump:")


def test_short_or_empty_secrets_leave_text_alone() -> None:
    assert Redactor(["", None, "ab"]).scrub("a table about abc") == "a table about abc"


def test_a_connection_redactor_knows_the_decrypted_secrets() -> None:
    box = SecretBox(TEST_SECRET_KEY)
    connection = ConnectionRecord.model_validate(
        {
            "_id": 1,
            "name": "c",
            "username": "ann",
            "password_encrypted": box.encrypt(PASSWORD, Binding("connection", 1, "password_encrypted")),
            "created_at": datetime.now(UTC),
            "created_by": "t",
        }
    )
    redactor = connection_redactor(connection, box)
    assert redactor.scrub(f"denied for {PASSWORD}") == f"denied for {MASK}"
    assert box.encrypt(PASSWORD, Binding("connection", 1, "password_encrypted")) not in redactor.scrub(
        "nothing"
    )


def test_json_logs_of_a_run_are_scrubbed_with_the_secrets_the_run_used() -> None:
    formatter = JsonFormatter("executor")

    def in_a_run() -> str:
        redact.bind(Redactor())
        redact.remember(Redactor([PASSWORD]))  # as an adapter does once it has decrypted the secret
        try:
            raise RuntimeError(f"remote said {PASSWORD}")
        except RuntimeError:
            record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed: %s", (PASSWORD,), None)

            record.exc_info = sys.exc_info()
        return formatter.format(record)

    line = contextvars.copy_context().run(in_a_run)
    assert PASSWORD not in line and json.loads(line)["event"] == f"failed: {MASK}"


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (asyncssh.PermissionDenied(f"password {PASSWORD} refused"), SourceRefused),
        (asyncssh.SFTPFailure(f"cannot open {PASSWORD}"), SourceUnavailable),
        (asyncssh.ConnectionLost(f"lost after {PASSWORD}"), SourceUnavailable),
        (OSError(f"errno 1: {PASSWORD}"), SourceUnavailable),
    ],
)
def test_sftp_server_messages_are_scrubbed_at_the_adapter(error: Exception, kind: type[Exception]) -> None:
    async def translate() -> None:
        async with _translated("SFTP server h:22", Redactor([PASSWORD])):
            raise error

    with pytest.raises(kind) as caught:
        asyncio.run(translate())
    assert PASSWORD not in str(caught.value) and MASK in str(caught.value)


def test_the_catalogs_connection_test_answer_is_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.catalog.adapters import sftp_probe

    def refuse(*args: object, **kwargs: object) -> None:
        raise asyncssh.ConnectionLost(f"server closed: bad password {PASSWORD}")

    monkeypatch.setattr(sftp_probe.asyncssh, "connect", refuse)
    box = SecretBox(TEST_SECRET_KEY)
    host_key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    connection = ConnectionRecord.model_validate(
        {"_id": 1, "name": "c", "host": "h", "username": "ann", "password_encrypted": box.encrypt(PASSWORD, Binding("connection", 1, "password_encrypted")),
         "host_key": host_key, "created_at": datetime.now(UTC), "created_by": "t"}
    )  # fmt: skip
    answer = asyncio.run(sftp_probe.AsyncsshProbe().test(connection, box))
    assert answer.ok is False and PASSWORD not in answer.message and MASK in answer.message
