"""The audit trail's rules (issue #19): a diff of the changed fields only, secrets redacted by field name."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.catalog.domain.audit import REDACTED, diff, entry

AT = datetime(2026, 12, 7, tzinfo=UTC)


def test_only_changed_fields_are_listed_dotted() -> None:
    before = {"name": "a", "spec": {"source": {"path": "x.csv", "connection_id": 1}}, "version": 1}
    after = {"name": "a", "spec": {"source": {"path": "y.csv", "connection_id": 1}}, "version": 2}
    assert diff(before, after) == {
        "spec.source.path": {"before": "x.csv", "after": "y.csv"},
        "version": {"before": 1, "after": 2},
    }


@pytest.mark.parametrize(
    "field",
    ["password", "password_encrypted", "private_key_encrypted", "passphrase", "token", "signing_secret"],
)
def test_a_secret_field_never_shows_its_value(field: str) -> None:
    changes = diff({field: "old-secret"}, {field: "new-secret", "nested": {field: "deep-secret"}})
    assert "secret" not in repr(changes).replace("signing_secret", "")
    assert changes[field.removesuffix("_encrypted")] == {"before": REDACTED, "after": REDACTED}


def test_an_entry_takes_versions_and_redacts_its_detail() -> None:
    made = entry(at=AT, actor="ops", kind="job", item_id=3, action="updated",
                 before={"version": 1}, after={"version": 2}, detail={"token": "cnt_x"})  # fmt: skip
    assert (made.item_id, made.before_version, made.after_version) == ("3", 1, 2)
    assert made.detail == {"token": REDACTED}
    with pytest.raises(ValueError):
        entry(at=AT, actor="ops", kind="jobz", item_id=3, action="created")


values = st.recursive(
    st.none() | st.integers() | st.text(max_size=5),
    lambda inner: st.dictionaries(
        st.sampled_from(["a", "b", "password", "token_encrypted"]), inner, max_size=3
    ),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None)
@given(before=st.dictionaries(st.sampled_from(["a", "b", "password"]), values, max_size=3),
       after=st.dictionaries(st.sampled_from(["a", "b", "password"]), values, max_size=3))  # fmt: skip
def test_no_diff_between_equal_records_and_never_a_secret_value(
    before: dict[str, Any], after: dict[str, Any]
) -> None:
    assert diff(before, before) == {}
    changes = diff(before, after)
    for name, change in changes.items():
        if {"password", "token"} & set(name.split(".")):  # a secret's change shows no value
            assert {value for value in change.values() if value is not None} <= {REDACTED}
    assert (changes == {}) == (before == after)  # a changed secret is listed, its value not
