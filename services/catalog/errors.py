import math

from shared.errors import Conflict, PermanentError, ValidationFailed


class RunRefused(Conflict):
    """Run now refused: by the catalog's rules (inactive, expired, a partner feed) or by the scheduler
    (the job is running)."""


class ConfirmationRequired(PermanentError):
    """A stop or a delete sent without `confirm=true` (400: the request is not carried out as sent)."""

    code = "confirmation_required"


class RateLimited(PermanentError):
    """Too many authentication failures from one client (429, with Retry-After)."""

    code = "rate_limited"

    def __init__(self, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(f"too many failed sign-ins or tokens; retry in {self.retry_after} s")


class InvalidIdempotencyKey(ValidationFailed):
    code = "invalid_idempotency_key"


class IdempotencyKeyReused(ValidationFailed):
    """The key was given with another request (422): a client bug, never a retry."""

    code = "idempotency_key_reused"


class RequestInProgress(Conflict):
    """The first request with this key still runs (409, with Retry-After): retry shortly."""

    code = "idempotency_request_in_progress"
    retry_after = 1


class OutcomeUnknown(Conflict):
    """The first request with this key never answered: it is not run again (409)."""

    code = "idempotency_outcome_unknown"
