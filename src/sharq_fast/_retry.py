"""The retry rule every transport follows, in one place.

A round whose connection fails is sent again on a new connection, with backoff, for up to
the client's ``retry_for`` seconds. That is safe for every command sharq_fast sends: reads,
writes that are the same when done twice (SET of a constant, the lock, purges), and script
calls behind the reply cache, which answer a resend with their first reply. A round that
never reached Redis (the connection could not be made) fails with the connection error; a
round that may have run fails with OutcomeUnknownError.

Error replies that say a command did not run (the script is not loaded, the server is
loading, is a replica now, the cluster is moving a slot) are handled the same way, per
command. A round that ends with a WAIT that counted too few replicas is sent again as a
whole, within the same ``retry_for``; after that, its replies are returned as they are
(the operation raises ReplicationError).

Through Redis Sentinel, a connection to a master that was demoted answers READONLY, which
redis-py's SentinelManagedConnection turns into a ConnectionError ("The previous master is
now a slave"): the round goes again on a new connection, to the master the sentinels name.
"""

import ssl
import time
from typing import Any, List, Optional, Sequence

from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    ConnectionError,
    MaxConnectionsError,
    NoScriptError,
    ReadOnlyError,
    ResponseError,
    TimeoutError,
    TryAgainError,
)

from ._rounds import Round
from .exceptions import OutcomeUnknownError, UnknownMasterError

#: Errors of a connection: the round may be sent again on a new one.
CONNECTION_ERRORS = (ConnectionError, TimeoutError, OSError)
#: ... except these, which a new connection would meet again (a wrong password, a master
#: name no sentinel monitors: SentinelAuthenticationError is an AuthenticationError).
FINAL_ERRORS = (AuthenticationError, AuthorizationError, MaxConnectionsError, UnknownMasterError)
#: Error replies of a command that did not run and may run a moment later.
TRANSIENT_PREFIXES = ("MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "LOADING")

#: Pauses between attempts (seconds); the last one repeats. Short, so that a client finds a
#: new master soon after the sentinels name it (a try is one connect, or a refusal).
BACKOFF = (0.0, 0.02, 0.05, 0.1, 0.2, 0.25)


def is_connection_error(exc: BaseException) -> bool:
    """True for a failure of the connection that a new connection may not meet."""
    return isinstance(exc, CONNECTION_ERRORS) and not isinstance(exc, FINAL_ERRORS) and not _certificate_refused(exc)


def _certificate_refused(exc: BaseException) -> bool:
    """True when TLS refused the server's certificate (wrong CA, host name): a new
    connection meets that again, so it is raised at once, not after retry_for."""
    seen: Optional[BaseException] = exc
    for _ in range(5):  # redis-py wraps the ssl error in its ConnectionError
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def needs_resend(reply: Any) -> bool:
    """True for an error reply that means the command did not run: NOSCRIPT (the caller
    loads the scripts first), a replica's READONLY, or a transient state of the server."""
    if not isinstance(reply, ResponseError):
        return False
    if isinstance(reply, (NoScriptError, ReadOnlyError, TryAgainError)):
        return True
    return str(reply).startswith(TRANSIENT_PREFIXES)


def resend_indexes(replies: Sequence[Any], confirm: bool = False) -> List[int]:
    """Positions of the replies whose commands must be sent again; with `confirm` (the
    last command is a WAIT for the others), the last one too whenever any other is."""
    indexes = [i for i, reply in enumerate(replies) if needs_resend(reply)]
    last = len(replies) - 1
    if confirm and indexes and indexes[-1] != last:
        indexes.append(last)
    return indexes


def unconfirmed(round: Round, replies: Sequence[Any]) -> bool:
    """True when the round ends with a WAIT (``round.replicas``) that counted fewer
    replicas. The round is then sent again as it is: its script calls answer from the
    reply cache where they ran (a write, so the new WAIT covers them) and run where they
    were lost, as on the new master after a failover that lost them."""
    if not round.replicas:
        return False
    reached = replies[-1]
    return not isinstance(reached, int) or reached < round.replicas


class Attempts:
    """Counts the attempts of one round and says how long to pause before the next, or
    None once `retry_for` seconds have passed since the first failure."""

    __slots__ = ("retry_for", "count", "started", "reached")

    def __init__(self, retry_for: float) -> None:
        self.retry_for = retry_for
        self.count = 0
        self.started: Optional[float] = None
        self.reached = False

    def pause(self) -> Optional[float]:
        """The pause before the next attempt, or None: give up."""
        now = time.monotonic()
        if self.started is None:
            self.started = now
        elif now - self.started >= self.retry_for:
            return None
        pause = BACKOFF[min(self.count, len(BACKOFF) - 1)]
        self.count += 1
        return pause

    def give_up(self, exc: BaseException, writes: bool) -> BaseException:
        """The error to raise when no attempt is left."""
        if not (writes and self.reached):
            return exc
        return OutcomeUnknownError(
            f"the reply was lost ({exc}) and could not be read again in {self.retry_for:g} s "
            "(retry_for): Redis may or may not have run the call"
        )
