"""Child processes that end with the process that started them.

A test run or `connect dev` killed with SIGKILL cannot stop its children; without this, an embedded
database, an sshd or a service process would live on, holding CPU and ports for whatever runs next.
"""

from __future__ import annotations

import ctypes
import signal
import sys

_PR_SET_PDEATHSIG = 1
# Looked up before any fork: the child only calls it, it never loads a library.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


def end_with_parent() -> None:
    """`preexec_fn` for subprocess.Popen: the kernel sends SIGTERM to the child when its parent dies."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
