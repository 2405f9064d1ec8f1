from shared.errors import PermanentError


class UnknownEvent(PermanentError):
    """An event type the logsink does not record (dead-lettered with this reason)."""
