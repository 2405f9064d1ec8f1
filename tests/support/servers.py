"""Real servers for tests: MongoDB (env, testcontainers or the embedded server), RabbitMQ, OpenSSH sshd."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from services.dev.broker import require_broker
from shared.children import end_with_parent
from shared.mongo import EmbeddedMongo, free_port

__all__ = ["require_broker"]  # the broker check lives with `make test`'s broker start, re-exported here

SSHD = "/usr/sbin/sshd"


def docker_engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextmanager
def mongo_server(tmp: Path) -> Iterator[str]:
    """MONGO_URL when set; else a MongoDB container when a Docker engine answers; else the embedded server."""
    if url := os.environ.get("MONGO_URL"):
        yield url
        return
    if docker_engine_answers():
        from testcontainers.mongodb import MongoDbContainer

        with MongoDbContainer("mongo:7") as container:
            yield container.get_connection_url()
        return
    server = EmbeddedMongo(tmp / "mongo")
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


@dataclass(frozen=True)
class Sshd:
    host: str
    port: int
    username: str
    private_key: str  # OpenSSH format, for the connection under test
    host_key: str  # the server's public host key, to pin
    other_host_key: str  # a different key: pinning it must fail verification
    root: Path  # the connection's base directory


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@contextmanager
def sshd_server(workdir: Path) -> Iterator[Sshd]:
    """OpenSSH's sshd on a loopback port with generated host and user keys (key authentication)."""
    if not Path(SSHD).exists():
        raise RuntimeError("sshd is not installed: apt-get install openssh-server (make test does it)")
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("host_key", "user_key", "other_host_key"):
        _keygen(workdir / name)
    shutil.copy(workdir / "user_key.pub", workdir / "authorized_keys")
    root = workdir / "files"
    root.mkdir()
    port = free_port()
    config = workdir / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {workdir / 'host_key'}\nPidFile {workdir / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {workdir / 'authorized_keys'}\nPubkeyAuthentication yes\nPasswordAuthentication no\n"
        "PermitRootLogin yes\nStrictModes no\nUsePAM no\nSubsystem sftp internal-sftp\nLogLevel ERROR\n"
    )
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation directory
    log = (workdir / "sshd.log").open("wb")
    process = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=end_with_parent,
    )
    try:
        _wait_for_port(port, process)
        yield Sshd(
            host="127.0.0.1",
            port=port,
            username=getpass.getuser(),
            private_key=(workdir / "user_key").read_text(),
            host_key=(workdir / "host_key.pub").read_text().strip(),
            other_host_key=(workdir / "other_host_key.pub").read_text().strip(),
            root=root,
        )
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("sshd exited at start-up")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"sshd did not listen on port {port}")
