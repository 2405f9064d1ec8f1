"""The test session's broker check fails fast and says why, instead of every test timing out."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from services.dev import broker
from tests.support.servers import require_broker


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A port that accepts TCP connections and never answers: how a wedged broker node looks."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def test_a_port_that_accepts_but_never_speaks_amqp_is_refused(silent_listener: int) -> None:
    with pytest.raises(RuntimeError, match="does not answer AMQP"):
        require_broker(f"amqp://guest:guest@127.0.0.1:{silent_listener}/", answer_timeout=0.3)


def test_a_closed_port_is_refused_with_how_to_start_a_broker() -> None:
    with socket.socket() as probe:  # a port just freed: nothing listens on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(RuntimeError, match="not reachable"):
        require_broker(f"amqp://guest:guest@127.0.0.1:{port}/")


def test_with_no_broker_and_no_rabbitmq_installed_make_is_told_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("PATH", "/nonexistent")  # no rabbitmq-server to start
    monkeypatch.setenv("AMQP_URL", f"amqp://guest:guest@127.0.0.1:{port}/")
    assert broker.main(["--installed"]) == 1
    with pytest.raises(broker.BrokerUnavailable, match="not reachable"):
        broker.ensure_local_broker(f"amqp://guest:guest@127.0.0.1:{port}/", timeout=1)


def test_a_wedged_local_broker_is_reported_not_restarted(
    silent_listener: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[list[str]] = []
    monkeypatch.setattr(broker.subprocess, "run", lambda args, **_: started.append(args))
    monkeypatch.setattr(broker, "broker_state", lambda url, answer_timeout=10.0: broker.BrokerState.SILENT)
    with pytest.raises(broker.BrokerUnavailable, match="does not answer AMQP"):
        broker.ensure_local_broker(f"amqp://guest:guest@127.0.0.1:{silent_listener}/")
    assert started == []
