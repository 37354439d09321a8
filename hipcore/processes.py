"""Child processes that end with the process that started them.

A child (a decoding pool's worker, a reproduce-gpu job) calls `die_with_parent(parent)` first:
on Linux the kernel then kills it (SIGKILL) when its parent ends, however the parent ends, so
a killed command never leaves orphans training, decoding or holding a run's lock. Elsewhere
it only checks that the parent is still there.
"""

from __future__ import annotations

import os
import sys

PR_SET_PDEATHSIG = 1             # prctl option: the signal this process gets when its parent ends


def die_with_parent(parent: int) -> None:
    """Have this process killed when its parent `parent` ends (Linux's prctl PR_SET_PDEATHSIG);
    exit at once if the parent is already gone (it ended before the request took)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        os._exit(1)
