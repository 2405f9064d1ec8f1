"""Session-wide real servers and per-test isolation (unique database and queue names)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

# Hypothesis imports its optimiser lazily, deep inside a test's stack; on CPython 3.11.7 compiling a module
# that deep can fail ("AST constructor recursion depth mismatch"), so it is imported here, at the top.
from hypothesis.internal.conjecture import optimiser as _hypothesis_optimiser  # noqa: F401

from shared.mongo import MongoClient, create_client
from shared.settings import CommonSettings
from tests.support.servers import Sshd, mongo_server, require_broker, sshd_server

TEST_SECRET_KEY = (
    "sF72ny2eYkwuYsI4SdA2tUbkXYE/lW2N/i24XrKPag0="  # a proper 32-byte key; only the tests know it
)

# The harnesses' fixtures (`harness`, `scheduler`), for every test that names one.
pytest_plugins = ["tests.support.executor_harness", "tests.support.scheduler_harness"]

# Property tests: a bounded run in the suite; `CONNECT_DEEP=1 make test` (or pytest) runs the deep one.
DEEP = os.environ.get("CONNECT_DEEP", "") not in ("", "0")
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large]
hypothesis_settings.register_profile(
    "suite", deadline=None, derandomize=False, suppress_health_check=_SLOW_OK
)
hypothesis_settings.register_profile(
    "deep", deadline=None, max_examples=2000, suppress_health_check=_SLOW_OK, print_blob=True
)
hypothesis_settings.load_profile("deep" if DEEP else "suite")


def examples(suite: int, deep: int | None = None) -> int:
    """How many examples a property test draws: `suite` in the normal run, `deep` (default 20x) when deep."""
    return (deep or suite * 20) if DEEP else suite


@pytest.fixture(scope="session")
def amqp_url() -> str:
    url = os.environ.get("AMQP_URL", "amqp://guest:guest@localhost:5672/")
    require_broker(url)
    return url


@pytest.fixture(scope="session")
def mongo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with mongo_server(tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with sshd_server(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def settings(amqp_url: str, mongo_url: str, unique: str) -> CommonSettings:
    """Settings of one test: its own databases and its own exchanges and queues."""
    return CommonSettings.model_validate(
        {
            "AMQP_URL": amqp_url,
            "MONGO_URL": mongo_url,
            "CONNECT_DB_PREFIX": f"t{unique}",
            "CONNECT_AMQP_PREFIX": f"t{unique}.",
            "CONNECT_SECRET_KEY": TEST_SECRET_KEY,
            "CONNECT_GRACEFUL_TIMEOUT": 10,
        }
    )


@pytest.fixture
async def mongo(mongo_url: str) -> AsyncIterator[MongoClient]:
    client = create_client(mongo_url)
    yield client
    await client.close()


@pytest.fixture
def artifacts_dir() -> Path:
    path = Path("test-artifacts")
    path.mkdir(exist_ok=True)
    return path
