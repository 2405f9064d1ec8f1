from shared.errors import PermanentError, RetryableError


class SourceUnavailable(RetryableError):
    """The SFTP server or the network failed in a way a later attempt may not."""


class SourceRefused(PermanentError):
    """Authentication failure, host-key mismatch, missing file, path outside the base directory."""


class BadFile(PermanentError):
    """The file cannot be read as configured (header missing columns, undecodable bytes)."""


class GuardFailed(PermanentError):
    """A guard of the job (max reject %, max shrink %, count file) stopped the run before damage."""


class UnwritableValue(PermanentError):
    """An exported value holds a character the file's encoding cannot write (never replaced by `?`)."""


class DestinationFailed(PermanentError):
    """An export destination refused the data for good (after retries where they make sense)."""


class RunStopped(Exception):
    """Raised at a safe point after a stop request; not an error of the run."""
