from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.logsink.repository import MongoRunRecords
from shared.mongo import MongoClient
from shared.settings import CommonSettings
from shared.topology import Topology
from tests.support.broker import delete_topology


@pytest.fixture
async def topology(settings: CommonSettings) -> AsyncIterator[Topology]:
    topology = Topology(prefix=settings.amqp_prefix)
    yield topology
    await delete_topology(settings.amqp_url, topology)


@pytest.fixture
async def records(mongo: MongoClient, settings: CommonSettings) -> AsyncIterator[MongoRunRecords]:
    """The logsink's run records on a database of the test's own, dropped afterwards."""
    store = MongoRunRecords(mongo, settings.database("logsink"))
    await store.ensure_indexes()
    yield store
    await mongo.drop_database(settings.database("logsink"))
