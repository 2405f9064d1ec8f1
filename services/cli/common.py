"""What every API command shares: the client, error handling and reading job/group files."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import typer
from rich.markup import escape

from services.cli.client import ApiError, Client
from services.cli.config import NotLoggedIn
from services.cli.output import errors

P = ParamSpec("P")
R = TypeVar("R")

EXIT_ERROR = 1  # the API refused, or could not be reached


def fail(message: str, code: int = EXIT_ERROR) -> typer.Exit:
    errors.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False)
    return typer.Exit(code)


def api_command(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn API and login errors into clear lines on stderr (one per problem) and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ApiError as exc:
            raise fail(str(exc)) from None
        except NotLoggedIn as exc:
            raise fail(str(exc)) from None

    return wrapper


@contextmanager
def client() -> Iterator[Client]:
    api = Client()
    try:
        yield api
    finally:
        api.close()


def load_document(path: Path) -> dict[str, Any]:
    """A job or group as YAML or JSON (`-` reads standard input)."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror}") from exc
    return parse_document(text, str(path))


def parse_document(text: str, path: str) -> dict[str, Any]:
    try:
        import yaml

        data = yaml.safe_load(text)
    except ImportError:  # JSON is YAML too; without PyYAML only JSON files are read
        data = json.loads(text)
    except Exception as exc:
        raise typer.BadParameter(f"{path} is not valid YAML or JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise typer.BadParameter(f"{path} must hold a mapping (name, spec, schedule, …)")
    return data


def dump_document(data: dict[str, Any]) -> str:
    try:
        import yaml

        return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    except ImportError:
        return json.dumps(data, indent=2)


def confirm(what: str, yes: bool) -> None:
    if not yes and not typer.confirm(what, default=False):
        raise typer.Exit(EXIT_ERROR)
