"""The public methods of Client and AsyncClient, defined once.

Each method validates nothing itself and does no I/O: it builds an operation of the
client's layout (``settings.ops``: ``_ops``/``_ops_queues`` on one node, ``_ops_cluster``/
``_ops_cluster_queues`` on a cluster; see ``_layout``) and hands it to ``self._run``. On
Client, ``_run`` drives it on the sync transport and returns the result; AsyncClient wraps
every method here into a coroutine function whose ``_run`` drives it on the asyncio
transport (see ``aio.py``).
"""

from typing import Any, Callable, Iterable, List, Optional, Union

import redis
import redis.asyncio

from . import _constants as C
from ._connect import from_config, redis_from
from ._layout import transport_for
from ._rounds import Op
from ._settings import Clock, Settings
from .types import EnqueueResult, FailOutcome, GlobalMetrics, Job, QueueMetrics, QueueTypeMetrics, RequeueResult

#: The public methods that run an operation (AsyncClient makes coroutines of them).
OPERATIONS = (
    "enqueue", "enqueue_many", "dequeue", "dequeue_many", "finish", "finish_many",
    "extend", "extend_many", "release", "release_many", "fail", "fail_many", "interval", "requeue", "metrics",
    "clear_queue", "queue_length", "deep_status", "load_scripts",
)


def _first(op: Op[List[Any]]) -> Op[Any]:
    results = yield from op
    return results[0]


class Operations:
    """The SharQ operations, single and batched, and the settings and connection both
    clients are made with (see Client for the settings)."""

    #: Set by each client: whether it talks redis.asyncio, and its requeuer's class.
    _ASYNCIO = False
    _REQUEUER: Any = None

    def __init__(
        self,
        redis_or_url: Union[str, redis.Redis, redis.asyncio.Redis] = "redis://127.0.0.1:6379/0",
        *,
        key_prefix: str = C.DEFAULT_KEY_PREFIX,
        job_expire_interval: int = C.DEFAULT_JOB_EXPIRE_INTERVAL,
        job_requeue_interval: int = C.DEFAULT_JOB_REQUEUE_INTERVAL,
        default_job_requeue_limit: int = C.DEFAULT_JOB_REQUEUE_LIMIT,
        clock: Optional[Clock] = None,
        requeuer: bool = False,
        wait_poll_interval: float = C.DEFAULT_WAIT_POLL_INTERVAL,
        retry_for: float = C.DEFAULT_RETRY_FOR,
        replicas: int = C.DEFAULT_REPLICAS,
        replica_timeout: float = C.DEFAULT_REPLICA_TIMEOUT,
    ) -> None:
        self.settings = Settings(
            key_prefix=key_prefix,
            job_expire_interval=job_expire_interval,
            job_requeue_interval=job_requeue_interval,
            default_job_requeue_limit=default_job_requeue_limit,
            clock=clock,
            wait_poll_interval=wait_poll_interval,
            retry_for=retry_for,
            replicas=replicas,
            replica_timeout=replica_timeout,
        )
        self.redis, self._owns_redis = redis_from(redis_or_url, asyncio=self._ASYNCIO)
        self._transport = transport_for(self.redis, self.settings, asyncio=self._ASYNCIO)
        self._requeuer: Any = None
        if requeuer:
            self.start_requeuer()

    @classmethod
    def from_config(cls, path: str, **overrides: Any) -> Any:
        """A client for the Redis and settings of a SharQ config file (sharq.conf);
        keyword arguments override the file's settings."""
        redis_client, settings = from_config(path, asyncio=cls._ASYNCIO)
        client = cls(redis_client, **{**settings, **overrides})
        client._owns_redis = True
        return client

    def _run(self, op: Op[Any]) -> Any:
        return self._transport.run(op)

    def start_requeuer(self, on_discard: Optional[Callable[[Job], None]] = None) -> None:
        """Run requeue() in the background (a daemon thread for Client, a task of the
        running loop for AsyncClient) while this process holds the requeue lock of the key
        prefix (one requeuer at a time across processes): every job_requeue_interval,
        sooner when a lease expires before. `on_discard` is called with each job discarded
        for running out of requeues."""
        if self._requeuer is not None and self._requeuer.is_alive():
            return
        self._requeuer = self._REQUEUER(self._transport, on_discard=on_discard)
        self._requeuer.start()

    @property
    def closed(self) -> bool:
        """True once close() was called."""
        return self._transport.closed

    @property
    def key_prefix(self) -> str:
        """The prefix of every key (sharq.conf's ``[redis] key_prefix``)."""
        return self.settings.key_prefix

    @property
    def job_expire_interval(self) -> int:
        """ms a dequeued job may stay unfinished before requeue() puts it back."""
        return self.settings.job_expire_interval

    @property
    def job_requeue_interval(self) -> int:
        """ms between two runs of the background requeuer (at most)."""
        return self.settings.job_requeue_interval

    @property
    def default_job_requeue_limit(self) -> int:
        """Requeues allowed when enqueue gets no requeue_limit (-1: no limit)."""
        return self.settings.default_job_requeue_limit

    @property
    def clock(self) -> Any:
        """The clock: a function returning ms since the epoch (settable, for tests)."""
        return self.settings.clock

    @clock.setter
    def clock(self, clock: Any) -> None:
        self.settings.clock = clock

    # -- single jobs --------------------------------------------------------------------

    def enqueue(
        self,
        *,
        queue_id: str,
        job_id: str,
        payload: Any,
        interval: int,
        queue_type: str = C.DEFAULT_QUEUE_TYPE,
        requeue_limit: Optional[int] = None,
    ) -> bool:
        """Enqueue one job. Returns True, or False when a job with this job_id is already
        queued or active in this queue (then nothing is changed: the first job is kept)."""
        job = {
            "queue_type": queue_type, "queue_id": queue_id, "job_id": job_id,
            "payload": payload, "interval": interval, "requeue_limit": requeue_limit,
        }
        return self._run(self.settings.ops.enqueue(self.settings, job))

    def dequeue(self, queue_type: str = C.DEFAULT_QUEUE_TYPE, *, timeout: Optional[float] = None) -> Optional[Job]:
        """Take the next job of the ready queue of `queue_type` that is due first, or None.
        With a `timeout` (seconds), wait up to that long for one (without polling Redis
        more than every wait_poll_interval). Finish the job before its ``expires_at``."""
        return self._run(self.settings.ops.dequeue(self.settings, queue_type, timeout))

    def finish(self, queue_type: str, queue_id: str, job_id: str) -> bool:
        """Mark a dequeued job done, by its ids (as SharQ). False when it is not active
        (unknown, finished already, or expired and requeued)."""
        return self._run(self.settings.ops.finish(self.settings, queue_type, queue_id, job_id))

    def extend(self, job: Job, ms: int) -> bool:
        """Move a dequeued job's lease to now + `ms` (its ``expires_at`` is updated). False
        when the lease was lost (finished, or requeued): stop working on the job."""
        return self._run(_first(self.settings.ops.extend_many(self.settings, (job,), ms, C.DEFAULT_CHUNK_SIZE)))

    def release(self, job: Job) -> bool:
        """Put a dequeued job that was not worked on back at the front of its queue, now,
        without counting a requeue. False when the lease was lost."""
        return self._run(_first(self.settings.ops.release_many(self.settings, (job,), C.DEFAULT_CHUNK_SIZE)))

    def fail(self, job: Job, *, backoff_ms: int = 0, dead_letter: Optional[str] = None) -> FailOutcome:
        """Report a dequeued job as failed; it counts against its requeue limit as an
        expiry would. See fail_many."""
        return self._run(_first(self.settings.ops.fail_many(
            self.settings, (job,), backoff_ms, dead_letter, C.DEFAULT_CHUNK_SIZE
        )))

    def interval(self, queue_type: str, queue_id: str, interval: int) -> bool:
        """Change the interval of a known queue. False when the queue has no interval
        (nothing was enqueued to it, or it was finished and emptied)."""
        return self._run(self.settings.ops.interval(self.settings, queue_type, queue_id, interval))

    # -- batches ------------------------------------------------------------------------

    def enqueue_many(
        self,
        jobs: Iterable[Any],
        *,
        chunk_size: int = C.DEFAULT_CHUNK_SIZE,
        pipeline_depth: int = C.DEFAULT_PIPELINE_DEPTH,
        replicas: Optional[int] = None,
    ) -> EnqueueResult:
        """Enqueue jobs (dicts with enqueue's argument names, or JobRequest objects) from
        any iterable (AsyncClient: or async iterable), in rounds of `chunk_size` x
        `pipeline_depth` jobs: one round trip a round, `chunk_size` jobs a script call.
        Memory stays bounded for a generator of millions; the next round is packed while
        Redis runs the current one. Within a round, jobs are sent queue by queue (each
        queue's jobs in input order): the same result, less work for Redis.

        Each chunk is validated before any of it is sent. A bad job raises
        BadArgumentException with its index and field; the chunks before it are enqueued
        (its ``enqueued`` says how many jobs), nothing of its chunk or after it is written.

        `replicas` (default: the client's): each round ends with ``WAIT replicas``; the
        jobs of rounds it did not confirm in time are listed (input positions) in the
        ReplicationError raised once every round was sent: send those again."""
        return self._run(self.settings.ops.enqueue_many(self.settings, jobs, chunk_size, pipeline_depth, replicas))

    def dequeue_many(
        self, queue_type: str = C.DEFAULT_QUEUE_TYPE, count: int = 100, *, timeout: Optional[float] = None
    ) -> List[Job]:
        """Up to `count` (at most 10,000) jobs in one round trip: what `count` dequeues at
        the same instant would give (a queue with interval > 0 gives at most one). With a
        `timeout` (seconds), wait up to that long while none is ready."""
        return self._run(self.settings.ops.dequeue_many(self.settings, queue_type, count, timeout))

    def finish_many(
        self, jobs: Iterable[Any], *, chunk_size: int = C.DEFAULT_CHUNK_SIZE, replicas: Optional[int] = None
    ) -> List[bool]:
        """Finish jobs in one round trip, `chunk_size` a script call; one bool per job. A
        Job is finished only while its lease is the one dequeue gave (never another
        consumer's later delivery of it); a (queue_type, queue_id, job_id) tuple whenever
        the job is active, as finish(). All are validated first: a bad one changes nothing.
        `replicas` (default: the client's): unconfirmed by WAIT, ReplicationError."""
        return self._run(self.settings.ops.finish_many(self.settings, jobs, chunk_size, replicas))

    def extend_many(self, jobs: Iterable[Job], ms: int, *, chunk_size: int = C.DEFAULT_CHUNK_SIZE) -> List[bool]:
        """extend() for many Jobs in one round trip; one bool per job."""
        return self._run(self.settings.ops.extend_many(self.settings, jobs, ms, chunk_size))

    def release_many(self, jobs: Iterable[Any], *, chunk_size: int = C.DEFAULT_CHUNK_SIZE) -> List[bool]:
        """release() for many jobs (Jobs, or (queue_type, queue_id, job_id, lease) tuples)
        in one round trip; one bool per job. Jobs of one queue keep their order."""
        return self._run(self.settings.ops.release_many(self.settings, jobs, chunk_size))

    def fail_many(
        self,
        jobs: Iterable[Any],
        *,
        backoff_ms: int = 0,
        dead_letter: Optional[str] = None,
        chunk_size: int = C.DEFAULT_CHUNK_SIZE,
    ) -> List[FailOutcome]:
        """Report dequeued jobs (Jobs, or (queue_type, queue_id, job_id, lease) tuples) as
        failed, in one round trip; one FailOutcome per job. Each failure counts one
        requeue against the job's limit, exactly as an expiry would (-1: unlimited):

        - requeues left, `backoff_ms` 0: back at the front of its queue now (RETRIED; the
          queue's interval still holds; jobs of one queue in one chunk keep their order);
        - requeues left, `backoff_ms` > 0: the job stays active with its lease moved to
          now + backoff_ms; the requeuer then puts it back and counts the requeue
          (RETRIED);
        - no requeues left: DISCARDED (payload and count deleted), or with `dead_letter`
          (a queue type) DEAD_LETTERED: enqueued there with the same queue_id, job_id and
          payload, interval 0 and the client's default requeue limit (a job already queued
          there under that id is kept);
        - LOST when the caller's lease was lost (finished, requeued, dequeued again):
          nothing changed.

        All input is validated first: a bad job or argument raises BadArgumentException
        and changes nothing. On one node each chunk is one atomic script call; on a
        cluster, dead-lettering takes two more calls (enqueue into the dead-letter type,
        then discard: a client dying between them leaves the job active, and the requeuer
        discards it there; its dead-letter copy stays)."""
        return self._run(self.settings.ops.fail_many(self.settings, jobs, backoff_ms, dead_letter, chunk_size))

    # -- queues -------------------------------------------------------------------------

    def requeue(self) -> RequeueResult:
        """Put expired active jobs back at the front of their queues, and discard those
        whose requeue limit ran out (returned, with their payloads). Runs in bounded steps;
        a queue type that fails does not stop the others (BatchError with ``.result``)."""
        return self._run(self.settings.ops.requeue(self.settings))

    def metrics(
        self, queue_type: Optional[str] = None, queue_id: Optional[str] = None
    ) -> Union[GlobalMetrics, QueueTypeMetrics, QueueMetrics]:
        """Global metrics (no arguments), the queue ids of a queue type, or one queue's
        metrics. Counts are per minute, ten minutes, newest first, 0 where none."""
        return self._run(self.settings.ops.metrics(self.settings, queue_type, queue_id))

    def clear_queue(self, queue_type: str, queue_id: str, purge_all: bool = False) -> bool:
        """Remove a queue from its ready set and delete its jobs (their payloads and
        requeue counts too, in bounded steps), atomically; with `purge_all` also the
        queue's interval. True when the queue was ready (had queued jobs)."""
        return self._run(self.settings.ops.clear_queue(self.settings, queue_type, queue_id, purge_all))

    def queue_length(self, queue_type: str, queue_id: str) -> int:
        """How many jobs wait in a queue (LLEN of its job list)."""
        return self._run(self.settings.ops.queue_length(self.settings, queue_type, queue_id))

    def deep_status(self) -> bool:
        """Check that Redis answers and takes writes (SharQ's deep status key)."""
        return self._run(self.settings.ops.deep_status(self.settings))

    def load_scripts(self) -> None:
        """Load every script into Redis (done by itself on NOSCRIPT)."""
        return self._run(self.settings.ops.load_scripts(self.settings))
