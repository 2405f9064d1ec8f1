"""Every collection is named in `shared/collections.py` only (issue #15): no service names one by a string of its own."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from shared import collections

ROOT = Path(__file__).resolve().parents[2]
# Where a collection is picked: `db[...]`, `db.get_collection(...)`, and the catalog repository's
# methods, whose first argument is the collection.
REPOSITORY_METHODS = {"insert", "find", "find_all", "update", "page", "get_collection"}
DATABASE = re.compile(r"(^|\.)(db|database|client|mongo)(\[[^\]]+\])?$")


def named_by_string(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, name) of every collection picked by a string literal in a module."""
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Subscript)
            and DATABASE.search(ast.unparse(node.value))
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, str)
        ):
            found.append((node.lineno, node.slice.value))
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in REPOSITORY_METHODS
            and ast.unparse(node.func.value).split(".")[-1] in {"repo", "db", "self"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def test_no_service_names_a_collection_by_a_string_of_its_own() -> None:
    strays = [
        f"{path.relative_to(ROOT)}:{line}: {name!r}"
        for base in ("services", "shared")
        for path in sorted((ROOT / base).rglob("*.py"))
        if path != ROOT / "shared" / "collections.py"
        for line, name in named_by_string(ast.parse(path.read_text()))
    ]
    assert strays == []


def test_the_check_finds_a_collection_named_by_a_string() -> None:
    source = 'db["runs"]\nclient[name]["run_leases"]\nrepo.insert("tokens", doc)\ndb.get_collection("runs")\n'
    assert named_by_string(ast.parse(source)) == [(1, "runs"), (2, "run_leases"), (3, "tokens"), (4, "runs")]


def test_each_database_names_each_collection_once() -> None:
    for owner in (collections.CatalogCollections, collections.SchedulerCollections,
                  collections.ExecutorCollections, collections.LogsinkCollections):  # fmt: skip
        names = [value for key, value in vars(owner).items() if key.isupper()]
        assert len(names) == len(set(names)), owner.__name__
