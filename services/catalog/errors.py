from shared.errors import Conflict, PermanentError


class RunRefused(Conflict):
    """Run now refused: by the catalog's rules (inactive, expired, a partner feed) or by the scheduler
    (the job is running)."""


class ConfirmationRequired(PermanentError):
    code = "confirmation_required"
