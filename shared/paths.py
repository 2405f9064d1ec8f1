"""Remote paths stay inside a connection's base directory."""

from __future__ import annotations

import posixpath

from shared.errors import ValidationFailed


def resolve_inside(base_dir: str, path: str) -> str:
    """The absolute remote path of `path` under `base_dir`; refuses anything that escapes it."""
    base = posixpath.normpath("/" + base_dir.strip("/"))
    if "\x00" in path:
        raise ValidationFailed("path contains a NUL character", field="path")
    full = posixpath.normpath(posixpath.join(base, path.lstrip("/")))
    if full != base and not full.startswith(base.rstrip("/") + "/"):
        raise ValidationFailed(f"path '{path}' leaves the connection's base directory", field="path")
    return full
