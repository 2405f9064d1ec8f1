"""The four services as separate OS processes against the real broker, database and sshd."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest

from services.dev.processes import SystemProcesses
from shared.settings import CommonSettings
from tests.support.catalog_api import checked_client
from tests.support.servers import Sshd
from tests.support.system import admin_token, isolated_settings, service_env, started_system


@dataclass
class RunningSystem:
    processes: SystemProcesses
    settings: CommonSettings
    token: str

    @property
    def api_url(self) -> str:
        return f"{self.processes.processes['catalog'].url}/api/v1"


@pytest.fixture(scope="module")
def system_settings(amqp_url: str, mongo_url: str) -> CommonSettings:
    return isolated_settings(amqp_url, mongo_url, "e2e")


@pytest.fixture(scope="module")
def running_system(system_settings: CommonSettings) -> Iterator[SystemProcesses]:
    env = service_env(system_settings, CONNECT_GRACEFUL_TIMEOUT="10", EXECUTOR_PROGRESS_INTERVAL="0.5")
    with started_system(system_settings, env, SystemProcesses.start_all) as processes:
        yield processes


@pytest.fixture(scope="module")
async def system(running_system: SystemProcesses, system_settings: CommonSettings) -> RunningSystem:
    return RunningSystem(running_system, system_settings, await admin_token(system_settings, "e2e-admin"))


@pytest.fixture
async def api(system: RunningSystem) -> AsyncIterator[httpx.AsyncClient]:
    async with checked_client(system.api_url, {"Authorization": f"Bearer {system.token}"}) as client:
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
