"""A local RabbitMQ for `make run` and `make test`: checked by the AMQP handshake, started when absent.

`python -m services.dev.broker` exits 0 once a broker answers at AMQP_URL (default localhost:5672),
starting Debian's `rabbitmq-server -detached` first when nothing listens on a loopback address;
`--installed` only says whether a broker answers or one could be started (the Makefile installs the
package otherwise). A remote AMQP_URL is never started, only checked.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from enum import Enum
from urllib.parse import urlparse

DEFAULT_URL = "amqp://guest:guest@localhost:5672/"
LOOPBACK = {"localhost", "127.0.0.1", "::1"}
START_TIMEOUT_SECONDS = 120.0  # a cold RabbitMQ 3.x/4.x node boots in 10-30 s on a small machine


class BrokerState(Enum):
    ANSWERS = "answers"
    UNREACHABLE = "unreachable"
    SILENT = "silent"  # accepts TCP, never speaks AMQP: a wedged node


class BrokerUnavailable(RuntimeError):
    """No broker answers at the configured URL, and none could be started."""


def _address(amqp_url: str) -> tuple[str, int]:
    parsed = urlparse(amqp_url)
    return parsed.hostname or "localhost", parsed.port or 5672


def broker_state(amqp_url: str, answer_timeout: float = 10.0) -> BrokerState:
    """What the broker at `amqp_url` does with an AMQP 0-9-1 protocol header."""
    try:
        with socket.create_connection(_address(amqp_url), timeout=3) as sock:
            sock.settimeout(answer_timeout)
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            first_frame = sock.recv(8)
    except TimeoutError:
        return BrokerState.SILENT
    except OSError:
        return BrokerState.UNREACHABLE
    # A method frame (connection.start) means the node speaks AMQP 0-9-1.
    return BrokerState.ANSWERS if first_frame[:1] == b"\x01" else BrokerState.SILENT


def require_broker(amqp_url: str, answer_timeout: float = 10.0) -> None:
    """Raise with what to do unless a broker answers at `amqp_url`."""
    host, port = _address(amqp_url)
    state = broker_state(amqp_url, answer_timeout)
    if state is BrokerState.UNREACHABLE:
        raise BrokerUnavailable(
            f"RabbitMQ is not reachable at {host}:{port}; start one (`rabbitmq-server -detached`) or set AMQP_URL"
        )
    if state is BrokerState.SILENT:
        raise BrokerUnavailable(
            f"the broker at {host}:{port} accepts connections but does not answer AMQP; restart it"
        )


def _startable(amqp_url: str) -> bool:
    return _address(amqp_url)[0] in LOOPBACK and shutil.which("rabbitmq-server") is not None


def ensure_local_broker(amqp_url: str, timeout: float = START_TIMEOUT_SECONDS) -> None:
    """Return once a broker answers at `amqp_url`, starting a local node when none listens."""
    if broker_state(amqp_url) is not BrokerState.UNREACHABLE or not _startable(amqp_url):
        require_broker(amqp_url)
        return
    print("starting RabbitMQ (rabbitmq-server -detached)", file=sys.stderr)
    subprocess.run(["rabbitmq-server", "-detached"], check=False, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while broker_state(amqp_url, answer_timeout=3) is not BrokerState.ANSWERS:
        if time.monotonic() > deadline:
            host, port = _address(amqp_url)
            raise BrokerUnavailable(
                f"RabbitMQ started but did not answer at {host}:{port} within {timeout:.0f} s"
            )
        time.sleep(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--installed", action="store_true", help="exit 0 if a broker answers or can be started"
    )
    args = parser.parse_args(argv)
    url = os.environ.get("AMQP_URL") or DEFAULT_URL
    if args.installed:
        startable = _startable(url) or _address(url)[0] not in LOOPBACK
        return 0 if startable or broker_state(url) is not BrokerState.UNREACHABLE else 1
    try:
        ensure_local_broker(url)
    except BrokerUnavailable as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
