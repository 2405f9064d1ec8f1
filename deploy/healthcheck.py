#!/usr/bin/env python3
"""Container health check for the Connect image: GET http://127.0.0.1:<port>/healthz.

Which service to check, first match wins:
  1. the first command-line argument (``connect-healthcheck executor``),
  2. the ``CONNECT_SERVICE`` environment variable,
  3. the ``serve <service>`` arguments of PID 1 (the container's main process),
  4. ``catalog``.
The port is ``<SERVICE>_HTTP_PORT`` when set, else the service's default port.
Exit status 0 means healthy, 1 unhealthy. Standard library only.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_PORTS = {"catalog": 8000, "scheduler": 8001, "executor": 8002, "logsink": 8003}


def service_from_cmdline(cmdline: bytes) -> str | None:
    """The <service> of a NUL-separated `... connect serve <service>` command line."""
    words = [a.decode(errors="replace") for a in cmdline.split(b"\0") if a]
    for i, word in enumerate(words[:-1]):
        if word == "serve" and words[i + 1] in DEFAULT_PORTS:
            return words[i + 1]
    return None


def service_from_pid1() -> str | None:
    try:
        return service_from_cmdline(Path("/proc/1/cmdline").read_bytes())
    except OSError:
        return None


def main(argv: list[str]) -> int:
    service = (argv[1] if len(argv) > 1 else None) or os.environ.get("CONNECT_SERVICE") or service_from_pid1()
    service = (service or "catalog").lower()
    if service not in DEFAULT_PORTS:
        print(f"unknown service {service!r}", file=sys.stderr)
        return 1
    port = int(os.environ.get(f"{service.upper()}_HTTP_PORT") or DEFAULT_PORTS[service])
    timeout = float(os.environ.get("CONNECT_HEALTHCHECK_TIMEOUT", "4"))
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            healthy = 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"{service}: {url}: {exc}", file=sys.stderr)
        return 1
    if not healthy:
        print(f"{service}: {url}: HTTP {response.status}", file=sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
