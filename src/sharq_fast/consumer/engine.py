"""What a consumer decides, without I/O: shared by Consumer (threads) and AsyncConsumer.

The engine keeps the jobs a consumer holds and decides everything about them: how many
to fetch (the free capacity), which queue type next (weighted, fair), when to send the
completions (``finish_delay`` / ``finish_batch``), which leases to extend (one
``extend_many`` a round, every job_expire_interval / 3), what to do with a failure, and
the order of a shutdown. Its two loops, ``fetcher()`` and ``keeper()``, are generators
of actions (tuples): ``(CALL, method, args, kwargs)`` asks the driver to call that client
method and send back its result (or throw its exception in), ``(WAIT, event, timeout)``
to wait for one of the driver's events (or the timeout). The handlers run in the
driver's workers, which only call ``take()``, ``done()`` and ``failed()``: those touch
deques and a dict (atomic under the GIL), so the thread driver needs no lock for them.
"""

import logging
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, Generator, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import msgspec
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .. import _constants as C
from ..exceptions import BatchError, ClientClosedError, OutcomeUnknownError
from ..types import Job
from .options import check_options
from .rotation import Rotation, queue_weights

log = logging.getLogger("sharq_fast.consumer")

# Actions the loops yield.
CALL, WAIT = "call", "wait"
# The driver's events: free capacity, completions to send, stop (any), stop now.
SPACE, FLUSH, STOP, HALT = "space", "flush", "stop", "halt"
# Phases.
RUNNING, DRAINING, HALTED = "running", "draining", "halted"

Action = Tuple[Any, ...]
Loop = Generator[Action, Any, None]

#: Errors of Redis or of the connection: log, back off, try again.
TROUBLE = (RedisConnectionError, RedisTimeoutError, OutcomeUnknownError, RedisError, OSError)
#: Backoff after Redis trouble (s): doubled each time, up to the maximum.
BACKOFF_MIN, BACKOFF_MAX = 0.05, 2.0
#: Most jobs fetched ahead of the workers; and the share of a lease they may take to start.
MAX_PREFETCH = 2 * C.MAX_DEQUEUE_COUNT
PREFETCH_LEASE_SHARE = 0.1
#: How long the final flush of a shutdown may keep trying while Redis is down (s).
FINAL_FLUSH_FOR = 10.0


class ConsumerStats(msgspec.Struct):
    """A consumer's counts since it was made: jobs handled and finished (``processed``),
    handler failures (``failed``; then ``retried`` or ``discarded``, out of retries),
    jobs put back unstarted at shutdown (``released``), jobs held now (``in_flight``:
    fetched, running or waiting to be finished), leases lost (``lease_losses``: the job's
    result did not count), and the ``time.time()`` of the last loop turn (liveness)."""

    processed: int = 0
    failed: int = 0
    retried: int = 0
    discarded: int = 0
    released: int = 0
    in_flight: int = 0
    lease_losses: int = 0
    last_turn: float = 0.0


class PayloadTypeError(Exception):
    """A job's payload does not fit the consumer's ``payload_type``."""


class JobTimeoutError(Exception):
    """A handler ran longer than the consumer's ``job_timeout``."""


class Engine:
    """The state and decisions of one consumer (see the module docstring). `wake(event)`
    is the driver's: it sets one of its events (SPACE, FLUSH, STOP, HALT, or JOBS for the
    workers)."""

    JOBS = "jobs"

    def __init__(
        self,
        client: Any,
        queue_type: Union[str, Sequence[str], Mapping[str, int]],
        *,
        concurrency: int,
        finish_delay: float,
        finish_batch: int,
        grace_period: float,
        job_timeout: Optional[float],
        retry_backoff: Union[float, Callable[[Job], float]],
        dead_letter: Optional[str],
        on_discard: Optional[Callable[[Job], None]],
        payload_type: Any,
        wait_timeout: float,
        logger: Optional[logging.Logger],
        reap_timeouts: bool,
    ) -> None:
        self.weights = queue_weights(queue_type)
        check_options(concurrency, finish_delay, finish_batch, grace_period, job_timeout, retry_backoff,
                      dead_letter, on_discard, wait_timeout, self.weights)
        self.client = client
        self.rotation = Rotation(self.weights, wait_timeout)
        self.concurrency = concurrency
        self.finish_delay = finish_delay
        self.finish_batch = finish_batch
        self.grace_period = grace_period
        self.job_timeout = job_timeout
        self.retry_backoff = retry_backoff
        self.dead_letter = dead_letter
        self.on_discard = on_discard
        self.payload_type = payload_type
        self.log = logger or log
        self.reap_timeouts = reap_timeouts and job_timeout is not None
        self.expire_ms = client.job_expire_interval
        self.lease_period = self.expire_ms / 3000
        self.wake: Callable[[str], None] = lambda event: None
        self.phase = RUNNING
        self.stopped_at = 0.0
        self.fetcher_done = False
        # id(job) -> [job, time its handler started (None: fetched, not started)]
        self.held: Dict[int, List[Any]] = {}
        self.buffer: Deque[Job] = deque()
        self.finished: Deque[Job] = deque()
        self.pending: List[Job] = []  # completions being sent (or to send again)
        self.fails: Deque[Tuple[Job, BaseException]] = deque()
        self.flush_armed = False
        self.space_waiting = False
        # Jobs fetched ahead of the workers: starts at `concurrency`, doubles while the
        # workers empty the buffer before a fetch returns (slow start), and never passes
        # `prefetch_cap`, what they handle in a tenth of a lease at their measured rate.
        self.prefetch = concurrency
        self.prefetch_cap = MAX_PREFETCH
        self.stats = ConsumerStats(last_turn=time.time())
        self._rate_mark = (time.monotonic(), 0)

    # -- the workers' side (any thread) ---------------------------------------------------

    @property
    def running(self) -> bool:
        """True until stopped."""
        return self.phase == RUNNING

    def take(self) -> Optional[Job]:
        """The next fetched job to handle (marked started), or None (none, or stopping)."""
        buffer, held = self.buffer, self.held
        while buffer and self.phase == RUNNING:
            try:
                job = buffer.popleft()
            except IndexError:  # another worker took the last one
                return None
            entry = held.get(id(job))
            if entry is not None:  # else its lease was lost while it waited
                entry[1] = time.monotonic()
                return job
        return None

    def decode(self, job: Job) -> None:
        """Convert the job's payload to payload_type, in place (PayloadTypeError if it does not fit)."""
        try:
            job.payload = msgspec.convert(job.payload, self.payload_type)
        except (msgspec.ValidationError, TypeError) as exc:
            raise PayloadTypeError(
                f"the payload of job {job.queue_type}/{job.queue_id}/{job.job_id} does not fit "
                f"payload_type {getattr(self.payload_type, '__name__', self.payload_type)!r}: {exc}"
            ) from None

    def done(self, job: Job) -> None:
        """The handler returned: finish the job (with the next batch)."""
        if self.held.pop(id(job), None) is None:
            self._late(job, "finished")
            return
        finished = self.finished
        finished.append(job)
        if not self.flush_armed or len(finished) == self.finish_batch:
            self.flush_armed = True
            self.wake(FLUSH)
        if self.space_waiting and self.concurrency + self.prefetch - len(self.held) >= self.refill_at():
            self.wake(SPACE)

    def failed(self, job: Job, exc: BaseException) -> None:
        """The handler raised (or timed out, or the payload did not fit): fail the job."""
        if self.held.pop(id(job), None) is None:
            self._late(job, "failed")
            return
        self._log_failure(job, exc)
        self.fails.append((job, exc))
        self.flush_armed = True
        self.wake(FLUSH)
        if self.space_waiting:
            self.wake(SPACE)

    def _log_failure(self, job: Job, exc: BaseException) -> None:
        ids = f"{job.queue_type}/{job.queue_id}/{job.job_id}"
        if isinstance(exc, (PayloadTypeError, JobTimeoutError)):
            self.log.error("job %s failed: %s", ids, exc)
        else:
            self.log.error("job %s failed: %s: %s", ids, type(exc).__name__, exc, exc_info=exc)

    def _late(self, job: Job, what: str) -> None:
        self.log.warning(
            "job %s/%s/%s %s after its lease was lost or it timed out: its result does not count",
            job.queue_type, job.queue_id, job.job_id, what,
        )

    def running_count(self) -> int:
        """Jobs whose handler started and did not end."""
        return sum(1 for entry in list(self.held.values()) if entry[1] is not None)

    def current_stats(self) -> ConsumerStats:
        """A copy of the counts."""
        stats = msgspec.structs.replace(self.stats)
        stats.in_flight = len(self.held) + len(self.finished) + len(self.pending) + len(self.fails)
        return stats

    # -- stopping ---------------------------------------------------------------------------

    def stop(self, now: bool = False) -> None:
        """Stop fetching and drain (now: stop at once; leases expire, the requeuer brings
        the jobs back)."""
        if now:
            if self.phase != HALTED:
                self.phase = HALTED
                self.stopped_at = self.stopped_at or time.monotonic()
                self.log.warning("stopping now: %d jobs held come back when their leases expire", len(self.held))
        elif self.phase == RUNNING:
            self.phase = DRAINING
            self.stopped_at = time.monotonic()
            self.log.info("stopping: draining %d running jobs (grace period %.1fs)", self.running_count(), self.grace_period)
        for event in (STOP, SPACE, FLUSH, self.JOBS) + ((HALT,) if now else ()):
            self.wake(event)

    # -- the fetcher ------------------------------------------------------------------------

    def refill_at(self) -> int:
        """Free capacity worth a dequeue: half the prefetch, so a batch is fetched while
        the last one is handled."""
        return max(1, (self.concurrency + self.prefetch) // 2)

    def fetcher(self) -> Loop:
        """Fetch the free capacity, from the queue types in turn, until stopped."""
        backoff = Backoff(self.log, "dequeue")
        held = self.held
        try:
            while self.phase == RUNNING:
                self.stats.last_turn = time.time()
                free = self.concurrency + self.prefetch - len(held)
                if free < self.refill_at():
                    self.space_waiting = True
                    free = self.concurrency + self.prefetch - len(held)  # a job may have ended since
                    if free < self.refill_at():
                        yield (WAIT, SPACE, 1.0)
                    self.space_waiting = False
                    continue
                now = time.monotonic()
                queue_type, timeout, share = self.rotation.next(now)
                count = min(max(1, int(free * share)), C.MAX_DEQUEUE_COUNT)
                try:
                    jobs = yield (CALL, "dequeue_many", (queue_type, count), {"timeout": timeout})
                except BatchError as exc:  # part of it was refused; the jobs it took are ours
                    self.log.error("dequeue of %r partly failed: %s", queue_type, exc)
                    jobs = exc.jobs
                except ClientClosedError:
                    self.log.error("the client was closed under the consumer: stopping")
                    self.stop(now=True)
                    return
                except TROUBLE as exc:
                    if isinstance(exc, OutcomeUnknownError):
                        self.log.warning("a dequeue of %r was lost; the jobs it may have taken come back after "
                                         "their lease (%d ms)", queue_type, self.expire_ms)
                    yield (WAIT, STOP, backoff.failed(exc))
                    continue
                except Exception as exc:  # never die silently: log, back off, go on
                    self.log.exception("dequeue of %r failed", queue_type)
                    yield (WAIT, STOP, backoff.failed(exc))
                    continue
                backoff.ok()
                self.rotation.fetched(queue_type, len(jobs), now)
                if jobs:
                    if not self.buffer and self.prefetch < self.prefetch_cap:  # the workers waited
                        self.prefetch = min(self.prefetch_cap, self.prefetch * 2)
                    for job in jobs:
                        held[id(job)] = [job, None]
                    self.buffer.extend(jobs)
                    self.wake(self.JOBS)
                    if self.phase != RUNNING:  # stopped meanwhile: the keeper releases them
                        self.wake(FLUSH)
        finally:
            self.fetcher_done = True
            self.wake(FLUSH)

    # -- the keeper: completions, failures, leases, timeouts, shutdown -----------------------

    def keeper(self) -> Loop:
        """Send completions and failures, extend leases, time out jobs; at a stop, drain:
        wait for the running jobs (up to grace_period), release the unstarted ones, flush.
        Returns when the consumer is stopped."""
        backoff = Backoff(self.log, "finish")
        next_lease = time.monotonic() + self.lease_period
        first_seen: Optional[float] = None
        pending: List[Job] = self.pending  # a finish_many whose outcome is unknown: sent again
        to_release: List[Job] = []
        while self.phase != HALTED:
            now = time.monotonic()
            self.stats.last_turn = time.time()
            draining = self.phase == DRAINING
            if self.reap_timeouts:
                self._reap(now)
            if draining:
                to_release += self._release_buffer()
                if (self.fetcher_done and not self.held) or self._grace_over(now):
                    break
            if self.finished or self.fails or pending:
                first_seen = first_seen or now
                if (draining or now - first_seen >= self.finish_delay or len(self.finished) >= self.finish_batch
                        or self.fails or pending):
                    first_seen = None
                    self.flush_armed = False
                    if (yield from self._flush(pending)):
                        backoff.ok()
                    else:
                        yield (WAIT, HALT, backoff.delay())
                    continue
            if now >= next_lease:
                next_lease = now + self.lease_period
                yield from self._extend()
                self._adapt(now)
                continue
            timeout = next_lease - now
            if first_seen is not None:
                timeout = min(timeout, first_seen + self.finish_delay - now)
            if self.reap_timeouts:
                timeout = min(timeout, max(self.job_timeout / 10, 0.01))  # type: ignore[operator]
            if draining:
                timeout = min(timeout, 0.05)
            if timeout > 0:
                yield (WAIT, FLUSH, timeout)
        if self.phase == HALTED:
            yield from self._flush_once(pending)
        else:
            yield from self._final_flush(to_release + self._release_buffer(), pending, backoff)

    def _grace_over(self, now: float) -> bool:
        if now < self.stopped_at + self.grace_period:
            return False
        if self.held:
            self.log.warning("grace period over: %d jobs still running are left to their leases: %s",
                             len(self.held), _ids(entry[0] for entry in list(self.held.values())))
        return True

    def _adapt(self, now: float) -> None:
        """Fetch ahead what the workers handle in PREFETCH_LEASE_SHARE of a lease, at the
        rate they had since the last look (at most MAX_PREFETCH, at least concurrency)."""
        since, count = self._rate_mark
        handled = self.stats.processed + self.stats.failed
        if now - since < 0.25:
            return
        rate = (handled - count) / (now - since)
        self._rate_mark = (now, handled)
        budget = int(rate * self.expire_ms / 1000 * PREFETCH_LEASE_SHARE)
        self.prefetch_cap = max(self.concurrency, min(MAX_PREFETCH, budget))
        self.prefetch = min(self.prefetch, self.prefetch_cap)

    def _flush(self, pending: List[Job]) -> Generator[Action, Any, bool]:
        """Send the completions (and the batch of unknown outcome first) and the failures.
        False on Redis trouble (what was not sent is kept)."""
        if not pending:
            finished = self.finished
            pending.extend(finished.popleft() for _ in range(len(finished)))
        while pending:
            batch = pending[: C.MAX_DEQUEUE_COUNT]
            try:
                results = yield (CALL, "finish_many", (batch,), {})
            except BatchError as exc:
                self.log.error("Redis refused to finish %d jobs (they come back after their lease): %s",
                               len(exc.refused), exc)
                results = [index not in set(exc.refused) for index in range(len(batch))]
            except TROUBLE as exc:
                self.log.warning("finishing %d jobs failed (sent again): %s", len(batch), exc)
                return False
            del pending[: len(batch)]
            self._count_finished(batch, results)
        self._adapt(time.monotonic())
        return (yield from self._send_failures())

    def _count_finished(self, batch: List[Job], results: List[bool]) -> None:
        lost = [job for job, ok in zip(batch, results) if not ok]
        if lost:  # one line a batch: a burst of losses must not flood the log
            self.log.warning("lease lost: %d jobs were finished too late (their leases had expired; "
                             "their results do not count): %s", len(lost), _ids(iter(lost)))
        self.stats.processed += len(batch) - len(lost)
        self.stats.lease_losses += len(lost)

    def _send_failures(self) -> Generator[Action, Any, bool]:
        fails = self.fails
        while fails:
            items = [fails.popleft() for _ in range(len(fails))]
            groups: Dict[int, List[Job]] = {}
            for job, _exc in items:
                groups.setdefault(self._backoff_ms(job), []).append(job)
            for backoff_ms, jobs in groups.items():
                try:
                    outcomes = yield (CALL, "fail_many", (jobs,), {"backoff_ms": backoff_ms, "dead_letter": self.dead_letter})
                except TROUBLE as exc:
                    self.log.warning("failing %d jobs failed (sent again): %s", len(jobs), exc)
                    fails.extendleft((job, exc) for job in reversed(jobs))
                    return False
                except Exception:
                    self.log.exception("fail_many refused %d jobs (they come back after their lease)", len(jobs))
                    continue
                self.stats.failed += len(jobs)
                self._count_failed(jobs, outcomes)
        return True

    def _backoff_ms(self, job: Job) -> int:
        backoff = self.retry_backoff
        if callable(backoff):
            try:
                backoff = backoff(job)
            except Exception:
                self.log.exception("retry_backoff failed for job %s: retrying it now", job.job_id)
                backoff = 0
        return max(0, int(float(backoff) * 1000))

    def _count_failed(self, jobs: List[Job], outcomes: List[Any]) -> None:
        for job, outcome in zip(jobs, outcomes):
            value = getattr(outcome, "value", outcome)
            ids = f"{job.queue_type}/{job.queue_id}/{job.job_id}"
            if value == "retried":
                self.stats.retried += 1
            elif value in ("discarded", "dead_lettered"):
                self.stats.discarded += 1
                where = f"moved to {self.dead_letter!r}" if value == "dead_lettered" else "discarded"
                self.log.warning("job %s is out of retries: %s", ids, where)
                if self.on_discard is not None:
                    try:
                        self.on_discard(job)
                    except Exception:
                        self.log.exception("on_discard failed for job %s", ids)
            else:
                self.stats.lease_losses += 1
                self.log.warning("lease lost: failed job %s had expired (redelivered); nothing changed", ids)

    def _extend(self) -> Generator[Action, Any, None]:
        """One extend_many for the jobs held; a lost lease drops the job (not finished)."""
        jobs = [entry[0] for entry in list(self.held.values())]
        if not jobs:
            return
        try:
            results = yield (CALL, "extend_many", (jobs, self.expire_ms), {})
        except TROUBLE as exc:
            self.log.warning("extending %d leases failed (tried again next round): %s", len(jobs), exc)
            return
        except Exception:
            self.log.exception("extending %d leases failed", len(jobs))
            return
        held = self.held
        lost = [job for job, ok in zip(jobs, results) if not ok and held.pop(id(job), None) is not None]
        if lost:
            self.stats.lease_losses += len(lost)
            self.log.warning("lease lost: %d jobs expired before they could be extended; their results "
                             "will not count: %s", len(lost), _ids(iter(lost)))

    def _reap(self, now: float) -> None:
        """Fail the jobs running longer than job_timeout (the thread driver cannot cancel
        a handler: its late result is ignored)."""
        limit = now - self.job_timeout  # type: ignore[operator]
        for entry in list(self.held.values()):
            started = entry[1]
            if started is not None and started < limit:
                self.failed(entry[0], JobTimeoutError(f"the handler ran longer than job_timeout ({self.job_timeout}s)"))

    def _release_buffer(self) -> List[Job]:
        """Take the fetched, unstarted jobs out of the held ones."""
        jobs = []
        buffer, held = self.buffer, self.held
        while buffer:
            job = buffer.popleft()
            if held.pop(id(job), None) is not None:
                jobs.append(job)
        return jobs

    def _final_flush(self, to_release: List[Job], pending: List[Job], backoff: "Backoff") -> Loop:
        """Release the unstarted jobs and send what is done, retrying while Redis is down
        (for FINAL_FLUSH_FOR at most: what is left comes back after its lease)."""
        give_up = time.monotonic() + FINAL_FLUSH_FOR
        while self.phase == DRAINING:
            released = yield from self._release(to_release)
            flushed = released and (yield from self._flush(pending))
            if flushed and not (self.finished or self.fails):
                return
            if time.monotonic() > give_up:
                self.log.error("could not flush at shutdown (Redis unreachable): %d jobs come back after their lease",
                               len(to_release) + len(pending) + len(self.finished) + len(self.fails))
                return
            yield (WAIT, HALT, backoff.delay())
        yield from self._flush_once(pending)

    def _release(self, jobs: List[Job]) -> Generator[Action, Any, bool]:
        if not jobs:
            return True
        try:
            results = yield (CALL, "release_many", (list(jobs),), {})
        except TROUBLE as exc:
            self.log.warning("releasing %d unstarted jobs failed (sent again): %s", len(jobs), exc)
            return False
        except Exception:
            self.log.exception("releasing %d unstarted jobs failed (they come back after their lease)", len(jobs))
            results = []
        self.stats.released += sum(1 for ok in results if ok)
        del jobs[:]
        return True

    def _flush_once(self, pending: List[Job]) -> Loop:
        """Stop now: one try to send what is done (so it is not redone), no retries."""
        try:
            yield from self._flush(pending)
        except Exception:  # noqa: BLE001 - stopping now: nothing more to do about it
            self.log.exception("final flush failed")


class Steps:
    """Steps a loop for a driver: ``next()`` gives the next action, after the driver set
    ``reply`` (or ``error``) for the last one; None when the loop ended."""

    __slots__ = ("loop", "reply", "error")

    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self.reply: Any = None
        self.error: Optional[BaseException] = None

    def next(self) -> Optional[Action]:
        """The loop's next action (None: it ended)."""
        reply, error = self.reply, self.error
        self.reply = self.error = None
        try:
            return self.loop.send(reply) if error is None else self.loop.throw(error)
        except StopIteration:
            return None


class Backoff:
    """Doubling pauses after Redis trouble, each logged; reset by a success."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self.log = logger
        self.what = what
        self.pause = 0.0

    def failed(self, exc: BaseException) -> float:
        """Log the trouble; the pause before trying again (s)."""
        pause = self.delay()
        self.log.warning("%s: %s: %s; retrying in %.2fs", self.what, type(exc).__name__, exc, pause)
        return pause

    def delay(self) -> float:
        """The next pause (s): doubled from the last."""
        self.pause = min(BACKOFF_MAX, self.pause * 2) if self.pause else BACKOFF_MIN
        return self.pause

    def ok(self) -> None:
        """Redis answered: back to the shortest pause."""
        if self.pause:
            self.log.info("%s: Redis answers again", self.what)
        self.pause = 0.0


def _ids(jobs: Iterator[Job], most: int = 20) -> str:
    ids = [f"{job.queue_type}/{job.queue_id}/{job.job_id}" for job in jobs]
    return ", ".join(ids[:most]) + (f" and {len(ids) - most} more" if len(ids) > most else "")
