"""Exceptions, named as SharQ 1.3.0 names them (``sharq.exceptions``), and sharq_fast's own."""

from typing import Any, List, Optional

import redis.asyncio.sentinel as _async_sentinel
import redis.sentinel as _sync_sentinel
from redis.exceptions import AuthenticationError as RedisAuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError


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


class BatchError(SharqException):
    """Redis refused part of a batch. ``done`` (``enqueued`` for enqueue_many) counts what
    did land; ``refused`` lists the input positions of the jobs that were refused (nothing
    of them was changed); ``jobs`` holds the jobs that dequeue_many did take (finish them);
    ``result`` is the partial result of requeue()."""

    def __init__(
        self,
        message: str,
        *,
        done: int,
        jobs: Optional[List[Any]] = None,
        refused: Optional[List[int]] = None,
        result: Any = None,
    ) -> None:
        super().__init__(message)
        self.done = done
        self.enqueued = done
        self.jobs = jobs or []
        self.refused = refused or []
        self.result = result


class OutcomeUnknownError(SharqException, RedisConnectionError):
    """A call's reply was lost (connection cut, timeout, failover) and could not be got
    again within the client's ``retry_for``: Redis may or may not have run it.

    Nothing is lost either way, and what the caller needs to recover is here:
    ``enqueued`` and ``duplicates`` say what enqueue_many knows landed, and ``resume_from``
    the input position from which to send jobs again (a job that did land is then refused
    as a duplicate: harmless); ``unknown`` lists the input positions of jobs whose finish,
    extend or release is in doubt (resend them: a second finish answers False); ``result``
    is what requeue() had done (its discarded jobs included). Jobs that a lost dequeue took
    stay active and come back by requeue after job_expire_interval."""

    def __init__(
        self,
        message: str,
        *,
        enqueued: int = 0,
        duplicates: Optional[List[int]] = None,
        resume_from: Optional[int] = None,
        unknown: Optional[List[int]] = None,
        result: Any = None,
    ) -> None:
        super().__init__(message)
        self.result = result
        self.enqueued = enqueued
        self.duplicates = duplicates or []
        self.resume_from = resume_from
        self.unknown = unknown or []


class ClientClosedError(SharqException):
    """The client was closed: make a new one."""


class ReplicationError(SharqException):
    """A write ran on the master, but WAIT did not confirm it on ``replicas`` replicas (the
    client's or the call's ``replicas=``), not even after the round was sent again for the
    client's ``retry_for`` (each try waits up to ``replica_timeout``).

    The write is not undone: it is on the master and will most likely reach the replicas,
    but a failover now could lose it. ``unconfirmed`` lists the input positions of the
    jobs concerned: send them again (an enqueue that survived is refused as a duplicate,
    as long as the job is still queued or active; a finish that survived answers False).
    ``result`` is what the call would have returned (EnqueueResult so far, the finish_many
    bools, enqueue's or finish's bool, dequeue's jobs: they are active, finish or release
    them); ``resume_from`` (enqueue_many) the input position from which nothing was sent;
    ``reached`` how many replicas the last WAIT counted."""

    def __init__(
        self,
        message: str,
        *,
        unconfirmed: List[int],
        result: Any,
        replicas: int,
        reached: int,
        resume_from: Optional[int] = None,
    ) -> None:
        super().__init__(message)
        self.unconfirmed = unconfirmed
        self.result = result
        self.replicas = replicas
        self.reached = reached
        self.resume_from = resume_from


class MasterNotFoundError(SharqException, _sync_sentinel.MasterNotFoundError, _async_sentinel.MasterNotFoundError):
    """Redis Sentinel: no sentinel answered, or none names a master that is up (a
    failover may be under way). A connection error: retried for the client's retry_for."""


class UnknownMasterError(MasterNotFoundError):
    """Redis Sentinel: the sentinels monitor no master of that name (check the URL's path
    or ``[redis] sentinel_master``). Not retried."""


class SentinelAuthenticationError(SharqException, RedisAuthenticationError):
    """Redis Sentinel: the sentinels refused the credentials (``sentinel_password``)."""
