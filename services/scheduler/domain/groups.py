"""Group sequencing: members run strictly in order, the next only after the previous one succeeded."""

from __future__ import annotations

from dataclasses import dataclass

from shared.contracts.runs import RunStatus

SUCCESS = frozenset({RunStatus.SUCCEEDED, RunStatus.PARTIAL, RunStatus.SKIPPED})  # skipped: nothing to do


@dataclass(frozen=True)
class GroupStep:
    """Where a group run stands when its current member finishes."""

    job_ids: tuple[int, ...]
    step: int  # index of the member that just finished
    continue_on_failure: bool
    stop_requested: bool
    failures: tuple[str, ...] = ()  # member run ids that failed so far


@dataclass(frozen=True)
class StepResult:
    next_step: int | None  # the member to request next, or None: the group run ends
    status: RunStatus | None = None  # the group run's final status when it ends
    failures: tuple[str, ...] = ()
    error: str | None = None


def after_member_finished(state: GroupStep, run_id: str, status: RunStatus) -> StepResult:
    """Decide the next step after member `state.step` (run `run_id`) ended with `status`."""
    failures = state.failures if status in SUCCESS else (*state.failures, run_id)
    if state.stop_requested or status == RunStatus.STOPPED:
        return StepResult(None, RunStatus.STOPPED, failures, "the group run was stopped")
    if status not in SUCCESS and not state.continue_on_failure:
        return StepResult(None, RunStatus.FAILED, failures, f"member run {run_id} {status.value}")
    following = state.step + 1
    if following < len(state.job_ids):
        return StepResult(following, None, failures)
    if failures:
        error = f"{len(failures)} of {len(state.job_ids)} members failed: {', '.join(failures)}"
        return StepResult(None, RunStatus.FAILED, failures, error)
    return StepResult(None, RunStatus.SUCCEEDED, failures)


def member_refused(state: GroupStep, job_id: int, reason: str) -> StepResult:
    """A member could not be requested (running, unknown): a failed step without a run."""
    failed = GroupStep(
        state.job_ids, state.step, state.continue_on_failure, state.stop_requested, state.failures
    )
    return after_member_finished(failed, f"job {job_id} ({reason})", RunStatus.FAILED)
