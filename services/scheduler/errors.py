from shared.errors import Conflict


class JobAlreadyRunning(Conflict):
    """Overlap: a job never runs twice at once."""


class JobExpired(Conflict):
    """The job's expiration date has passed: it is being deleted."""


class GroupRefused(Conflict):
    """A group run cannot start or stop (unknown, running, expired, not running)."""


class CommandExpired(Conflict):
    """The caller stopped waiting while the command was being carried out: the transaction is aborted."""
