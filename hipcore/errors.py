"""The project's own errors: each names what is wrong and what to do, and the command line
shows it as one `error: ...` line, never as a traceback.

    HipcoreError      the base class
    DataError         a data file (or a cache of one) holds what it must not: NaN, no examples,
                      labels that are not class indices, a truncated cache
    DiskFullError     a write found no space left (or the user's quota spent); what it was
                      writing is not left half-written
"""

from __future__ import annotations


class HipcoreError(Exception):
    """A problem the user can act on; the message says what and how."""


class DataError(HipcoreError, ValueError):
    """A data file, or a cache built from one, cannot be used as it is."""


class DiskFullError(HipcoreError, OSError):
    """No space left on the device (or quota) a write went to; the message names the folder."""
