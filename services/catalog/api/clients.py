"""Which client a request comes from, for rate limiting authentication failures."""

from __future__ import annotations

from fastapi import Request


def client_of(request: Request) -> str:
    """The peer address (behind a proxy, the proxy's: run uvicorn with --proxy-headers to see the client)."""
    return request.client.host if request.client else "unknown"
