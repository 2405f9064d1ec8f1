"""The four services as separate OS processes against the real broker, database and sshd."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from services.catalog.domain import Role
from services.catalog.repository import MongoCatalogRepository
from services.catalog.service import issue_token
from services.dev.processes import SystemProcesses
from shared.mongo import create_client
from shared.settings import CommonSettings
from shared.topology import Topology
from tests.conftest import TEST_SECRET_KEY
from tests.support.broker import delete_topology
from tests.support.servers import Sshd


@dataclass
class RunningSystem:
    processes: SystemProcesses
    settings: CommonSettings
    token: str

    @property
    def api_url(self) -> str:
        return f"{self.processes.processes['catalog'].url}/api/v1"


@pytest.fixture(scope="module")
def system_settings(
    amqp_url: str, mongo_url: str, tmp_path_factory: pytest.TempPathFactory
) -> CommonSettings:
    prefix = uuid.uuid4().hex[:12]  # unique on the shared broker, whatever ran before
    return CommonSettings.model_validate(
        {
            "AMQP_URL": amqp_url,
            "MONGO_URL": mongo_url,
            "CONNECT_DB_PREFIX": f"e2e{prefix}",
            "CONNECT_AMQP_PREFIX": f"e2e{prefix}.",
            "CONNECT_SECRET_KEY": TEST_SECRET_KEY,
        }
    )


@pytest.fixture(scope="module")
def running_system(
    system_settings: CommonSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SystemProcesses]:
    s = system_settings
    env = {
        "AMQP_URL": s.amqp_url,
        "MONGO_URL": s.mongo_url or "",
        "CONNECT_DB_PREFIX": s.db_prefix,
        "CONNECT_AMQP_PREFIX": s.amqp_prefix,
        "CONNECT_SECRET_KEY": TEST_SECRET_KEY,
        "CONNECT_GRACEFUL_TIMEOUT": "10",
        "EXECUTOR_PROGRESS_INTERVAL": "0.5",
    }
    log_dir = Path("test-artifacts") / "e2e-logs" / s.db_prefix
    processes = SystemProcesses(env=env, log_dir=log_dir)
    try:
        processes.start_all()
        processes.wait_ready()
        yield processes
    finally:
        processes.stop()
        asyncio.run(delete_topology(s.amqp_url, Topology(prefix=s.amqp_prefix)))


@pytest.fixture(scope="module")
async def system(running_system: SystemProcesses, system_settings: CommonSettings) -> RunningSystem:
    client = create_client(system_settings.mongo_url or "")
    try:
        repo = MongoCatalogRepository(client, system_settings.database("catalog"))
        token = await issue_token(repo, "e2e-admin", Role.ADMIN)
    finally:
        await client.close()
    return RunningSystem(running_system, system_settings, token)


@pytest.fixture
async def api(system: RunningSystem) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {system.token}"}
    async with httpx.AsyncClient(base_url=system.api_url, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture
async def sftp_connection(api: httpx.AsyncClient, sshd: Sshd, unique: str) -> int:
    response = await api.post(
        "/connections",
        json={
            "name": f"sshd-{unique}",
            "host": sshd.host,
            "port": sshd.port,
            "username": sshd.username,
            "private_key": sshd.private_key,
            "host_key": sshd.host_key,
            "base_dir": str(sshd.root),
        },
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])
