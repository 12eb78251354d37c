"""The sync transport: drives operations (``_ops``) over redis-py connections.

Each round takes a connection for the time of the round only, from a small stack of idle
connections the transport keeps (taking one from redis-py's pool and giving it back costs
~30 us here, a quarter of a round trip); the stack only grows to the number of rounds
that ran at the same moment, so a bounded pool is never starved by idle threads. A round
is written as one buffer of RESP the core packed, and its replies read with redis-py's
parser (hiredis when installed). Pool, auth, TLS, Sentinel and reconnects stay redis-py's.
"""

import os
import threading
import time
from typing import Any, List, Optional

import redis
from redis.exceptions import ResponseError

from . import _ops
from ._ops_queues import load_scripts
from ._retry import Attempts, is_connection_error, resend_indexes, unconfirmed
from ._rounds import Collect, Draw, Op, Round, Send, T, Wait, Watch
from ._settings import Settings
from ._waker import Waker
from .exceptions import ClientClosedError


class _Sent:
    """A round written (or not, if `error`) on `conn`, its replies not read yet."""

    __slots__ = ("round", "conn", "error", "attempts")

    def __init__(self, round: Round, attempts: Attempts) -> None:
        self.round = round
        self.attempts = attempts
        self.conn: Any = None
        self.error: Optional[BaseException] = None


class SyncTransport:
    """Runs operations over the connection pool of a ``redis.Redis``; thread-safe."""

    def __init__(self, redis_client: redis.Redis, settings: Settings) -> None:
        self.redis = redis_client
        self.settings = settings
        self._pool = redis_client.connection_pool
        self._lock = threading.Condition()
        self._idle: List[Any] = []
        self._busy = 0
        self._pid = os.getpid()
        self._closed = False
        self._waker: Optional[Waker] = None

    # -- driving operations -------------------------------------------------------------

    def run(self, op: Op[T]) -> T:
        """Run an operation to its end and return its result."""
        pending: List[_Sent] = []  # sent rounds the operation has not collected yet
        try:
            request = next(op)
            while True:
                try:
                    kind = type(request)
                    if kind is Round:
                        answer: Any = self._collect(self._send(request))
                    elif kind is Send:
                        answer = self._send(request.round)
                        pending.append(answer)
                    elif kind is Collect:
                        pending.remove(request.handle)
                        answer = self._collect(request.handle)
                    elif kind is Draw:
                        answer = _ops.draw(request.source, request.count)
                    elif kind is Watch:
                        answer = self._wake_counts().count(request.channel)
                    elif kind is Wait:
                        answer = self._wake_counts().wait(request.channel, request.seen, request.seconds)
                    else:
                        raise TypeError(f"unknown request {request!r}")
                except BaseException as exc:
                    request = op.throw(exc)
                else:
                    request = op.send(answer)
        except StopIteration as stop:
            return stop.value
        finally:
            for sent in pending:  # their replies were not read: the connection can't be reused
                if sent.conn is not None:
                    self._release(sent.conn, reusable=False)

    # -- rounds -------------------------------------------------------------------------

    def _send(self, round: Round, attempts: Optional[Attempts] = None) -> _Sent:
        """Write a round on a connection of its own; a connection failure is kept in the
        handle (for _collect to retry), any other error raised."""
        sent = _Sent(round, attempts or Attempts(self.settings.retry_for))
        try:
            sent.conn = self._acquire()  # redis-py's pool connects a connection it hands out
            sent.conn.connect()  # no-op if connected
            sent.attempts.reached = True  # from the first byte on, Redis may run it
            sent.conn.send_packed_command((b"".join(round.commands),), check_health=False)
        except BaseException as exc:
            if sent.conn is not None:
                self._release(sent.conn, reusable=False)
                sent.conn = None
            if not is_connection_error(exc):
                raise
            sent.error = exc
        return sent

    def _collect(self, sent: _Sent) -> List[Any]:
        """The replies of a sent round: on a connection failure the round is sent again
        (see _retry), and commands that did not run (NOSCRIPT, ...) are sent again."""
        while True:
            if sent.error is None:
                conn = sent.conn
                try:
                    replies = _read_replies(conn, len(sent.round.commands))
                except BaseException as exc:
                    sent.conn = None
                    self._release(conn, reusable=False)
                    if not is_connection_error(exc):
                        raise
                    sent.error = exc
                else:
                    sent.conn = None
                    self._release(conn, reusable=True)
                    return self._resend_refused(sent.round, replies, sent.attempts)
            pause = None if self._closed else sent.attempts.pause()
            if pause is None:
                raise sent.attempts.give_up(sent.error, sent.round.writes)
            time.sleep(pause)
            sent = self._send(sent.round, sent.attempts)

    def _resend_refused(self, round: Round, replies: List[Any], attempts: Attempts) -> List[Any]:
        """Send again the commands whose reply says they did not run; NOSCRIPT first loads
        the scripts (after SCRIPT FLUSH, a restart or a failover)."""
        missing = resend_indexes(replies, bool(round.replicas))
        while missing:
            if any(isinstance(replies[i], redis.exceptions.NoScriptError) for i in missing):
                self.run(load_scripts(self.settings))
            else:
                pause = attempts.pause()
                if pause is None:
                    return replies
                time.sleep(pause)
            again = Round([round.commands[i] for i in missing], round.writes, round.replicas)
            for i, reply in zip(missing, self._collect(self._send(again, attempts))):
                replies[i] = reply
            missing = resend_indexes(replies, bool(round.replicas))
        if unconfirmed(round, replies):  # WAIT counted too few replicas: the whole round again
            pause = attempts.pause()
            if pause is not None:
                time.sleep(pause)
                return self._collect(self._send(round, attempts))
        return replies

    # -- connections --------------------------------------------------------------------

    def _acquire(self) -> Any:
        with self._lock:
            if self._closed:
                raise ClientClosedError("this client is closed: make a new one")
            if self._pid != os.getpid():  # forked: the parent's sockets are not ours
                self._pid, self._idle, self._busy, self._waker = os.getpid(), [], 0, None
            self._busy += 1
            found, stale = None, []
            while self._idle:
                conn = self._idle.pop()
                if self._owns(conn):
                    found = conn
                    break
                stale.append(conn)
        for conn in stale:  # to a master the sentinels no longer name
            conn.disconnect()
            self._pool.release(conn)
        if found is not None:
            return found
        try:
            return self._pool.get_connection()
        except BaseException:
            with self._lock:
                self._busy -= 1
                self._lock.notify_all()
            raise

    def _owns(self, conn: Any) -> bool:
        """False for a connection the pool would not take back: after a Sentinel failover,
        one to the old master's address (owns_connection compares it with the master the
        sentinels named last)."""
        owns = getattr(self._pool, "owns_connection", None)
        return owns is None or owns(conn)

    def _release(self, conn: Any, reusable: bool) -> None:
        with self._lock:
            if self._pid != os.getpid():
                return
            self._busy -= 1
            self._lock.notify_all()
            if reusable and not self._closed:
                self._idle.append(conn)
                return
        conn.disconnect()
        self._pool.release(conn)

    def _wake_counts(self) -> Waker:
        with self._lock:
            if self._closed:
                raise ClientClosedError("this client is closed: make a new one")
            if self._waker is None or self._waker.pid != os.getpid():
                self._waker = Waker(self.redis, f"{self.settings.key_prefix}:.wake:*")
            return self._waker

    def close(self, timeout: float = 5.0) -> None:
        """Refuse new rounds, wake waiting dequeues, give idle connections back, and wait
        up to `timeout` s for the rounds in flight to end."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            waker, self._waker = self._waker, None
        if waker is not None:
            waker.close()
        for conn in idle:
            self._pool.release(conn)
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._busy > 0 and self._pid == os.getpid():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(left)

    @property
    def closed(self) -> bool:
        """True once close() was called."""
        return self._closed


def _read_replies(conn: Any, count: int) -> List[Any]:
    replies = []
    for _ in range(count):
        try:
            replies.append(conn.read_response(disable_decoding=True))
        except ResponseError as exc:
            replies.append(exc)
    return replies
