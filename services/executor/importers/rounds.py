"""A batch written in rounds: the one way every keyed target writes (custom tables, profile extensions,
lists). A round is a lookup of the batch's keys, each row planned by the record it finds
(`changes.plan_item`), and one unordered bulk write. An insert a unique index refuses — another writer
inserted the key meanwhile, or the round took the key for new without a lookup — is sorted out by the
target and goes round again, `RACE_ROUNDS` times at most.

While the keys of a run are new (the last lookup found none of its batch's keys), a target whose
unique index would refuse a key that exists (`guesses_new`) inserts a batch without a lookup first; a
batch refused for more than a tenth turns the lookups back on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from services.executor.audience import MongoAudienceStore
from services.executor.importers.batch import WriteOutcome
from shared.errors import RetryableError

RACE_ROUNDS = 4  # a batch's rows that lost a race are looked up and written again, this many times at most

Entry = TypeVar("Entry")
Key = tuple[Any, ...]
Found = dict[Key, dict[str, Any]]  # the records a lookup found, by key
KeyPattern = dict[str, Any]  # the fields of the unique index that refused a write


@dataclass
class Planned(Generic[Entry]):
    """A round's bulk write: its operations, and for each the entry it writes and how its rows count."""

    ops: list[Any] = field(default_factory=list)
    writes: list[tuple[Entry, tuple[str, ...]]] = field(default_factory=list)

    def add(self, op: Any, entry: Entry, kinds: tuple[str, ...]) -> None:
        self.ops.append(op)
        self.writes.append((entry, kinds))


class KeyedRounds(ABC, Generic[Entry]):
    def __init__(self, store: MongoAudienceStore, collection: str, *, shown_as: str, guesses_new: bool):
        self.store = store
        self.collection = collection
        self.shown_as = shown_as  # what the error of a batch that keeps colliding calls the table
        self.guesses_new = guesses_new
        self.expect_new = False  # the last lookup found none of its keys: insert the next batch outright

    async def write(self, items: list[Entry]) -> WriteOutcome:
        outcome = WriteOutcome()
        for round_no in range(RACE_ROUNDS):
            look = round_no > 0 or not (self.guesses_new and self.expect_new)
            items = await self._round(items, outcome, look=look)
            if not items:
                return outcome
        raise RetryableError(f"{len(items)} row(s) kept colliding with concurrent writers of {self.shown_as}")

    async def _round(self, entries: list[Entry], outcome: WriteOutcome, *, look: bool) -> list[Entry]:
        """One lookup (unless `look` is off: every key taken for new) and one bulk write of the rows that
        change something; returns the entries to write again."""
        found: Found = {}
        if look:
            found = await self._look_up(entries)
            self.expect_new = not found
        planned = await self._plan(entries, found, outcome)
        result = await self.store.bulk(self.collection, planned.ops)
        refused_by = dict(result.duplicates)  # operation index: the index that refused it
        if not look and len(refused_by) * 10 > len(planned.ops):
            self.expect_new = False  # more than a tenth of the keys exist: look them up first again
        refused: list[tuple[Entry, KeyPattern]] = []
        for index, (entry, kinds) in enumerate(planned.writes):
            pattern = refused_by.get(index)
            if pattern is None:
                outcome.tally(kinds)
            else:
                refused.append((entry, pattern))
        return await self._sort_out(refused, outcome)

    @abstractmethod
    async def _look_up(self, entries: list[Entry]) -> Found:
        """The records the entries' keys find, with the fields `_plan` compares."""

    @abstractmethod
    async def _plan(self, entries: list[Entry], found: Found, outcome: WriteOutcome) -> Planned[Entry]:
        """The writes of the entries that change something; the others are tallied or rejected here."""

    async def _sort_out(self, refused: list[tuple[Entry, KeyPattern]], outcome: WriteOutcome) -> list[Entry]:
        """The refused entries to write again: all of them unless a target tells lost races from others."""
        return [entry for entry, _ in refused]
