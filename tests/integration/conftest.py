from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shared.settings import CommonSettings
from shared.topology import Topology
from tests.support.broker import delete_topology


@pytest.fixture
async def topology(settings: CommonSettings) -> AsyncIterator[Topology]:
    topology = Topology(prefix=settings.amqp_prefix)
    yield topology
    await delete_topology(settings.amqp_url, topology)
