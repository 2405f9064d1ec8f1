"""What the occurrences of one key in a batch do to the record they find: how each counts, and whether
the record needs a write at all. Pure rules, no I/O.

A row that matches a record this run has not changed yet, and whose values the record already holds,
is `unchanged` and not written: a re-import of a mostly unchanged file writes only what changed.

The run mark (`_cx_run`) a write stores is `<attempt tag>@<file>:<line>`: the attempt that last wrote
the record and where in the source the run first changed it. A take-over reads it to count as the
uninterrupted run would, though the earlier attempt's write hid the record's values from before the run:
a row before that position found the record as it was (unchanged), the row at it changed it (updated),
and a position the checkpoint covers was counted already (later rows are repeats of the key).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from services.executor.audience import RUN_TAG

if TYPE_CHECKING:
    from services.executor.importers.batch import Item

Position = tuple[int, int]  # (file, line) in the source
_MISSING = object()


@dataclass(frozen=True)
class Mark:
    """A record's `_cx_run`: the attempt that last wrote it and where its run first changed it."""

    tag: str | None
    changed_at: Position | None = None

    @property
    def run(self) -> str | None:
        return None if self.tag is None else run_of(self.tag)

    def text(self) -> str:
        at = "" if self.changed_at is None else f"@{self.changed_at[0]}:{self.changed_at[1]}"
        return f"{self.tag}{at}"

    @classmethod
    def of(cls, value: Any) -> Mark:
        if not isinstance(value, str):
            return cls(None)
        tag, sep, at = value.rpartition("@")
        file, _, line = at.partition(":")
        if not sep or not file.isdigit() or not line.isdigit():
            return cls(value)  # written before marks carried a position
        return cls(tag, (int(file), int(line)))


def run_of(tag: str) -> str:
    """The run id of an attempt tag (`<run id>#<attempt>`)."""
    return tag.partition("#")[0]


def born_in(doc_id: Any, tag: str) -> Position | None:
    """Where this run inserted the record (file, line), if it did (`_id` = `<run id>:<file>:<line>`)."""
    prefix = f"{run_of(tag)}:"
    if not isinstance(doc_id, str) or not doc_id.startswith(prefix):
        return None
    file, _, line = doc_id[len(prefix) :].partition(":")
    return (int(file), int(line)) if file.isdigit() and line.isdigit() else None


def classify(doc: dict[str, Any] | None, tag: str, position: Position, *, update_existing: bool,
             redo_after: Position, same: bool) -> str:  # fmt: skip
    """How the row at `position` counts that found `doc` by its key, this attempt not having written it
    yet in this batch (`same`: the record holds the row's values already)."""
    if doc is None:
        return "insert"
    mark = Mark.of(doc.get(RUN_TAG))
    if mark.tag == tag:
        return "duplicate"
    born = born_in(doc.get("_id"), tag)
    if born is not None:  # inserted by an earlier attempt of this run (taken over, or retried)
        # Before the checkpoint it was counted, so this is a later occurrence; after it, the attempt that
        # wrote it ended uncounted: this is that insert again (the counts of an uninterrupted run).
        return "insert" if born > redo_after else "duplicate"
    if not update_existing:
        return "unchanged"
    if mark.run == run_of(tag):  # changed by an earlier attempt of this run
        if mark.changed_at is None:
            return "update"
        if mark.changed_at <= redo_after:
            return "duplicate"
        return "unchanged" if position < mark.changed_at else "update"
    return "unchanged" if same else "update"


@dataclass(frozen=True)
class Plan:
    kinds: tuple[str, ...]  # how each occurrence counts, in file order
    write: bool
    mark: str = ""  # the `_cx_run` the write stores


def plan_item(doc: dict[str, Any] | None, item: Item, tag: str, *, update_existing: bool, redo_after: Position,
              same: Callable[[dict[str, Any]], bool]) -> Plan:  # fmt: skip
    """Each occurrence of the item's key (earlier ones folded into it) in order: those that leave the
    record as it is are `unchanged`; after the first that changes it, the record is this attempt's own.
    `same(row)`: the record as found holds the row's values."""
    occurrences = (*item.earlier, item)
    kinds: list[str] = []
    for occ in occurrences:
        if kinds and kinds[-1] != "unchanged":
            kinds.append("duplicate")
            continue
        found_same = doc is not None and same(occ.row)
        kinds.append(classify(doc, tag, (occ.file, occ.line), update_existing=update_existing,
                              redo_after=redo_after, same=found_same))  # fmt: skip
    changing = next((i for i, kind in enumerate(kinds) if kind != "unchanged"), None)
    if changing is None:
        return Plan(tuple(kinds), write=False)
    mark = Mark.of(None if doc is None else doc.get(RUN_TAG))
    first = occurrences[changing]
    at = mark.changed_at if mark.run == run_of(tag) and mark.changed_at else (first.file, first.line)
    write = kinds[changing] != "duplicate" or doc is None or not same(item.row)
    return Plan(tuple(kinds), write, Mark(tag, at).text())


def leaves_as_is(doc: dict[str, Any], values: dict[str, Any], cleared: Sequence[str]) -> bool:
    """True when setting `values` and clearing the `cleared` fields they leave out would not change `doc`
    (which must hold every field of `values` and `cleared` that it has: the lookup projects them)."""
    if any(not _same(doc.get(name, _MISSING), value) for name, value in values.items()):
        return False
    return all(name in values or name not in doc for name in cleared)


def _same(stored: Any, value: Any) -> bool:
    """The value as the database would store it equals `stored` (booleans are not numbers here)."""
    if isinstance(value, datetime):  # BSON: a UTC instant in milliseconds (a naive value is UTC)
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        value = value.replace(microsecond=value.microsecond // 1000 * 1000)
    if isinstance(stored, bool) or isinstance(value, bool):
        return isinstance(stored, bool) and isinstance(value, bool) and stored == value
    if isinstance(stored, float) != isinstance(value, float) or stored is _MISSING:
        return False
    return bool(stored == value)
