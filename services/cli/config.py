"""Where the CLI finds the API: `connect login` stores it; CONNECT_API_URL / CONNECT_TOKEN override it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import typer

API_PATH = "/api/v1"


@dataclass(frozen=True)
class Login:
    api_url: str
    token: str


def config_path() -> Path:
    """`$XDG_CONFIG_HOME/connect/config.json` (usually ~/.config/connect/config.json)."""
    return Path(typer.get_app_dir("connect")) / "config.json"


def normalize_url(url: str) -> str:
    """`http://host:8000`, `http://host:8000/` and `http://host:8000/api/v1` all mean the same API."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise typer.BadParameter(f"'{url}' is not an http(s) URL")
    return url if url.endswith(API_PATH) else url + API_PATH


def save(login: Login, path: Path | None = None) -> Path:
    """Write the login readable by its owner only (0600, directory 0700)."""
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = json.dumps({"api_url": login.api_url, "token": login.token}, indent=2) + "\n"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(data)
    path.chmod(0o600)  # also when the file existed with a wider mode
    return path


def stored(path: Path | None = None) -> dict[str, str]:
    path = path or config_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc}") from exc
    return {key: str(value) for key, value in data.items() if isinstance(value, str)}


def remove(path: Path | None = None) -> bool:
    path = path or config_path()
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def current() -> Login:
    """The environment wins over the stored login, field by field."""
    saved = stored()
    url = os.environ.get("CONNECT_API_URL") or saved.get("api_url")
    token = os.environ.get("CONNECT_TOKEN") or saved.get("token")
    if not url or not token:
        raise NotLoggedIn()
    return Login(normalize_url(url), token)


class NotLoggedIn(Exception):
    def __str__(self) -> str:
        return "not logged in: run `connect login` (or set CONNECT_API_URL and CONNECT_TOKEN)"
