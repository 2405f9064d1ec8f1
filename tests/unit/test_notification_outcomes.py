"""Which notifications a finished run owes (services/logsink/outcomes.py), against a reference model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.logsink import messages, outcomes
from services.logsink.outcomes import Due
from shared.catalog_records import NotificationRule, NotifyOn
from shared.contracts.runs import RunStatus
from tests.conftest import examples

S, F, P, X = RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.PARTIAL, RunStatus.STOPPED
T0 = datetime(2026, 5, 1, tzinfo=UTC)


def rule(*on: str, channels: tuple[int, ...] = (1,)) -> NotificationRule:
    return NotificationRule.model_validate({"on": on, "channels": channels})


def test_a_timeout_is_failed_and_timed_out_so_a_rule_on_failed_hears_of_it() -> None:
    found = outcomes.labels(F, timed_out=True)
    assert found == {NotifyOn.FAILED, NotifyOn.TIMED_OUT}
    assert outcomes.matches([rule("failed")], found) == [Due(0, 1, NotifyOn.FAILED)]
    # both match: one notification, named by the more specific label
    assert outcomes.matches([rule("failed", "timed_out")], found) == [Due(0, 1, NotifyOn.TIMED_OUT)]


def test_recovered_is_a_success_after_a_failure_only() -> None:
    assert outcomes.labels(S, previous=F) == {NotifyOn.SUCCEEDED, NotifyOn.RECOVERED}
    assert outcomes.labels(P, previous=F) == {NotifyOn.PARTIAL, NotifyOn.RECOVERED}
    assert outcomes.labels(S, previous=S) == {NotifyOn.SUCCEEDED}
    assert outcomes.labels(S, previous=X) == {NotifyOn.SUCCEEDED}  # stopped is no failure
    assert outcomes.labels(S) == {NotifyOn.SUCCEEDED}  # the first run
    assert outcomes.labels(F, previous=F) == {NotifyOn.FAILED}
    assert outcomes.matches([rule("succeeded", "recovered")], outcomes.labels(S, previous=F)) == [
        Due(0, 1, NotifyOn.RECOVERED)
    ]


def test_a_run_not_ended_and_a_rule_not_listening_owe_nothing() -> None:
    assert outcomes.labels(RunStatus.RUNNING) == frozenset()
    assert outcomes.matches([rule("failed")], outcomes.labels(S)) == []


def test_dry_runs_never_notify() -> None:
    assert not outcomes.notifies("dry_run")
    assert outcomes.notifies("group") and outcomes.notifies("scheduled") and outcomes.notifies(None)


def test_the_previous_run_is_read_only_when_recovered_could_match() -> None:
    assert outcomes.may_recover(S, [rule("failed"), rule("recovered")])
    assert not outcomes.may_recover(S, [rule("failed", "succeeded")])
    assert not outcomes.may_recover(F, [rule("recovered")])


def test_retries_back_off_then_give_up() -> None:
    waits = [outcomes.backoff(n, 10, 3600).total_seconds() for n in range(1, 10)]
    assert waits == [10, 20, 40, 80, 160, 320, 640, 1280, 2560]
    assert outcomes.backoff(20, 10, 3600) == timedelta(hours=1)
    again = outcomes.after_failure(2, transient=True, now=T0, budget=6, base=1, cap=60)
    assert again == outcomes.Next(2, T0 + timedelta(seconds=2))
    assert outcomes.after_failure(6, transient=True, now=T0, budget=6, base=1, cap=60).retry_at is None
    assert outcomes.after_failure(1, transient=False, now=T0, budget=6, base=1, cap=60).retry_at is None
    assert [s for s in (400, 401, 404, 410, 422, 429, 500, 502, 503) if outcomes.transient_http(s)] == [
        429, 500, 502, 503
    ]  # fmt: skip


# --- reference model ---------------------------------------------------------------------------------

LABELS = list(NotifyOn)
ORDER = ["timed_out", "recovered", "failed", "partial", "succeeded", "stopped", "skipped"]


def model(
    status: RunStatus, timed_out: bool, history: list[tuple[RunStatus, str]], rules: list[NotificationRule]
) -> dict[tuple[int, int], str]:
    """The rules as the brief states them, written plainly."""
    real = [s for s, trigger in history if trigger != "dry_run" and s.terminal and s != RunStatus.SKIPPED]
    previous = real[-1] if real else None
    found = {status.value} if status.terminal else set()
    if status == F and timed_out:
        found.add("timed_out")
    if status in (S, P) and previous == F:
        found.add("recovered")
    owed: dict[tuple[int, int], str] = {}
    for index, r in enumerate(rules):
        hits = found & {label.value for label in r.on}
        if hits:
            best = min(hits, key=ORDER.index)
            for channel in r.channels:
                owed[(index, channel)] = best
    return owed


statuses = st.sampled_from(list(RunStatus))
rules_st = st.lists(
    st.builds(
        NotificationRule,
        on=st.lists(st.sampled_from(LABELS), min_size=1, max_size=6, unique=True).map(tuple),
        channels=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple),
    ),
    max_size=4,
)


@settings(max_examples=examples(200))
@given(
    status=statuses,
    timed_out=st.booleans(),
    history=st.lists(
        st.tuples(statuses, st.sampled_from(["on_demand", "dry_run", "scheduled", "group"])), max_size=5
    ),
    rules=rules_st,
)
def test_notifications_owed_follow_the_reference_model(
    status: RunStatus, timed_out: bool, history: list[tuple[RunStatus, str]], rules: list[NotificationRule]
) -> None:
    # what the store's `previous_status` reads: the latest terminal run that is neither dry nor skipped
    real = [s for s, t in history if outcomes.notifies(t) and s.terminal and s is not RunStatus.SKIPPED]
    previous = real[-1] if real else None
    due = outcomes.matches(rules, outcomes.labels(status, timed_out=timed_out, previous=previous))
    got = {(d.rule, d.channel_id): d.outcome.value for d in due}
    assert len(got) == len(due)  # one per (rule, channel)
    assert got == model(status, timed_out, history, rules)


def test_the_subject_names_the_job_the_outcome_and_the_run() -> None:
    run = {
        "_id": "12.7",
        "job_id": 12,
        "job_name": "Nightly import",
        "status": "failed",
        "trigger": "scheduled",
    }
    body = messages.run_body(
        "run-12.7-0-1", "failed", run, timed_out=False, api_url="https://connect.example/"
    )
    assert messages.subject(body) == "Connect: job 12 'Nightly import' failed (run 12.7)"
    assert body["links"] == {
        "run": "https://connect.example/api/v1/runs/12.7",
        "logs": "https://connect.example/api/v1/runs/12.7/logs",
        "rejects": "https://connect.example/api/v1/runs/12.7/rejects",
        "console": "https://connect.example/#/runs/12.7",
    }
    text = messages.mail_text(body)
    assert "Log: https://connect.example/api/v1/runs/12.7/logs" in text and "Outcome: failed" in text
    assert "Console: https://connect.example/#/runs/12.7" in text
