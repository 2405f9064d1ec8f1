"""Which notifications a finished run (or group run) owes: pure rules, no I/O (issue #16).

A finished run's outcome labels are its status (succeeded, partial, failed, stopped, skipped), plus
`timed_out` for a failed run stopped by its `max_duration` (so a rule on `failed` hears about
timeouts too), plus `recovered` for a succeeded or partial run whose job's previous terminal,
non-dry-run, non-skipped run failed (timed out included; a skipped run — an empty file — says
nothing about the feed's health, so it is passed over). A rule matches when its `on` meets the labels; a
(rule, channel) pair is notified once, with the most specific matching label as its outcome
(`SPECIFICITY`). Dry runs never notify and are never "the previous run".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.catalog_records import NotificationRule, NotifyOn
from shared.contracts.runs import RunStatus, Trigger

# Most specific first: the outcome a notification names when several of a rule's labels match.
SPECIFICITY: tuple[NotifyOn, ...] = (
    NotifyOn.TIMED_OUT,
    NotifyOn.RECOVERED,
    NotifyOn.FAILED,
    NotifyOn.PARTIAL,
    NotifyOn.SUCCEEDED,
    NotifyOn.STOPPED,
    NotifyOn.SKIPPED,
)
_BY_STATUS = {
    RunStatus.SUCCEEDED: NotifyOn.SUCCEEDED,
    RunStatus.PARTIAL: NotifyOn.PARTIAL,
    RunStatus.FAILED: NotifyOn.FAILED,
    RunStatus.STOPPED: NotifyOn.STOPPED,
    RunStatus.SKIPPED: NotifyOn.SKIPPED,
}
RECOVERING = frozenset({RunStatus.SUCCEEDED, RunStatus.PARTIAL})


def notifies(trigger: str | None) -> bool:
    """A dry run reads and checks only: it never notifies (nor counts as a previous run)."""
    return trigger != Trigger.DRY_RUN.value


def may_recover(status: RunStatus, rules: Sequence[NotificationRule]) -> bool:
    """Whether the previous run is worth reading: only a success a rule on `recovered` could hear of."""
    return status in RECOVERING and any(NotifyOn.RECOVERED in rule.on for rule in rules)


def labels(
    status: RunStatus, *, timed_out: bool = False, previous: RunStatus | None = None
) -> frozenset[NotifyOn]:
    """The outcome labels of a finished run; `previous`: its job's previous terminal, non-dry run's status."""
    base = _BY_STATUS.get(status)
    if base is None:
        return frozenset()  # not terminal: nothing to tell
    found = {base}
    if status is RunStatus.FAILED and timed_out:
        found.add(NotifyOn.TIMED_OUT)
    if status in RECOVERING and previous is RunStatus.FAILED:
        found.add(NotifyOn.RECOVERED)
    return frozenset(found)


@dataclass(frozen=True)
class Due:
    """One notification owed: rule index, channel id and the outcome it names."""

    rule: int
    channel_id: int
    outcome: NotifyOn


def matches(rules: Sequence[NotificationRule], found: frozenset[NotifyOn]) -> list[Due]:
    """One per (rule, channel) whose rule's `on` meets the labels, named by the most specific label."""
    due: list[Due] = []
    for index, rule in enumerate(rules):
        hit = [label for label in SPECIFICITY if label in found and label in rule.on]
        if not hit:
            continue
        for channel_id in dict.fromkeys(rule.channels):  # a channel named twice in a rule: once
            due.append(Due(index, channel_id, hit[0]))
    return due


# --- retries ---------------------------------------------------------------------------------------


def backoff(attempts: int, base: float, cap: float) -> timedelta:
    """The wait before the next attempt after `attempts` failed ones: base, 2x base, 4x base ... up to cap."""
    return timedelta(seconds=min(base * 2 ** max(attempts - 1, 0), cap))


@dataclass(frozen=True)
class Next:
    """What follows a failed attempt: another at `retry_at`, or none (`retry_at` None: failed for good)."""

    attempts: int
    retry_at: datetime | None


def after_failure(
    attempts: int, *, transient: bool, now: datetime, budget: int, base: float, cap: float
) -> Next:
    """`attempts` counts the one that just failed; a permanent error, or the budget spent, gives up."""
    if not transient or attempts >= budget:
        return Next(attempts, None)
    return Next(attempts, now + backoff(attempts, base, cap))


def transient_http(status: int) -> bool:
    """Retried: 429 (slow down) and 5xx; any other 4xx means the request itself is refused."""
    return status == 429 or status >= 500
