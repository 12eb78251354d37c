"""The background requeuer (go-sharq's RunRequeue): one process at a time per key prefix.

A round takes or keeps the prefix's lock (``sharq:requeue_lock:P``, a token that expires
by itself if its holder dies), then requeues. The next round comes after
job_requeue_interval, or sooner, when the earliest lease left expires. The round is an
operation, so the thread (Requeuer) and the asyncio task (AsyncRequeuer) share it; they
are handed a transport, not a client.
"""

import asyncio
import logging
import threading
import uuid
from typing import Any, Callable, Optional

from ._rounds import Op
from ._settings import Settings
from .exceptions import BadArgumentException
from .types import Job, RequeueResult

log = logging.getLogger("sharq_fast.requeuer")

#: Shortest pause between rounds (s): leases that expire together are requeued together.
_MIN_PAUSE = 0.005


class Tick:
    """What one round did: whether it held the lock, what it requeued (also after an
    error that left part of the work done), the earliest lease left, the error."""

    __slots__ = ("held", "result", "next_expiry", "error")

    def __init__(
        self,
        held: bool,
        result: Optional[RequeueResult] = None,
        next_expiry: Optional[int] = None,
        error: Optional[BaseException] = None,
    ) -> None:
        self.held = held
        self.result = result
        self.next_expiry = next_expiry
        self.error = error


class Schedule:
    """The requeuer's rounds and pauses, without I/O or threads."""

    def __init__(self, settings: Settings, on_discard: Optional[Callable[[Job], None]] = None) -> None:
        if on_discard is not None and not callable(on_discard):
            raise BadArgumentException("`on_discard` must be a function taking a discarded Job.", field="on_discard")
        self.settings = settings
        self.on_discard = on_discard
        self.token = uuid.uuid4().hex
        # Three missed rounds (at least 5 s) before another process may take over.
        self.lock_ttl = max(3 * settings.job_requeue_interval, 5000)
        self.interval_s = settings.job_requeue_interval / 1000
        self.runs = 0

    def round(self) -> Op[Tick]:
        """One round, as an operation; errors come back in the Tick, not raised."""
        held = False
        try:
            held = yield from self.settings.ops.lock(self.settings, self.token, self.lock_ttl)
            if not held:
                return Tick(False)
            result, next_expiry = yield from self.settings.ops.requeue_pass(self.settings)
            return Tick(True, result, next_expiry)
        except Exception as exc:
            return Tick(held, getattr(exc, "result", None), None, exc)

    def release(self) -> Op[bool]:
        """Give the lock up (if held)."""
        return self.settings.ops.lock(self.settings, self.token, 0)

    def pause_after(self, tick: Tick) -> float:
        """Log a round, hand its discarded jobs to on_discard, and say how long to wait
        before the next one (seconds)."""
        if tick.error is not None:
            log.warning("requeue failed, retrying in %.3fs: %s", self.interval_s, tick.error)
        if tick.held:
            self.runs += 1
        result = tick.result
        if result is not None:
            if result.requeued or result.discarded:
                log.info("requeued %d jobs, discarded %d", result.requeued, len(result.discarded))
            for job in result.discarded:
                log.warning("discarded %s/%s/%s: requeue limit reached", job.queue_type, job.queue_id, job.job_id)
                if self.on_discard is not None:
                    try:
                        self.on_discard(job)
                    except Exception:
                        log.exception("on_discard failed for job %s", job.job_id)
        pause = self.interval_s
        if tick.error is None and tick.next_expiry is not None:
            until = (tick.next_expiry - self.settings.clock() + 1) / 1000
            pause = min(pause, max(until, _MIN_PAUSE))
        return pause


class Requeuer(threading.Thread):
    """Requeues in a daemon thread while holding the prefix's requeue lock. Errors are
    logged and retried at the next round."""

    def __init__(self, transport: Any, on_discard: Optional[Callable[[Job], None]] = None) -> None:
        super().__init__(name=f"sharq-requeuer-{transport.settings.key_prefix}", daemon=True)
        self.transport = transport
        self.schedule = Schedule(transport.settings, on_discard)
        self._stopping = threading.Event()

    @property
    def runs(self) -> int:
        """Rounds run while holding the lock."""
        return self.schedule.runs

    def run(self) -> None:
        while not self._stopping.is_set():
            self._stopping.wait(self.tick_pause())

    def tick(self) -> bool:
        """One round: requeue if we hold the lock. True if a requeue ran."""
        tick = self.transport.run(self.schedule.round())
        self.schedule.pause_after(tick)
        return tick.held and tick.error is None

    def tick_pause(self) -> float:
        """One round; the pause before the next."""
        try:
            tick = self.transport.run(self.schedule.round())
        except Exception as exc:  # the transport itself failed (closed, ...): never die
            tick = Tick(False, error=exc)
        return self.schedule.pause_after(tick)

    def stop(self, timeout: Optional[float] = 5.0) -> None:
        """Stop after the current round and release the lock."""
        self._stopping.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)
        try:
            self.transport.run(self.schedule.release())
        except Exception as exc:
            log.warning("could not release the requeue lock (it expires by itself): %s", exc)


class AsyncRequeuer:
    """Requeues in an asyncio task while holding the prefix's requeue lock."""

    def __init__(self, transport: Any, on_discard: Optional[Callable[[Job], None]] = None) -> None:
        self.transport = transport
        self.schedule = Schedule(transport.settings, on_discard)
        self._stopping = asyncio.Event()
        self._task: Optional["asyncio.Task[None]"] = None

    def start(self) -> None:
        """Start the task in the running loop."""
        self._task = asyncio.ensure_future(self._loop())

    def is_alive(self) -> bool:
        """True while the task runs."""
        return self._task is not None and not self._task.done()

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                tick = await self.transport.run(self.schedule.round())
            except Exception as exc:
                tick = Tick(False, error=exc)
            try:
                await asyncio.wait_for(self._stopping.wait(), self.schedule.pause_after(tick))
            except asyncio.TimeoutError:
                pass

    async def stop(self) -> None:
        """Stop after the current round and release the lock."""
        self._stopping.set()
        if self._task is not None:
            await self._task
        try:
            await self.transport.run(self.schedule.release())
        except Exception as exc:
            log.warning("could not release the requeue lock (it expires by itself): %s", exc)
