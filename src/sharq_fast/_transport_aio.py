"""The asyncio transport: drives operations (``_ops``) over one redis.asyncio connection,
with auto-pipelining.

Every task of an AsyncClient shares one connection (a ``_Pipeline``): the rounds that
tasks ask for in the same turn of the event loop are written together, in one write, and
one reader task hands each round its replies in order. So 100 tasks doing single calls
cost one round trip per turn instead of 100 (ioredis does this; redis-py does not). A
task that is cancelled while its round is in flight has its replies read and dropped;
a round cancelled before it was written is never written.

Replies are read without redis-py's per-read timeout (a timer set and cancelled for every
reply cost as much as the rest of a pipelined call), and rounds written to the connection's
stream directly (its send_packed_command runs each write in a task of its own, for its
timeout); one watchdog timer instead breaks the connection when no reply came for
``socket_timeout`` seconds while rounds were in flight (Redis that reads nothing answers
nothing either).

The retry rule is ``_retry``'s, as on the sync transport.
"""

import asyncio
import math
from collections import deque
from typing import Any, Deque, List, Optional

from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ._ops_queues import load_scripts
from ._retry import Attempts, is_connection_error, resend_indexes, unconfirmed
from ._rounds import Collect, Draw, Op, Round, Send, T, Wait, Watch
from ._settings import Settings
from ._waker import AsyncWaker
from .exceptions import BadArgumentException, ClientClosedError


class _Lost(Exception):
    """The pipeline's connection failed while a round was queued or in flight."""

    def __init__(self, cause: BaseException, reached: bool) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.reached = reached


class _Entry:
    __slots__ = ("commands", "future", "replies", "written")

    def __init__(self, commands: Any, future: "asyncio.Future[List[Any]]") -> None:
        self.commands = commands
        self.future = future
        self.replies: List[Any] = []
        self.written = False


class _Pipeline:
    """One connection shared by all tasks: a writer task that writes every queued round of
    a loop turn at once, and a reader task that matches replies to rounds in order."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._conn: Any = None
        self._outbox: List[_Entry] = []
        self._in_flight: Deque[_Entry] = deque()
        self._work = asyncio.Event()
        self._writer: Optional["asyncio.Task[None]"] = None
        self._reader: Optional["asyncio.Task[None]"] = None
        self._last_read = 0.0  # loop time of the reader's last progress (for the watchdog)
        self._stalled = False  # the watchdog stopped the reader
        self._watch: Optional[asyncio.TimerHandle] = None

    def submit(self, commands: Any) -> "asyncio.Future[List[Any]]":
        """Queue a round; the future gets its replies, or _Lost."""
        entry = _Entry(commands, asyncio.get_running_loop().create_future())
        self._outbox.append(entry)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write_loop())
        self._work.set()
        return entry.future

    async def _write_loop(self) -> None:
        while True:
            await self._work.wait()  # set by submit: wakes on the next turn, all of it queued
            self._work.clear()
            batch = [entry for entry in self._outbox if not entry.future.done()]
            self._outbox = []
            if not batch:
                continue
            try:
                conn = self._conn
                if conn is None:
                    conn = await self._pool.get_connection()
                    self._conn = conn
                else:
                    await conn.connect()  # after a failure, a new socket (no-op if connected)
            except Exception as exc:
                for entry in batch:
                    if not entry.future.done():
                        entry.future.set_exception(_Lost(exc, False) if is_connection_error(exc) else exc)
                continue
            for entry in batch:
                entry.written = True
            self._in_flight.extend(batch)
            if self._reader is None or self._reader.done():
                self._reader = asyncio.ensure_future(self._read_loop(conn))
            try:
                data = b"".join([b"".join(e.commands) for e in batch])
                stream = getattr(conn, "_writer", None)
                if stream is None:
                    await conn.send_packed_command((data,), check_health=False)
                else:  # redis-py's stream: its send_packed_command makes a task per write (wait_for)
                    stream.write(data)
                    await stream.drain()  # waits only while the socket's buffer is full
            except Exception as exc:
                await self._broken(exc)

    async def _read_loop(self, conn: Any) -> None:
        in_flight = self._in_flight
        loop = asyncio.get_running_loop()
        timeout = conn.socket_timeout
        self._last_read, self._stalled = loop.time(), False
        if timeout and self._watch is None:  # one timer, armed while readers run (not one a read)
            self._watch = loop.call_later(timeout, self._watchdog, timeout)
        try:
            while in_flight:
                entry = in_flight[0]
                replies = entry.replies
                while len(replies) < len(entry.commands):
                    try:  # math.inf: no timer per reply (the watchdog's is enough)
                        replies.append(await conn.read_response(disable_decoding=True, timeout=math.inf))
                    except ResponseError as exc:
                        replies.append(exc)
                    self._last_read = loop.time()
                in_flight.popleft()
                if not entry.future.done():  # a cancelled caller's replies are dropped
                    entry.future.set_result(replies)
        except BaseException as exc:
            if self._stalled:
                exc = RedisTimeoutError(f"no reply from Redis in {timeout:g} s (socket_timeout)")
            await self._broken(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise

    def _watchdog(self, timeout: float) -> None:
        """Stop the reader when it has waited `timeout` s for a reply; else look again later
        (while a reader runs: the next reader arms it again)."""
        self._watch = None
        reader = self._reader
        if reader is None or reader.done():
            return
        loop = asyncio.get_running_loop()
        waited = loop.time() - self._last_read
        if waited >= timeout:
            self._stalled = True
            reader.cancel()
        else:
            self._watch = loop.call_later(timeout - waited, self._watchdog, timeout)

    async def _broken(self, exc: BaseException) -> None:
        """Fail every round written and not answered; queued ones go on a new connection."""
        failed, self._in_flight = list(self._in_flight), deque()
        conn = self._conn
        if conn is not None:
            try:
                await conn.disconnect()
            except Exception:
                pass
        cause = exc if isinstance(exc, Exception) else ConnectionError("the pipeline was stopped")
        for entry in failed:
            if not entry.future.done():
                entry.future.set_exception(_Lost(cause, True) if is_connection_error(cause) else cause)

    async def close(self) -> None:
        """Stop both tasks, fail what is pending, give the connection back."""
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        for task in (self._writer, self._reader):
            if task is not None and not task.done():
                task.cancel()
                try:
                    await task
                except BaseException:
                    pass
        closed = ClientClosedError("this client was closed while the call was in flight")
        for entry in [*self._outbox, *self._in_flight]:
            if not entry.future.done():
                entry.future.set_exception(_Lost(closed, entry.written))
        self._outbox, self._in_flight = [], deque()
        if self._conn is not None:
            await self._conn.disconnect()
            await self._pool.release(self._conn)
            self._conn = None


class AsyncTransport:
    """Runs operations on a ``redis.asyncio.Redis``; many tasks may share it."""

    def __init__(self, redis_client: Any, settings: Settings) -> None:
        self.redis = redis_client
        self.settings = settings
        self._pipeline = _Pipeline(redis_client.connection_pool)
        self._waker: Optional[AsyncWaker] = None
        self._waker_lock: Optional[asyncio.Lock] = None
        self._closed = False

    async def run(self, op: Op[T]) -> T:
        """Run an operation to its end and return its result."""
        try:
            request = next(op)
            while True:
                try:
                    kind = type(request)
                    if kind is Round:
                        answer: Any = await self._collect(self._send(request))
                    elif kind is Send:
                        answer = self._send(request.round)
                    elif kind is Collect:
                        answer = await self._collect(request.handle)
                    elif kind is Draw:
                        answer = await _draw(request.source, request.count)
                    elif kind is Watch:
                        answer = (await self._wake_counts()).count(request.channel)
                    elif kind is Wait:
                        waker = await self._wake_counts()
                        answer = await waker.wait(request.channel, request.seen, request.seconds)
                    else:
                        raise TypeError(f"unknown request {request!r}")
                except BaseException as exc:
                    request = op.throw(exc)
                else:
                    request = op.send(answer)
        except StopIteration as stop:
            return stop.value

    def _send(self, round: Round, attempts: Optional[Attempts] = None) -> Any:
        if self._closed:
            raise ClientClosedError("this client is closed: make a new one")
        return round, self._pipeline.submit(round.commands), attempts or Attempts(self.settings.retry_for)

    async def _collect(self, sent: Any) -> List[Any]:
        round, future, attempts = sent
        while True:
            try:
                replies = await future
            except _Lost as lost:
                attempts.reached = attempts.reached or lost.reached
                pause = None if self._closed else attempts.pause()
                if pause is None:
                    raise attempts.give_up(lost.cause, round.writes) from lost.cause
                await asyncio.sleep(pause)
                _, future, _ = self._send(round, attempts)
                continue
            if not resend_indexes(replies) and not unconfirmed(round, replies):
                return replies  # the usual case: no coroutine for nothing to resend
            return await self._resend_refused(round, replies, attempts)

    async def _resend_refused(self, round: Round, replies: List[Any], attempts: Attempts) -> List[Any]:
        missing = resend_indexes(replies, bool(round.replicas))
        while missing:
            if any(isinstance(replies[i], NoScriptError) for i in missing):
                await self.run(load_scripts(self.settings))
            else:
                pause = attempts.pause()
                if pause is None:
                    return replies
                await asyncio.sleep(pause)
            again = Round([round.commands[i] for i in missing], round.writes, round.replicas)
            for i, reply in zip(missing, await self._collect(self._send(again, attempts))):
                replies[i] = reply
            missing = resend_indexes(replies, bool(round.replicas))
        if unconfirmed(round, replies):  # WAIT counted too few replicas: the whole round again
            pause = attempts.pause()
            if pause is not None:
                await asyncio.sleep(pause)
                return await self._collect(self._send(round, attempts))
        return replies

    async def _wake_counts(self) -> AsyncWaker:
        if self._closed:
            raise ClientClosedError("this client is closed: make a new one")
        if self._waker is None:
            if self._waker_lock is None:
                self._waker_lock = asyncio.Lock()
            async with self._waker_lock:
                if self._waker is None:
                    waker = AsyncWaker(self.redis, f"{self.settings.key_prefix}:.wake:*")
                    await waker.start()
                    self._waker = waker
        return self._waker

    async def close(self) -> None:
        """Refuse new rounds, wake waiting dequeues, close the connections."""
        self._closed = True
        if self._waker is not None:
            await self._waker.close()
            self._waker = None
        await self._pipeline.close()

    @property
    def closed(self) -> bool:
        """True once close() was called."""
        return self._closed


async def _draw(source: Any, count: int) -> List[Any]:
    """Up to `count` items of a sync or async iterator."""
    if not hasattr(source, "__anext__"):
        items = []
        for item in source:
            items.append(item)
            if len(items) >= count:
                break
        return items
    items = []
    try:
        while len(items) < count:
            items.append(await source.__anext__())
    except StopAsyncIteration:
        pass
    return items


__all__ = ["AsyncTransport", "BadArgumentException"]
