from shared.errors import Conflict, PermanentError


class RunRefused(Conflict):
    """The scheduler refused a run now (e.g. the job is running)."""


class ConfirmationRequired(PermanentError):
    code = "confirmation_required"
