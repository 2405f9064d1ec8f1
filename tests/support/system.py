"""The four services as processes for one test module: isolated names, environment, start and clean-up.

Every e2e module that starts its own system (other settings, several executors, a private broker) builds
it from these, so names stay unique on the shared broker and nothing is left behind.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx

from services.catalog.adapters.repository import MongoCatalogRepository
from services.catalog.domain import Role
from services.catalog.service import issue_token
from services.dev.processes import SystemProcesses
from shared.mongo import create_client
from shared.settings import CommonSettings
from shared.topology import Topology
from tests.conftest import TEST_SECRET_KEY
from tests.support.broker import delete_topology
from tests.support.catalog_api import checked_client


def isolated_settings(amqp_url: str, mongo_url: str, tag: str) -> CommonSettings:
    """Settings with database and broker names of their own (`tag` tells the modules apart in logs)."""
    prefix = tag + uuid.uuid4().hex[:12]  # unique on the shared broker, whatever ran before
    return CommonSettings.model_validate(
        {"AMQP_URL": amqp_url, "MONGO_URL": mongo_url, "CONNECT_DB_PREFIX": prefix,
         "CONNECT_AMQP_PREFIX": f"{prefix}.", "CONNECT_SECRET_KEY": TEST_SECRET_KEY}
    )  # fmt: skip


def service_env(settings: CommonSettings, **extra: str) -> dict[str, str]:
    """The environment of the service processes: the settings' names plus `extra` variables."""
    s = settings
    return {
        "AMQP_URL": s.amqp_url, "MONGO_URL": s.mongo_url or "", "CONNECT_DB_PREFIX": s.db_prefix,
        "CONNECT_AMQP_PREFIX": s.amqp_prefix, "CONNECT_SECRET_KEY": TEST_SECRET_KEY, **extra,
    }  # fmt: skip


@contextmanager
def started_system(
    settings: CommonSettings,
    env: dict[str, str],
    start: Callable[[SystemProcesses], None],
    *,
    remove_topology: bool = True,
) -> Iterator[SystemProcesses]:
    """Processes started by `start`, ready; stopped afterwards and (on the shared broker) their names removed."""
    system = SystemProcesses(env=env, log_dir=Path("test-artifacts") / "e2e-logs" / settings.db_prefix)
    try:
        start(system)
        system.wait_ready()
        yield system
    finally:
        system.stop()
        if remove_topology:
            asyncio.run(delete_topology(settings.amqp_url, Topology(prefix=settings.amqp_prefix)))


def start_services(*names: str) -> Callable[[SystemProcesses], None]:
    def start(system: SystemProcesses) -> None:
        for name in names:
            system.start(name)

    return start


async def admin_token(settings: CommonSettings, principal: str = "e2e") -> str:
    client = create_client(settings.mongo_url or "")
    try:
        return await issue_token(
            MongoCatalogRepository(client, settings.database("catalog")), principal, Role.ADMIN
        )
    finally:
        await client.close()


@asynccontextmanager
async def admin_api(system: SystemProcesses, settings: CommonSettings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the system's API, signed in as an admin."""
    headers = {"Authorization": f"Bearer {await admin_token(settings)}"}
    url = f"{system.processes['catalog'].url}/api/v1"
    async with checked_client(url, headers) as http:
        yield http
