"""Wake-ups for dequeues that wait: scripts that make queues of type T ready now publish on
P:.wake:T; a client listens to P:.wake:* on one pub/sub connection and counts them per
channel. A waiting dequeue reads the count before it looks for jobs and then waits for the
count to change, so a wake-up that comes in between is not lost. Jobs enqueued by clients
that publish nothing (sharq 1.3.0, go-sharq) are found by the waiters' bounded poll.

After the pub/sub connection was lost (and redis-py made it again), every channel counts
one wake-up: messages may have been missed meanwhile.
"""

import asyncio
import logging
import os
import threading
import time
from typing import Any, Dict, List

from redis.exceptions import NoPermissionError

log = logging.getLogger("sharq_fast.waker")

#: How long the listener blocks between looks at its closed flag (seconds).
_LISTEN_TIMEOUT = 1.0


def _woken(message: Any, known: Dict[str, int]) -> List[str]:
    """The channels a pub/sub message wakes: its own for a wake-up; every known one when
    the listener subscribed again after a reconnect (it may have missed wake-ups)."""
    if message is None:
        return []
    if message["type"] == "pmessage":
        channel = message["channel"]
        return [channel.decode() if isinstance(channel, bytes) else channel]
    if message["type"] == "psubscribe":
        return list(known)
    return []


def _backoff(failures: int, exc: BaseException, known: Dict[str, int]) -> float:
    """Log a lost listener connection; the pause before listening again."""
    log.warning("wake-up listener lost its connection (%s); reconnecting", exc)
    return min(0.05 * 2**failures, 1.0)


def refused(exc: NoPermissionError, pattern: str) -> NoPermissionError:
    """The error of a user whose ACL refuses the wake-up channels: what to change."""
    return NoPermissionError(
        f"{exc}: a dequeue with a timeout listens for wake-ups on the channels {pattern}; allow them "
        f"to this Redis ACL user (&{pattern}), or dequeue without a timeout"
    )


class Waker:
    """The wake-up counts of one sync client: a pub/sub connection read by a daemon thread."""

    def __init__(self, redis_client: Any, pattern: str) -> None:
        self.pid = os.getpid()
        self._counts: Dict[str, int] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._pubsub = redis_client.pubsub()
        try:
            self._pubsub.psubscribe(pattern)
            deadline = time.monotonic() + 10
            while True:  # listening from here on: no wake-up after this returns is missed
                message = self._pubsub.get_message(timeout=1.0)
                if message is not None and message["type"] == "psubscribe":
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no confirmation of PSUBSCRIBE {pattern} from Redis")
        except NoPermissionError as exc:
            self._pubsub.close()
            raise refused(exc, pattern) from None
        self._thread = threading.Thread(target=self._listen, name="sharq-waker", daemon=True)
        self._thread.start()

    def count(self, channel: str) -> int:
        """Wake-ups seen on `channel` so far."""
        with self._cond:
            return self._counts.get(channel, 0)

    def wait(self, channel: str, seen: int, seconds: float) -> int:
        """Wait until `channel` has had more than `seen` wake-ups (or `seconds` passed, or
        the client closed); return its count."""
        with self._cond:
            self._cond.wait_for(lambda: self._counts.get(channel, 0) != seen or self._closed, seconds)
            return self._counts.get(channel, 0)

    def _bump(self, channels: Any) -> None:
        if not channels:
            return
        with self._cond:
            for channel in channels:
                self._counts[channel] = self._counts.get(channel, 0) + 1
            self._cond.notify_all()

    def _listen(self) -> None:
        failures = 0
        while not self._closed:
            try:
                message = self._pubsub.get_message(timeout=_LISTEN_TIMEOUT)
            except Exception as exc:  # redis-py reconnects and subscribes again at the next call
                if self._closed:
                    return
                failures += 1
                self._bump(list(self._counts))
                time.sleep(_backoff(failures, exc, self._counts))
                continue
            failures = 0
            self._bump(_woken(message, self._counts))

    def close(self) -> None:
        """Stop listening; waiters return at once."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(_LISTEN_TIMEOUT + 1)
        try:
            self._pubsub.close()
        except Exception:  # its connection may be gone already
            pass


class AsyncWaker:
    """The wake-up counts of one asyncio client: a pub/sub connection read by a task."""

    def __init__(self, redis_client: Any, pattern: str) -> None:
        self._redis = redis_client
        self._pattern = pattern
        self._counts: Dict[str, int] = {}
        self._events: Dict[str, asyncio.Event] = {}
        self._pubsub: Any = None
        self._task: Any = None
        self._closed = False

    async def start(self) -> None:
        """Subscribe (confirmed) and start listening."""
        self._pubsub = self._redis.pubsub()
        try:
            await self._pubsub.psubscribe(self._pattern)
            deadline = time.monotonic() + 10
            while True:
                message = await self._pubsub.get_message(timeout=1.0)
                if message is not None and message["type"] == "psubscribe":
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no confirmation of PSUBSCRIBE {self._pattern} from Redis")
        except NoPermissionError as exc:
            await self._pubsub.aclose()
            raise refused(exc, self._pattern) from None
        self._task = asyncio.ensure_future(self._listen())

    def count(self, channel: str) -> int:
        """Wake-ups seen on `channel` so far."""
        return self._counts.get(channel, 0)

    async def wait(self, channel: str, seen: int, seconds: float) -> int:
        """Wait until `channel` has had more than `seen` wake-ups (or `seconds` passed, or
        the client closed); return its count."""
        if self._counts.get(channel, 0) == seen and not self._closed:
            event = self._events.get(channel)
            if event is None:
                event = self._events[channel] = asyncio.Event()
            try:
                await asyncio.wait_for(event.wait(), seconds)
            except asyncio.TimeoutError:
                pass
        return self._counts.get(channel, 0)

    def _bump(self, channels: Any) -> None:
        for channel in channels:
            self._counts[channel] = self._counts.get(channel, 0) + 1
            event = self._events.pop(channel, None)
            if event is not None:
                event.set()

    async def _listen(self) -> None:
        failures = 0
        while not self._closed:
            try:
                message = await self._pubsub.get_message(timeout=_LISTEN_TIMEOUT)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # redis-py reconnects and subscribes again at the next call
                if self._closed:
                    return
                failures += 1
                self._bump(list(self._counts))
                await asyncio.sleep(_backoff(failures, exc, self._counts))
                continue
            failures = 0
            self._bump(_woken(message, self._counts))

    async def close(self) -> None:
        """Stop listening; waiters return at once."""
        self._closed = True
        self._bump(list(self._events))
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if self._pubsub is not None:
            try:
                await self._pubsub.aclose()
            except Exception:
                pass
