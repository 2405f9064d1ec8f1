"""Prometheus registry per service process, with the metrics every service shares."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from prometheus_client import CollectorRegistry, Info


def package_version() -> str:
    try:
        return version("audience-connect")
    except PackageNotFoundError:
        return "0+unknown"


def create_registry(service: str) -> CollectorRegistry:
    registry = CollectorRegistry()
    Info("connect_build", "Connect build information", registry=registry).info(
        {"version": package_version(), "service": service}
    )
    return registry
