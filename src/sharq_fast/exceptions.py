"""Exceptions, named as SharQ 1.3.0 names them (``sharq.exceptions``)."""

from typing import Optional


class SharqException(Exception):
    """Base class of every error sharq_fast raises on purpose."""


class BadArgumentException(SharqException):
    """An argument is invalid; nothing was written to Redis.

    For batch calls, ``index`` is the position of the bad job in the input, ``field`` the
    name of the bad argument, and ``enqueued`` how many jobs earlier chunks had already
    enqueued (resume from there).
    """

    def __init__(
        self,
        message: str,
        *,
        field: Optional[str] = None,
        index: Optional[int] = None,
        enqueued: int = 0,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.index = index
        self.enqueued = enqueued


class ConfigError(SharqException):
    """A SharQ config file is missing, unreadable or has a bad value."""
