"""Token refusal (expired, revoked), last-use resolution and the per-client failure limiter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.catalog.domain import FailureLimiter, Role, StoredToken, last_used_is_stale

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_token_is_refused_when_revoked_or_expired() -> None:
    token = StoredToken("h", "ci", Role.VIEWER, T0, expires_at=T0 + timedelta(days=1))
    assert token.refusal(T0) is None
    assert token.refusal(T0 + timedelta(days=1)) == "expired"
    assert StoredToken("h", "ci", Role.VIEWER, T0, revoked_at=T0).refusal(T0) == "revoked"


def test_last_use_is_written_at_most_once_a_minute() -> None:
    assert last_used_is_stale(None, T0)
    assert not last_used_is_stale(T0, T0 + timedelta(seconds=59))
    assert last_used_is_stale(T0, T0 + timedelta(seconds=60))


def test_limit_failures_block_a_client_until_the_oldest_leaves_the_window() -> None:
    limiter = FailureLimiter(limit=3, window=60.0)
    for at in (0.0, 10.0, 20.0):
        assert limiter.retry_after("a", at) is None
        limiter.record("a", at)
    assert limiter.retry_after("a", 30.0) == 30.0  # the failure at 0 leaves at 60
    assert limiter.retry_after("b", 30.0) is None  # other clients are not affected
    assert limiter.retry_after("a", 60.0) is None
