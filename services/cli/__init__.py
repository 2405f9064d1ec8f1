"""The `connect` command: run a service or the whole system, administer it, and drive it through its API.

`connect login` stores the API URL and token (CONNECT_API_URL / CONNECT_TOKEN override them); then
`connect jobs|groups|runs …` work like the console's tabs, and `connect trigger` publishes a trigger.
"""

from __future__ import annotations

import asyncio
import warnings
from enum import StrEnum
from typing import Annotated, Any

import typer

from services.cli import config, groups, jobs, runs
from services.cli.client import ApiError, Client
from services.cli.common import fail
from services.cli.output import Format, OutputOption, emit_json
from services.cli.trigger import trigger

# cryptography 51 deprecates DSA and asyncssh still imports it (nothing of ours uses DSA keys): the
# warning would open every `connect dev` and service log. The same filter is in pytest's settings.
warnings.filterwarnings("ignore", message="DSA is deprecated")

app = typer.Typer(help="Connect: import and export audience data on schedules.", no_args_is_help=True)
admin = typer.Typer(help="Administration.", no_args_is_help=True)
app.add_typer(admin, name="admin")
admin_tokens = typer.Typer(help="API tokens: create, list, revoke (need MONGO_URL).", no_args_is_help=True)
admin.add_typer(admin_tokens, name="tokens")
app.add_typer(jobs.app, name="jobs")
app.add_typer(groups.app, name="groups")
app.add_typer(runs.app, name="runs")


class ServiceName(StrEnum):
    CATALOG = "catalog"
    SCHEDULER = "scheduler"
    EXECUTOR = "executor"
    LOGSINK = "logsink"


@app.command()
def serve(service: ServiceName) -> None:
    """Run one service (HTTP: /healthz, /readyz, /metrics; the catalog also /api/v1 and the console at /)."""
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
    from services.dev.demo import run_dev

    raise typer.Exit(run_dev(keep_data=keep_data))


@app.command()
def login(
    url: Annotated[str, typer.Option(prompt="API URL", help="e.g. http://127.0.0.1:8000 (or …/api/v1).")],
    token: Annotated[
        str, typer.Option(prompt="API token", hide_input=True, help="From `connect admin create-token`.")
    ],
    check: Annotated[bool, typer.Option(help="Check the token against the API first.")] = True,
    output: OutputOption = Format.TABLE,
) -> None:
    """Store the API URL and token in your config directory (file mode 0600)."""
    try:
        credentials = config.Login(config.normalize_url(url), token.strip())
    except typer.BadParameter as exc:
        raise fail(str(exc)) from None
    if check:
        api = Client(credentials)
        try:
            api.get("/jobs", limit=1)
        except ApiError as exc:
            raise fail(f"login refused: {exc}") from None
        finally:
            api.close()
    path = config.save(credentials)
    if output is Format.JSON:
        emit_json({"api_url": credentials.api_url, "config": str(path)})
    else:
        typer.echo(f"logged in to {credentials.api_url} (saved in {path})")


app.command("trigger")(trigger)


@app.command()
def logout() -> None:
    """Forget the stored API URL and token."""
    typer.echo("logged out" if config.remove() else "not logged in")


def _with_catalog(work: Any) -> Any:
    """Runs `work(service)` against the catalog database MONGO_URL names."""
    from services.catalog.adapters.repository import MongoCatalogRepository
    from services.catalog.service import CatalogService
    from shared.mongo import create_client
    from shared.settings import CommonSettings

    common = CommonSettings()
    if not common.mongo_url:
        raise typer.BadParameter("MONGO_URL is not set")

    async def run() -> Any:
        client = create_client(common.mongo_url or "")
        try:
            repo = MongoCatalogRepository(client, common.database("catalog"))
            return await work(CatalogService(repo, None, audience=None, probe=None))  # type: ignore[arg-type]
        finally:
            await client.close()

    return asyncio.run(run())


@admin_tokens.command("create")
def tokens_create(
    name: Annotated[str, typer.Option(help="Who the token is for (shown as 'By').")],
    role: Annotated[str, typer.Option(help="viewer, operator or admin")] = "viewer",
    expires_in_days: Annotated[int | None, typer.Option(min=1, help="Refused after this many days.")] = None,
) -> None:
    """Create an API token; it is printed once (stored hashed), its id on stderr."""
    from datetime import UTC, datetime, timedelta

    from services.catalog.domain import Role
    from shared.errors import ValidationFailed

    try:
        parsed = Role.parse(role)
    except ValidationFailed as exc:
        raise typer.BadParameter(exc.message, param_hint="--role") from None
    expires = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days else None
    token, stored = _with_catalog(
        lambda service: service.create_token(name, parsed, expires, "connect admin")
    )
    typer.echo(f"id {stored.token_id}", err=True)
    typer.echo(token)


@admin_tokens.command("list")
def tokens_list() -> None:
    """Every token: id, name, role, created, expires, last used, revoked."""

    async def page(service: Any) -> Any:
        return (await service.list_tokens(offset=0, limit=10_000))[0]

    for t in _with_catalog(page):
        when = [
            v.isoformat(timespec="seconds") if v else "-"
            for v in (t.created_at, t.expires_at, t.last_used_at)
        ]
        state = "revoked" if t.revoked_at else "active"
        typer.echo("\t".join([t.token_id, t.name, t.role.name.lower(), *when, state]))


@admin_tokens.command("revoke")
def tokens_revoke(token_id: Annotated[str, typer.Argument(help="The id from `tokens list`.")]) -> None:
    """Revoke a token: refused from now on (other replicas within their token cache time)."""
    from shared.errors import NotFound

    try:
        _with_catalog(lambda service: service.revoke_token(token_id, "connect admin"))
    except NotFound as exc:
        typer.echo(exc.message, err=True)
        raise typer.Exit(1) from None
    typer.echo(f"revoked {token_id}")


@admin.command("create-token")
def create_token(
    name: Annotated[str, typer.Option(help="Who the token is for (shown as 'By').")],
    role: Annotated[str, typer.Option(help="viewer, operator or admin")] = "viewer",
) -> None:
    """Create an API token (needs MONGO_URL); it is printed once and stored hashed (`tokens create` too)."""
    from services.catalog.adapters.repository import MongoCatalogRepository
    from services.catalog.domain import Role
    from services.catalog.service import issue_token
    from shared.errors import ValidationFailed
    from shared.mongo import create_client
    from shared.settings import CommonSettings

    common = CommonSettings()
    if not common.mongo_url:
        raise typer.BadParameter("MONGO_URL is not set")
    try:
        parsed = Role.parse(role)
    except ValidationFailed as exc:
        raise typer.BadParameter(exc.message, param_hint="--role") from None

    async def create() -> str:
        client = create_client(common.mongo_url or "")
        try:
            return await issue_token(MongoCatalogRepository(client, common.database("catalog")), name, parsed)
        finally:
            await client.close()

    typer.echo(asyncio.run(create()))


@admin.command("generate-key")
def generate_key() -> None:
    """Print a new CONNECT_SECRET_KEY: 32 random bytes, base64."""
    from shared.secrets import generate_key as new_key

    typer.echo(new_key())


@admin.command("rotate-secrets")
def rotate_secrets() -> None:
    """Re-encrypt every stored secret with the newest key (needs MONGO_URL); safe to re-run."""
    from services.catalog.adapters.secret_rotation import rotate_secrets as rotate
    from shared.mongo import create_client
    from shared.secrets import secret_box
    from shared.settings import CommonSettings

    common = CommonSettings()
    if not common.mongo_url:
        raise typer.BadParameter("MONGO_URL is not set")
    box = secret_box(common)

    async def run() -> list[str]:
        client = create_client(common.mongo_url or "")
        try:
            return (await rotate(client[common.database("catalog")], box)).lines()
        finally:
            await client.close()

    for line in asyncio.run(run()):
        typer.echo(line)
