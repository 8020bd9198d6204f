"""The errors a user can fix from their one-line message (bad config, missing or damaged file).

The command line prints them as a single ``error: …`` line and exits with code 2,
whether the run failed in the command's own process or in a worker process.
"""
from __future__ import annotations

from .config import ConfigError
from .datasets.readers import CorruptDatasetError
from .records import RunFileError

#: errors whose one-line message says what is wrong and what to do: printed as ``error: …``, exit code 2
USER_ERRORS = (ConfigError, FileNotFoundError, CorruptDatasetError, RunFileError)


def is_user_error(error: BaseException) -> bool:
    """Whether ``error`` is one of :data:`USER_ERRORS` (its message is enough; no traceback)."""
    return isinstance(error, USER_ERRORS)
