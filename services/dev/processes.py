"""The four services as separate OS processes (dev mode and end-to-end tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.children import end_with_parent
from shared.mongo import free_port

SERVICES = ("catalog", "scheduler", "executor", "logsink")


@dataclass
class ServiceProcess:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class SystemProcesses:
    """Starts `connect serve <service>` for each service with a shared environment."""

    env: dict[str, str]
    log_dir: Path
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    def start(
        self, name: str, *, instance: str = "", extra_env: dict[str, str] | None = None
    ) -> ServiceProcess:
        key = f"{name}{instance}"
        port = free_port()
        env = {**os.environ, **self.env, **(extra_env or {}), f"{name.upper()}_HTTP_PORT": str(port)}
        env[f"{name.upper()}_HTTP_HOST"] = "127.0.0.1"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{key}.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [str(Path(sys.executable).parent / "connect"), "serve", name],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=end_with_parent,
            )  # fmt: skip
        self.processes[key] = ServiceProcess(name, port, process, log_path)
        return self.processes[key]

    def start_all(self) -> None:
        for name in SERVICES:
            self.start(name)

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        for key, service in self.processes.items():
            while True:
                if service.process.poll() is not None:
                    raise RuntimeError(f"{key} exited at start-up:\n{tail(service.log_path)}")
                try:
                    if httpx.get(f"{service.url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{key} not ready within {timeout}s:\n{tail(service.log_path)}")
                time.sleep(0.2)

    def terminate(self, key: str, timeout: float = 60.0) -> int:
        """SIGTERM, as an orchestrator stops a service; returns its exit code."""
        service = self.processes.pop(key)
        service.process.send_signal(signal.SIGTERM)
        return service.process.wait(timeout=timeout)

    def kill(self, key: str) -> None:
        """SIGKILL: the crash a service must survive."""
        service = self.processes.pop(key)
        service.process.kill()
        service.process.wait()

    def stop(self, timeout: float = 40.0) -> None:
        for service in self.processes.values():
            if service.process.poll() is None:
                service.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for service in self.processes.values():
            try:
                service.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.wait()
        self.processes.clear()


def tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
