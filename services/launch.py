"""Which app factory and port each service has (used by `connect serve` and `connect dev`)."""

from __future__ import annotations

from fastapi import FastAPI

from shared.settings import CommonSettings


def build_service_app(service: str, common: CommonSettings) -> FastAPI:
    if service == "catalog":
        from services.catalog.main import build_app as catalog

        return catalog(common)
    if service == "scheduler":
        from services.scheduler.main import build_app as scheduler

        return scheduler(common)
    if service == "executor":
        from services.executor.main import build_app as executor

        return executor(common)
    if service == "logsink":
        from services.logsink.main import build_app as logsink

        return logsink(common)
    raise ValueError(f"unknown service {service}")


def service_http_port(service: str) -> tuple[str, int]:
    from services.catalog.config import CatalogSettings
    from services.executor.config import ExecutorSettings
    from services.logsink.config import LogsinkSettings
    from services.scheduler.config import SchedulerSettings

    settings_class = {
        "catalog": CatalogSettings,
        "scheduler": SchedulerSettings,
        "executor": ExecutorSettings,
        "logsink": LogsinkSettings,
    }[service]
    settings = settings_class()
    return settings.http_host, settings.http_port
