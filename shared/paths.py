"""Remote paths stay inside a connection's base directory and never contain `..` segments."""

from __future__ import annotations

import posixpath

from shared.errors import ValidationFailed


def has_parent_segment(path: str) -> bool:
    """True when `path` has a `..` segment (either slash counts: some servers read `\\` as one)."""
    return ".." in path.replace("\\", "/").split("/")


def resolve_inside(base_dir: str, path: str) -> str:
    """The absolute remote path of `path` under `base_dir`; refuses anything that escapes it.

    `..` is refused whatever the base (even `/`, where nothing can escape): a path that climbs is
    never what a job means, and the server may resolve it differently from us (symlinks).
    """
    base = posixpath.normpath("/" + base_dir.strip("/"))
    if "\x00" in path:
        raise ValidationFailed("path contains a NUL character", field="path")
    full = posixpath.normpath(posixpath.join(base, path.lstrip("/")))
    if full != base and not full.startswith(base.rstrip("/") + "/"):
        raise ValidationFailed(f"path '{path}' leaves the connection's base directory", field="path")
    if has_parent_segment(path):
        raise ValidationFailed(f"path '{path}' contains a '..' segment; give it without '..'", field="path")
    return full
