"""Group rules without a database: members and Run now (the guide's Groups tab)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.catalog.domain import StoredGroup, check_group_run_now, check_members
from services.catalog.errors import RunRefused
from shared.errors import Conflict, NotFound

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def group(**changes: object) -> StoredGroup:
    fields = {"_id": 4, "name": "morning", "job_ids": (1, 2), "created_at": NOW, "created_by": "ann"}
    return StoredGroup.model_validate(fields | changes)


def test_members_may_be_free_jobs_or_already_this_groups() -> None:
    check_members(4, [1, 2, 3], {1: None, 2: 4, 3: None})


@pytest.mark.parametrize(
    ("job_ids", "existing", "error", "words"),
    [
        ([1, 1], {1: None}, Conflict, "twice"),
        ([1, 7, 9], {1: None}, NotFound, "job(s) 7, 9 do not exist"),
        ([1, 2], {1: None, 2: 5}, Conflict, "job(s) 2 already belong to another group"),
    ],
    ids=["twice", "missing", "another-group"],
)
def test_members_are_refused_naming_the_jobs(
    job_ids: list[int], existing: dict[int, int | None], error: type[Exception], words: str
) -> None:
    with pytest.raises(error) as refused:
        check_members(4, job_ids, existing)
    assert words in str(refused.value) and getattr(refused.value, "field", None) == "job_ids"


def test_run_now_is_refused_for_an_inactive_or_expired_group_only() -> None:
    check_group_run_now(group(), NOW)
    check_group_run_now(group(expires_at=NOW + timedelta(minutes=1)), NOW)
    with pytest.raises(RunRefused, match="inactive"):
        check_group_run_now(group(active=False), NOW)
    with pytest.raises(RunRefused, match="expired"):
        check_group_run_now(group(expires_at=NOW - timedelta(minutes=1)), NOW)
