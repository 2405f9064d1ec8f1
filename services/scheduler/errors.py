from shared.errors import Conflict


class JobAlreadyRunning(Conflict):
    """Overlap: a job never runs twice at once."""
