import math

from shared.errors import Conflict, PermanentError


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
