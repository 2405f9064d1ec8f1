"""The rounds every keyed target writes a batch in: lookup, plan, one bulk write, refused rows again."""

from __future__ import annotations

from typing import Any, cast

import pytest

from services.executor.audience import BulkOutcome, MongoAudienceStore
from services.executor.importers.batch import Item, WriteOutcome
from services.executor.importers.rounds import RACE_ROUNDS, Found, KeyedRounds, KeyPattern, Planned
from shared.errors import RetryableError


class Store:
    """Refuses the first `refusals` inserts of each key named in `taken`, as a unique index refuses a key
    another writer inserted; a lookup finds the keys it refused."""

    def __init__(self, taken: set[str], refusals: int = 1) -> None:
        self.taken, self.refusals = taken, refusals
        self.lookups: list[list[str]] = []
        self.writes: list[list[str]] = []
        self.refused: dict[str, int] = {}

    async def find_by(self, collection: str, fields: Any, keys: list[tuple[str]], projection: Any) -> Found:
        self.lookups.append([k for (k,) in keys])
        return {(k,): {"k": k} for (k,) in keys if k in self.refused}

    async def bulk(self, collection: str, ops: list[str]) -> BulkOutcome:
        self.writes.append(list(ops))
        outcome = BulkOutcome()
        for index, key in enumerate(ops):
            if key in self.taken and self.refused.get(key, 0) < self.refusals:
                self.refused[key] = self.refused.get(key, 0) + 1
                outcome.duplicates.append((index, {"k": 1}))
        return outcome


class Keys(KeyedRounds[str]):
    """Each entry is a key, written as an insert of itself; a refused one goes round again."""

    def __init__(self, store: Store, *, guesses_new: bool = True) -> None:
        super().__init__(cast(MongoAudienceStore, store), "table_t", shown_as="t", guesses_new=guesses_new)

    async def _look_up(self, entries: list[str]) -> Found:
        return await self.store.find_by(self.collection, ("k",), [(e,) for e in entries], [])

    async def _plan(self, entries: list[str], found: Found, outcome: WriteOutcome) -> Planned[str]:
        planned: Planned[str] = Planned()
        for entry in entries:
            planned.add(entry, entry, ("update",) if (entry,) in found else ("insert",))
        return planned


class RejectingKeys(Keys):
    """A refused key belongs to another record: rejected, not written again (as a list sorts it out)."""

    async def _sort_out(self, refused: list[tuple[str, KeyPattern]], outcome: WriteOutcome) -> list[str]:
        for key, pattern in refused:
            outcome.reject(Item(0, 1, {"k": key}), ",".join(pattern), "taken")
        return []


def keys(count: int) -> list[str]:
    return [f"k{n}" for n in range(count)]


async def test_a_batch_of_new_keys_is_inserted_without_a_lookup_once_a_lookup_found_none() -> None:
    store = Store(taken=set())
    target = Keys(store)
    assert (await target.write(keys(3))).inserted == 3
    assert target.expect_new and len(store.lookups) == 1
    assert (await target.write(["k7"])).inserted == 1
    assert len(store.lookups) == 1  # no lookup for the second batch


async def test_refused_rows_go_round_again_after_a_lookup_and_count_as_what_it_finds() -> None:
    store = Store(taken={"k1"})
    target = Keys(store)
    target.expect_new = True  # the first round inserts outright
    outcome = await target.write(keys(3))
    assert (outcome.inserted, outcome.updated) == (2, 1)
    assert store.writes == [["k0", "k1", "k2"], ["k1"]]
    assert store.lookups == [["k1"]]
    assert not target.expect_new  # that lookup found its key


async def test_rows_that_keep_colliding_fail_the_attempt_after_the_last_round() -> None:
    store = Store(taken={"k0"}, refusals=RACE_ROUNDS)
    target = Keys(store)
    with pytest.raises(RetryableError) as failed:
        await target.write(["k0"])
    assert failed.value.message == "1 row(s) kept colliding with concurrent writers of t"
    assert len(store.writes) == len(store.lookups) == RACE_ROUNDS


async def test_a_batch_refused_for_more_than_a_tenth_turns_the_lookups_back_on() -> None:
    few, many = Store(taken={"k0"}), Store(taken={"k0", "k1"})
    for store, still_new in ((few, True), (many, False)):
        target = RejectingKeys(store)
        target.expect_new = True
        outcome = await target.write(keys(10))
        assert (outcome.inserted, len(outcome.rejections)) == (10 - len(store.taken), len(store.taken))
        assert store.lookups == []  # nothing went round again
        assert target.expect_new is still_new


async def test_a_target_that_may_not_take_keys_for_new_always_looks_them_up_first() -> None:
    store = Store(taken=set())
    target = Keys(store, guesses_new=False)
    target.expect_new = True
    assert (await target.write(["k0"])).inserted == 1
    assert len(store.lookups) == 1
