"""`connect dev`: database, SFTP server with a demo file, the four services, a demo job, a token."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import aio_pika
import httpx

from services.catalog.adapters.repository import MongoCatalogRepository
from services.catalog.domain import Role
from services.catalog.service import issue_token
from services.dev.processes import SystemProcesses
from services.dev.sftp_server import DemoSftp, start_demo_sftp
from shared.mongo import EmbeddedMongo, create_client, free_port
from shared.settings import CommonSettings

VAR = Path("var/dev")
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
    env = {
        "MONGO_URL": mongo_url,
        "CONNECT_SECRET_KEY": secret_key,
        "CONNECT_DEV_MODE": "1",
        "EXECUTOR_EXECUTOR_ID": "executor-1",
    }
    system = SystemProcesses(env=env, log_dir=VAR / "logs")
    try:
        system.start_all()
        await asyncio.to_thread(system.wait_ready)
        catalog_url = system.processes["catalog"].url
        token = await _admin_token(mongo_url, common.database("catalog"))
        job_id = await _seed(catalog_url, token, sftp)
        _print_welcome(catalog_url, token, job_id, system)
        await _until_interrupted()
    finally:
        print("\nstopping Connect …")
        system.stop()
        sftp_server.close()
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


async def _seed(catalog_url: str, token: str, sftp: DemoSftp) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=f"{catalog_url}/api/v1", headers=headers, timeout=10) as api:
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
        mapping = [{"column": c, "field": c} for c in DEMO_ROWS[0]]
        job = await _post(api, "/jobs", {
            "name": "Demo contacts import",
            "spec": {
                "kind": "import",
                "source": {"kind": "sftp", "connection_id": connection["id"], "path": "incoming/contacts.csv"},
                "mapping": mapping,
                "target": {"kind": "custom", "table": "contacts", "mode": "merge"},
            },
        })  # fmt: skip
    return int(job["id"])


async def _post(api: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await api.post(path, json=body)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def _print_welcome(catalog_url: str, token: str, job_id: int, system: SystemProcesses) -> None:
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

Run the demo import job and read its result:

  export TOKEN={token}
  curl -s -X POST -H "Authorization: Bearer $TOKEN" {api}/jobs/{job_id}/run
  curl -s -H "Authorization: Bearer $TOKEN" {api}/runs/{job_id}.1
  curl -s -H "Authorization: Bearer $TOKEN" {api}/runs/{job_id}.1/logs

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
