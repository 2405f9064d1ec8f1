"""Entry point of the embedded MongoDB-compatible server (SecantusDB) that `shared.mongo.EmbeddedMongo` starts.

    python -m shared.embedded_server TRANSACTION_LIFETIME_SECONDS [secantus options...]

What the daemon's command line cannot say:
- the idle transaction lifetime (`EMBEDDED_TRANSACTION_LIFETIME_SECONDS` in `shared/mongo.py`);
- `narrow_id_candidates`: SecantusDB 0.7.0b3 picks candidate documents (for reads and writes alike) by
  an index only when no top-level key of the filter is an operator: `{_id: v, $or: [...]}` scans the
  whole collection. A findAndModify that matched a document writes with `{_id: v, $and: [query]}` (the
  query re-asserted), so every matched findAndModify (a lease renewal, a take-over's claim, a table
  writer's lock) and every guarded update with an `$or` (the scheduler's allocation of a run) cost time
  proportional to the collection, and the database's CPU per run grew round after round as `run_leases`
  grew (docs/guarantees.md, "Embedded server: candidates by _id"). The patch hands the `_id` clause
  alone to the candidate picker. That only narrows the candidates: the storage applies the whole filter
  to every candidate it returns or writes (`Storage.find_matching`, `_update_matching_single_txn`:
  `matches`), so what matches is unchanged, and any document that matches carries that `_id`.
- `string_equality_implies_string_type`: its planner uses a partial index only for a query it can prove
  stays inside the index's filter, and it cannot prove that `{writing: "table_x"}` stays inside
  `{writing: {$type: "string"}}` (the table writer lock's unique index, `one_writer_per_table`): looking
  up a table's holder scanned `run_leases` (212 ms among 8,000 leases), once per try of a waiting run.
  A field equal to a string holds a string (or an array holding it, which `$type` matches too), so
  the document is in the index: the patch says so for that case alone.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _id_part(filter_: Any) -> dict[str, Any] | None:
    """`{_id: v}` of a filter that also holds a top-level operator (`$and`, `$or`, ...), else None (the picker
    sees the filter unchanged). Top-level clauses are all required, so what matches the filter has that `_id`."""
    if not isinstance(filter_, dict) or "_id" not in filter_ or len(filter_) < 2:
        return None
    if not any(isinstance(key, str) and key.startswith("$") for key in filter_):
        return None  # the picker rides the `_id` clause of such a filter itself
    return {"_id": filter_["_id"]}


def narrow_id_candidates(storage_class: Any) -> None:
    original = storage_class._try_index_id_keys

    @functools.wraps(original)
    def pick(self: Any, db: str, coll: str, filter_: dict[str, Any], **kwargs: Any) -> Any:
        by_id = _id_part(filter_)
        if by_id is not None:
            picked = original(self, db, coll, by_id, **kwargs)
            if picked is not None:  # None: `_id` is not a point value (an operator): the original decides
                return picked
        return original(self, db, coll, filter_, **kwargs)

    storage_class._try_index_id_keys = pick


def _string_value(clause: Any) -> bool:
    return isinstance(clause, str) or (
        isinstance(clause, dict) and set(clause) == {"$eq"} and isinstance(clause["$eq"], str)
    )


def string_equality_implies_string_type(storage_class: Any) -> None:
    """A query `{f: "a string"}` may use a partial index filtered by `{f: {$type: "string"}}`."""
    original = storage_class._query_implies_partial

    def implies(query: Any, partial: Any) -> bool:
        if original(query, partial):
            return True
        return all(
            key in query
            and (
                original({key: query[key]}, {key: wanted})
                or (wanted == {"$type": "string"} and _string_value(query[key]))
            )
            for key, wanted in partial.items()
        )

    storage_class._query_implies_partial = staticmethod(implies)


# Test aid: with this set to a file, the server appends "database<TAB>collection<TAB>documents read" to it for
# every full scan of a collection, so a test can prove which of Connect's queries ride an index.
SCAN_REPORT_ENV = "CONNECT_EMBEDDED_SCAN_REPORT"


def report_full_scans(storage_class: Any, report: Path) -> None:
    lock = threading.Lock()

    original = storage_class._scan_docs  # every full scan comes here (`_scan_docs_natural` too)

    @functools.wraps(original)
    def scan(self: Any, db: str, coll: str, *args: Any, **kwargs: Any) -> Iterator[Any]:
        rows = 0
        try:
            for row in original(self, db, coll, *args, **kwargs):
                rows += 1
                yield row
        finally:
            with lock, report.open("a") as out:
                out.write(f"{db}\t{coll}\t{rows}\n")

    storage_class._scan_docs = scan


def main(argv: list[str]) -> int:
    import secantus.cli as cli
    from secantus.storage import Storage

    lifetime = float(argv.pop(0))
    narrow_id_candidates(Storage)
    string_equality_implies_string_type(Storage)
    if report := os.environ.get(SCAN_REPORT_ENV):
        report_full_scans(Storage, Path(report))
    cli.SecantusDBServer = functools.partial(cli.SecantusDBServer, transaction_lifetime_seconds=lifetime)
    sys.argv = [sys.argv[0], *argv]
    return int(cli.main() or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
