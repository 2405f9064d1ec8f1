"""`connect dev`: database, SFTP server with a demo file, a mail sink, the four services, a demo job
that mails its outcome to the sink, a token."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import httpx

from services.catalog.adapters.repository import MongoCatalogRepository
from services.catalog.domain import Role
from services.catalog.service import issue_token
from services.dev.broker import BrokerUnavailable, ensure_local_broker
from services.dev.mail_sink import MailSink, start_mail_sink
from services.dev.processes import SystemProcesses
from services.dev.sftp_server import DemoSftp, start_demo_sftp
from shared.mongo import EmbeddedMongo, create_client, free_port
from shared.settings import CommonSettings

VAR = Path("var/dev")
MAIL = VAR / "mail"
# The demo job's notification rule: every final outcome of a run, to the dev mail sink.
DEMO_NOTIFY_ON = ["succeeded", "failed", "partial"]
DEMO_ROWS = [
    ("customer_id", "email", "first_name", "loyalty_points", "subscribed"),
    ("C001", "ada@example.com", "Ada", "120", "yes"),
    ("C002", "grace@example.com", "Grace", "75", "no"),
    ("C003", "alan@example.com", "Alan", "300", "yes"),
    ("C004", "not-an-email", "Bad", "1", "yes"),
    ("C005", "linus@example.com", "Linus", "42", "no"),
]


def run_dev(*, keep_data: bool = False) -> int:
    common = CommonSettings()
    with contextlib.suppress(BrokerUnavailable):  # the check below says what is wrong
        ensure_local_broker(common.amqp_url)
    if not asyncio.run(_broker_reachable(common.amqp_url)):
        print(f"RabbitMQ is not reachable at {_redact(common.amqp_url)}: start it with `rabbitmq-server -detached` "
              "or set AMQP_URL.", file=sys.stderr)  # fmt: skip
        return 1
    if not keep_data:
        shutil.rmtree(VAR, ignore_errors=True)
    VAR.mkdir(parents=True, exist_ok=True)
    try:
        return asyncio.run(_run(common))
    except KeyboardInterrupt:
        return 0


async def _run(common: CommonSettings) -> int:
    database = None if common.mongo_url else EmbeddedMongo(VAR / "mongo")
    mongo_url = common.mongo_url or (database.start() if database else "")
    secret_key = common.secret_key or secrets.token_urlsafe(32)
    await asyncio.to_thread(_write_demo_file, VAR / "sftp")
    sftp, sftp_server = await start_demo_sftp(VAR / "sftp", free_port(), "demo", secrets.token_urlsafe(12))
    mail, mail_server = await start_mail_sink(MAIL)
    env = {
        "MONGO_URL": mongo_url,
        "CONNECT_SECRET_KEY": secret_key,
        "CONNECT_DEV_MODE": "1",
        "EXECUTOR_EXECUTOR_ID": "executor-1",
    }
    system = SystemProcesses(env=env, log_dir=VAR / "logs")
    try:
        catalog_url = system.start("catalog").url
        for name in ("scheduler", "executor"):
            system.start(name)
        system.start("logsink", extra_env={"LOGSINK_API_URL": catalog_url})  # links in the mails it sends
        await asyncio.to_thread(system.wait_ready)
        token = await _admin_token(mongo_url, common.database("catalog"))
        demo = await _seed(catalog_url, token, sftp, mail)
        _print_welcome(catalog_url, token, demo.job_id, system, mail)
        await _until_interrupted()
    finally:
        print("\nstopping Connect …")
        system.stop()
        sftp_server.close()
        mail_server.close()
        if database:
            database.stop()
    return 0


async def _broker_reachable(url: str) -> bool:
    try:
        connection = await asyncio.wait_for(aio_pika.connect(url), timeout=5)
    except (OSError, TimeoutError, aio_pika.exceptions.AMQPError):
        return False
    await connection.close()
    return True


def _redact(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('@', 1)[-1]}"


def _write_demo_file(root: Path) -> None:
    """Called before the event loop's work starts: plain blocking file I/O is fine here."""
    (root / "incoming").mkdir(parents=True, exist_ok=True)
    lines = [",".join(row) for row in DEMO_ROWS]
    (root / "incoming" / "contacts.csv").write_text("\n".join(lines) + "\n")


async def _admin_token(mongo_url: str, catalog_db: str) -> str:
    client = create_client(mongo_url)
    try:
        return await issue_token(MongoCatalogRepository(client, catalog_db), "dev-admin", Role.ADMIN)
    finally:
        await client.close()


@dataclass(frozen=True)
class Demo:
    job_id: int
    channel_id: int


async def _seed(catalog_url: str, token: str, sftp: DemoSftp, mail: MailSink) -> Demo:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=f"{catalog_url}/api/v1", headers=headers, timeout=10) as api:
        return await seed_demo(api, sftp, mail)


async def seed_demo(api: httpx.AsyncClient, sftp: DemoSftp, mail: MailSink) -> Demo:
    """The demo's connection, table, mail channel (to the sink) and import job that notifies it."""
    connection = await _post(api, "/connections", {
        "name": "demo-sftp", "host": "127.0.0.1", "port": sftp.port, "username": sftp.username,
        "password": sftp.password, "host_key": sftp.host_key, "base_dir": "/",
    })  # fmt: skip
    await _post(api, "/tables", {
        "name": "contacts", "kind": "custom", "primary_key": ["customer_id"],
        "fields": [
            {"name": "customer_id", "type": "string", "required": True},
            {"name": "email", "type": "email", "required": True},
            {"name": "first_name", "type": "string"},
            {"name": "loyalty_points", "type": "integer"},
            {"name": "subscribed", "type": "boolean"},
        ],
    })  # fmt: skip
    channel = await _post(api, "/notification-channels", {
        "kind": "smtp", "name": "dev mail sink", "host": mail.host, "port": mail.port, "starttls": False,
        "from_address": "connect@example.com", "to": ["you@example.com"],
    })  # fmt: skip
    mapping = [{"column": c, "field": c} for c in DEMO_ROWS[0]]
    job = await _post(api, "/jobs", {
        "name": "Demo contacts import",
        "spec": {
            "kind": "import",
            "source": {"kind": "sftp", "connection_id": connection["id"], "path": "incoming/contacts.csv"},
            "mapping": mapping,
            "target": {"kind": "custom", "table": "contacts", "mode": "merge"},
        },
        "notifications": [{"on": DEMO_NOTIFY_ON, "channels": [channel["id"]]}],
    })  # fmt: skip
    return Demo(int(job["id"]), int(channel["id"]))


async def _post(api: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await api.post(path, json=body)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def _print_welcome(
    catalog_url: str, token: str, job_id: int, system: SystemProcesses, mail: MailSink
) -> None:
    api = f"{catalog_url}/api/v1"
    others = ", ".join(f"{k} {p.url}" for k, p in system.processes.items() if k != "catalog")
    print(
        f"""
Connect is running.

  Console:    {catalog_url}/   (sign in with the admin token below)
  API:        {api}   (OpenAPI: {api}/openapi.json, docs: {api}/docs)
  Admin token {token}
  Services:   catalog {catalog_url}, {others}  (each: /healthz /readyz /metrics)
  Logs:       {system.log_dir}/
  Mail:       {mail.directory}/   (one .eml per message: the mail sink at smtp://{mail.host}:{mail.port})

Run the demo import job and read its result:

  export TOKEN={token}
  curl -s -X POST -H "Authorization: Bearer $TOKEN" {api}/jobs/{job_id}/run
  curl -s -H "Authorization: Bearer $TOKEN" {api}/runs/{job_id}.1
  curl -s -H "Authorization: Bearer $TOKEN" {api}/runs/{job_id}.1/logs
  ls {mail.directory}/    # the job mails its outcome (succeeded, failed or partial) to the sink

Press Ctrl-C to stop.""",
        flush=True,
    )


async def _until_interrupted() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
