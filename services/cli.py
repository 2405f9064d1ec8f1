"""The `connect` command: run a service, the whole system for development, or admin tasks."""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import Annotated

import typer

app = typer.Typer(help="Connect: import and export audience data on schedules.", no_args_is_help=True)
admin = typer.Typer(help="Administration.", no_args_is_help=True)
app.add_typer(admin, name="admin")


class ServiceName(StrEnum):
    CATALOG = "catalog"
    SCHEDULER = "scheduler"
    EXECUTOR = "executor"
    LOGSINK = "logsink"


@app.command()
def serve(service: ServiceName) -> None:
    """Run one service (HTTP: /healthz, /readyz, /metrics; the catalog also /api/v1)."""
    import uvicorn

    from services.launch import build_service_app, service_http_port
    from shared.logging import configure_logging
    from shared.settings import CommonSettings

    common = CommonSettings()
    configure_logging(service.value, common.log_level)
    host, port = service_http_port(service.value)
    uvicorn.run(
        build_service_app(service.value, common),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(common.graceful_timeout),
    )


@app.command()
def dev(
    keep_data: Annotated[bool, typer.Option(help="Keep ./var/dev from the previous run.")] = False,
) -> None:
    """Start the whole system with demo data: database, SFTP server, the four services."""
    from services.dev import run_dev

    raise typer.Exit(run_dev(keep_data=keep_data))


@admin.command("create-token")
def create_token(
    name: Annotated[str, typer.Option(help="Who the token is for (shown as 'By').")],
    role: Annotated[str, typer.Option(help="viewer, operator or admin")] = "viewer",
) -> None:
    """Create an API token (needs MONGO_URL); it is printed once and stored hashed."""
    from services.catalog.domain import Role
    from services.catalog.repository import MongoCatalogRepository
    from services.catalog.service import issue_token
    from shared.mongo import create_client
    from shared.settings import CommonSettings

    common = CommonSettings()
    if not common.mongo_url:
        raise typer.BadParameter("MONGO_URL is not set")

    async def create() -> str:
        client = create_client(common.mongo_url or "")
        try:
            return await issue_token(
                MongoCatalogRepository(client, common.database("catalog")), name, Role.parse(role)
            )
        finally:
            await client.close()

    typer.echo(asyncio.run(create()))
