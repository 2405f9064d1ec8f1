"""A private RabbitMQ node for tests that stop, kill or reconfigure a broker.

Never touch the shared broker at localhost:5672 in such tests: start one of these instead.

    from tests.support.rabbit_node import RabbitNode, rabbit_node

    with rabbit_node(tmp_path / "rabbit", consumer_timeout_ms=3000) as node:
        node.amqp_url        # "amqp://guest:guest@127.0.0.1:<port>/"
        node.stop()          # graceful stop (SIGTERM); connections are closed by the broker
        node.start()         # same data dir, node name and ports: durable queues and messages survive
        node.restart()       # stop() then start()
        node.kill()          # kill -9 of the whole node (no clean shutdown)
        node.ctl("list_queues", "name", "messages")   # rabbitmqctl against this node, stdout

`RabbitNode(workdir, ...)` is the same without the context manager (call `start()` and `stop()` yourself).
Parameters: `consumer_timeout_ms` (RabbitMQ's delivery acknowledgement timeout; the channel tick that enforces
it is lowered to `tick_ms` so that timeouts of a few seconds work), `config` (more `rabbitmq.conf` lines as
key → value). The node runs with no plugins, listens on 127.0.0.1 only, and keeps mnesia, logs and its Erlang
cookie under `workdir`; the guest user works from localhost. Start-up takes a few seconds (it waits until
the node answers the AMQP handshake).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

from shared.children import end_with_parent
from shared.mongo import free_port

RABBIT_SBIN = Path("/usr/lib/rabbitmq/bin")  # the scripts themselves, not /usr/sbin's `su rabbitmq` wrappers
AMQP_HEADER = b"AMQP\x00\x00\x09\x01"


class RabbitNode:
    """One RabbitMQ node in its own directory, on its own AMQP and distribution ports."""

    def __init__(
        self,
        workdir: Path,
        *,
        consumer_timeout_ms: int | None = None,
        tick_ms: int = 1000,
        config: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.dist_port = free_port()
        self.nodename = f"connecttest-{uuid.uuid4().hex[:8]}@localhost"
        self.amqp_url = f"amqp://guest:guest@127.0.0.1:{self.port}/"
        self._process: subprocess.Popen[bytes] | None = None
        self._starts = 0
        self._write_config(consumer_timeout_ms, tick_ms, dict(config or {}))

    def _write_config(self, consumer_timeout_ms: int | None, tick_ms: int, extra: dict[str, str]) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        lines = {"loopback_users.guest": "true", "log.console": "false", "log.file.level": "info", **extra}
        if consumer_timeout_ms is not None:
            lines["consumer_timeout"] = str(consumer_timeout_ms)
        (self.workdir / "rabbitmq.conf").write_text("".join(f"{k} = {v}\n" for k, v in lines.items()))
        # The consumer timeout is only checked on the channel tick (60 s by default).
        (self.workdir / "advanced.config").write_text(
            f"[{{rabbit, [{{channel_tick_interval, {tick_ms}}}]}}].\n"
        )
        (self.workdir / "enabled_plugins").write_text("[].\n")

    def _env(self) -> dict[str, str]:
        w = self.workdir
        return {
            **os.environ,
            "HOME": str(w),  # the Erlang cookie lives here, shared by the node and ctl()
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(w / "mnesia"),
            "RABBITMQ_LOG_BASE": str(w / "log"),
            "RABBITMQ_PID_FILE": str(w / "rabbit.pid"),
            "RABBITMQ_CONFIG_FILE": str(w / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(w / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(w / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(w / "rabbitmq-env.conf"),  # none: ignore /etc/rabbitmq's
        }

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 90.0) -> None:
        """Start the node (or start it again after stop/kill) and wait until it accepts AMQP connections."""
        if self.running:
            raise RuntimeError("the node is already running")
        self._starts += 1
        out = (self.workdir / f"stdout-{self._starts}.log").open("wb")
        self._process = subprocess.Popen(
            [str(RABBIT_SBIN / "rabbitmq-server")],
            env=self._env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill() reaches the VM and its helpers
            preexec_fn=end_with_parent,
        )
        out.close()
        self._wait_for_amqp(timeout)

    def _wait_for_amqp(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"RabbitMQ node exited at start-up; see {self.workdir}/log")
            if _answers_amqp(self.port):
                return
            time.sleep(0.2)  # polling a port that is not open yet: nothing to wait on
        raise RuntimeError(f"RabbitMQ node not ready within {timeout}s; see {self.workdir}/log")

    def stop(self, timeout: float = 60.0) -> None:
        """Graceful stop: the broker closes its connections and keeps durable queues and messages."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return
        self._reap_group()
        self._process = None

    def kill(self) -> None:
        """kill -9 of the node's whole process group: no clean shutdown, connections just drop."""
        if self._process is None:
            return
        self._reap_group()
        self._process.wait(timeout=30)
        self._process = None

    def _reap_group(self) -> None:
        assert self._process is not None
        with suppress(ProcessLookupError):  # already gone
            os.killpg(self._process.pid, signal.SIGKILL)

    def restart(self, timeout: float = 90.0) -> None:
        self.stop()
        self.start(timeout)

    def ctl(self, *args: str, timeout: float = 60.0) -> str:
        """`rabbitmqctl -n <this node> ARGS...`; its stdout (raises on a non-zero exit)."""
        result = subprocess.run(
            [str(RABBIT_SBIN / "rabbitmqctl"), "-n", self.nodename, "-q", *args],
            env=self._env(),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {result.stderr.decode(errors='replace')}")
        return result.stdout.decode()


def _answers_amqp(port: int) -> bool:
    """True when the port answers the AMQP 0-9-1 header with a method frame (Connection.Start)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(AMQP_HEADER)
            return sock.recv(1) == b"\x01"
    except OSError:
        return False


@contextmanager
def rabbit_node(
    workdir: Path,
    *,
    consumer_timeout_ms: int | None = None,
    tick_ms: int = 1000,
    config: Mapping[str, str] | None = None,
) -> Iterator[RabbitNode]:
    """A started private node, killed at the end whatever state the test left it in."""
    node = RabbitNode(workdir, consumer_timeout_ms=consumer_timeout_ms, tick_ms=tick_ms, config=config)
    node.start()
    try:
        yield node
    finally:
        node.kill()
