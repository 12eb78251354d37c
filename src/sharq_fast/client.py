"""``Client``: the SharQ operations, single and batched, over one redis-py connection pool.

Every operation is a Lua script run by EVALSHA. Requests are packed to RESP bytes by the
core (``_core``) and written straight to a pooled redis-py connection; replies are read
with redis-py's parser (hiredis when installed). Pool, auth, TLS and reconnects stay
redis-py's.
"""

import os
import threading
import time
import uuid
import weakref
from itertools import islice
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

import redis
from redis.exceptions import ConnectionError, NoScriptError, ResponseError, TimeoutError

from . import _constants as C
from ._core import core
from .config import read_config
from .exceptions import BadArgumentException, SharqException
from .scripts import load_scripts
from .types import (
    EnqueueResult,
    GlobalMetrics,
    Job,
    QueueMetrics,
    QueueTypeMetrics,
    RequeueResult,
)

Clock = Callable[[], int]


def epoch_ms() -> int:
    """The current Unix time in milliseconds (SharQ's clock)."""
    return time.time_ns() // 1_000_000


class BatchError(SharqException):
    """Redis refused part of a batch. ``done`` (``enqueued`` for enqueue_many) counts what
    did land; ``refused`` lists the input positions of the jobs enqueue_many could not
    enqueue; ``jobs`` holds the jobs that dequeue_many did take (finish them)."""

    def __init__(
        self, message: str, *, done: int, jobs: Optional[List[Job]] = None, refused: Optional[List[int]] = None
    ) -> None:
        super().__init__(message)
        self.done = done
        self.enqueued = done
        self.jobs = jobs or []
        self.refused = refused or []


def _positive_ms(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise BadArgumentException(f"`{name}` must be a positive int of milliseconds.", field=name)
    return value


class _Lease:
    """A pool connection lent to one thread for the client's life: taking and returning a
    connection per call costs more than a whole call in redis-py 8. The connection goes back
    to the pool when the thread ends (its thread-local lease is collected) or on close()."""

    __slots__ = ("conn", "pid", "_finalizer", "__weakref__")

    def __init__(self, pool: Any) -> None:
        self.conn = pool.get_connection()
        self.pid = os.getpid()
        self._finalizer = weakref.finalize(self, pool.release, self.conn)

    def release(self) -> None:
        self._finalizer()


class Client:
    """A SharQ client. ``Client("redis://localhost:6379/0")``, ``Client(redis.Redis(...))``
    or ``Client.from_config("sharq.conf")``; close it (or use it as a context manager)."""

    def __init__(
        self,
        redis_or_url: Union[str, redis.Redis] = "redis://127.0.0.1:6379/0",
        *,
        key_prefix: str = C.DEFAULT_KEY_PREFIX,
        job_expire_interval: int = C.DEFAULT_JOB_EXPIRE_INTERVAL,
        job_requeue_interval: int = C.DEFAULT_JOB_REQUEUE_INTERVAL,
        default_job_requeue_limit: int = C.DEFAULT_JOB_REQUEUE_LIMIT,
        clock: Optional[Clock] = None,
        requeuer: bool = False,
    ) -> None:
        if isinstance(redis_or_url, str):
            self.redis = redis.Redis.from_url(redis_or_url)
            self._owns_redis = True
        elif isinstance(redis_or_url, redis.Redis):
            self.redis = redis_or_url
            self._owns_redis = False
        else:
            raise BadArgumentException(
                "Client() takes a Redis URL (redis://, rediss://, unix://) or a redis.Redis, "
                f"not {type(redis_or_url).__name__}"
            )
        if not isinstance(key_prefix, str) or not key_prefix:
            raise BadArgumentException("`key_prefix` must be a non-empty str.", field="key_prefix")
        self.key_prefix = key_prefix
        self.job_expire_interval = _positive_ms(job_expire_interval, "job_expire_interval")
        self.job_requeue_interval = _positive_ms(job_requeue_interval, "job_requeue_interval")
        self.default_job_requeue_limit = core.check_requeue_limit(default_job_requeue_limit)
        self.clock: Clock = clock or epoch_ms
        self._pool = self.redis.connection_pool
        self._local = threading.local()
        self._leases: "weakref.WeakSet[_Lease]" = weakref.WeakSet()
        self._scripts = load_scripts()
        self._sha = {name: script.sha for name, script in self._scripts.items()}
        self._requeuer: Any = None
        if requeuer:
            self.start_requeuer()

    @classmethod
    def from_config(cls, path: str, **overrides: Any) -> "Client":
        """A client for the Redis and settings of a SharQ config file (sharq.conf);
        keyword arguments override the file's settings."""
        config = read_config(path)
        settings: Dict[str, Any] = {
            "key_prefix": config.key_prefix,
            "job_expire_interval": config.job_expire_interval,
            "job_requeue_interval": config.job_requeue_interval,
            "default_job_requeue_limit": config.default_job_requeue_limit,
        }
        settings.update(overrides)
        client = cls(redis.Redis(**config.redis), **settings)
        client._owns_redis = True
        return client

    # -- plumbing ---------------------------------------------------------------------

    def _send(self, commands: Sequence[bytes]) -> List[Any]:
        """Write `commands` in one round trip and read one reply each; a reply that is a
        Redis error comes back as the exception object. A broken connection is retried
        once on a fresh one, as redis-py retries its own commands."""
        return self._receive(self._transmit(commands), commands)

    def _transmit(self, commands: Sequence[bytes]) -> Any:
        """Write `commands` without reading the replies; _receive(sent, commands) reads
        them. Nothing else may use this thread's connection in between."""
        conn = self._connection()
        try:
            conn.send_packed_command((b"".join(commands),))
            return conn, True
        except (ConnectionError, TimeoutError):
            conn.disconnect()  # a stale connection: _receive sends again on a fresh one
            return conn, False
        except BaseException:
            conn.disconnect()
            raise

    def _receive(self, sent: Any, commands: Sequence[bytes]) -> List[Any]:
        conn, delivered = sent
        try:
            if delivered:
                try:
                    return self._read_replies(conn, len(commands))
                except (ConnectionError, TimeoutError):
                    conn.disconnect()
            conn.send_packed_command((b"".join(commands),))
            return self._read_replies(conn, len(commands))
        except BaseException:
            # Unread replies would be read as the answers to the next command.
            conn.disconnect()
            raise

    def _connection(self) -> Any:
        """This thread's connection (a new one after fork)."""
        lease = getattr(self._local, "lease", None)
        if lease is None or lease.pid != os.getpid():
            lease = self._local.lease = _Lease(self._pool)
            self._leases.add(lease)
        return lease.conn

    @staticmethod
    def _read_replies(conn: Any, count: int) -> List[Any]:
        replies = []
        for _ in range(count):
            try:
                replies.append(conn.read_response(disable_decoding=True))
            except ResponseError as exc:
                replies.append(exc)
        return replies

    def _execute(self, commands: Sequence[bytes]) -> List[Any]:
        """Like _send, but scripts missing on the server are loaded (see _reload_missing)."""
        return self._reload_missing(commands, self._send(commands))

    def _reload_missing(self, commands: Sequence[bytes], replies: List[Any]) -> List[Any]:
        """Scripts missing on the server (NOSCRIPT: SCRIPT FLUSH, a Redis restart or
        failover) are loaded and their commands sent again. (Commands of one round trip
        use one script, so they fail together, unless a flush lands between them: then
        the resent ones run after the others, which changes no job's fate.)"""
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            self.load_scripts()
            for i, reply in zip(missing, self._send([commands[i] for i in missing])):
                replies[i] = reply
        return replies

    def _execute_checked(self, commands: Sequence[bytes]) -> List[Any]:
        """Like _execute, but raise the first Redis error among the replies."""
        replies = self._execute(commands)
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise reply
        return replies

    def _call(self, command: bytes) -> Any:
        """Run one command; raise its Redis error, if any."""
        return self._execute_checked((command,))[0]

    def _command(self, *args: Any) -> Any:
        return self._call(core.pack_command(args))

    def load_scripts(self) -> None:
        """Load every script into Redis (done by itself on NOSCRIPT)."""
        commands = [core.pack_command((b"SCRIPT", b"LOAD", s.source)) for s in self._scripts.values()]
        for reply in self._send(commands):  # not _execute: SCRIPT LOAD never says NOSCRIPT
            if isinstance(reply, ResponseError):
                raise reply

    def _evalsha(self, name: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        return self._call(core.pack_evalsha(self._sha[name], keys, args))

    # -- single operations ----------------------------------------------------------

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
            "queue_type": queue_type,
            "queue_id": queue_id,
            "job_id": job_id,
            "payload": payload,
            "interval": interval,
            "requeue_limit": requeue_limit,
        }
        request = core.pack_enqueue(
            self._sha["enqueue"], self.key_prefix, self.clock(), (job,), self.default_job_requeue_limit, -1
        )
        return not self._call(request)

    def dequeue(self, queue_type: str = C.DEFAULT_QUEUE_TYPE) -> Optional[Job]:
        """Take the next job of the ready queue of `queue_type` that is due first, or None
        when no queue is ready. Finish the job within job_expire_interval."""
        core.check_identifier(queue_type, "queue_type")
        reply = self._evalsha(
            "dequeue", (self.key_prefix, queue_type), (self.clock(), self.job_expire_interval, 1)
        )
        jobs = core.parse_jobs(reply, queue_type)
        return jobs[0] if jobs else None

    def finish(self, queue_type: str, queue_id: str, job_id: str) -> bool:
        """Mark a dequeued job done. False when it is not active (unknown, finished
        already, or expired and requeued)."""
        request = core.pack_finish(self._sha["finish"], self.key_prefix, ((queue_type, queue_id, job_id),), -1)
        return self._call(request)[0] == 1

    def interval(self, queue_type: str, queue_id: str, interval: int) -> bool:
        """Change the interval of a known queue. False when the queue has no interval
        (nothing was enqueued to it, or it was finished and emptied)."""
        core.check_interval(interval)
        core.check_identifier(queue_id, "queue_id")
        core.check_identifier(queue_type, "queue_type")
        key = f"{self.key_prefix}:interval"
        return self._evalsha("interval", (key,), (f"{queue_type}:{queue_id}", interval)) == 1

    def requeue(self) -> RequeueResult:
        """Put expired active jobs back at the front of their queues, and discard those
        whose requeue limit ran out. Runs in bounded steps of REQUEUE_BATCH jobs."""
        now = self.clock()
        result = RequeueResult(requeued=0, discarded=[])
        for raw_type in sorted(self._command(b"SMEMBERS", f"{self.key_prefix}:active:queue_type")):
            queue_type = raw_type.decode()
            more = 1
            while more:
                reply = self._evalsha("requeue", (self.key_prefix, queue_type), (now, C.REQUEUE_BATCH))
                result.requeued += reply[0]
                more = reply[1]
                result.discarded.extend(core.parse_jobs(reply, queue_type, 2))
        return result

    def metrics(
        self, queue_type: Optional[str] = None, queue_id: Optional[str] = None
    ) -> Union[GlobalMetrics, QueueTypeMetrics, QueueMetrics]:
        """Global metrics (no arguments), the queue ids of a queue type, or one queue's
        metrics. Counts are per minute, ten minutes, newest first, 0 where none."""
        if queue_id is not None:
            core.check_identifier(queue_id, "queue_id")
        if queue_type is not None:
            core.check_identifier(queue_type, "queue_type")
        prefix = self.key_prefix
        if queue_type is None and queue_id is None:
            minutes = self._minutes()
            replies = self._execute_checked(
                [
                    core.pack_command((b"SUNION", f"{prefix}:active:queue_type", f"{prefix}:ready:queue_type")),
                    *self._counter_commands(prefix, minutes),
                ]
            )
            enqueue_counts, dequeue_counts = self._counts(minutes, replies[1], replies[2])
            return GlobalMetrics(sorted(t.decode() for t in replies[0]), enqueue_counts, dequeue_counts)
        if queue_type is None:
            raise BadArgumentException("`queue_id` should be accompanied by `queue_type`.", field="queue_id")
        if queue_id is None:
            ready, active = self._execute_checked(
                [
                    core.pack_command((b"ZRANGE", f"{prefix}:{queue_type}", 0, -1)),
                    core.pack_command((b"ZRANGE", f"{prefix}:{queue_type}:active", 0, -1)),
                ]
            )
            ids = {member.decode() for member in ready}
            ids.update(member.decode().split(":", 1)[0] for member in active)
            return QueueTypeMetrics(sorted(ids))
        queue_key = f"{prefix}:{queue_type}:{queue_id}"
        minutes = self._minutes()
        replies = self._execute_checked(
            [*self._counter_commands(queue_key, minutes), core.pack_command((b"LLEN", queue_key))]
        )
        enqueue_counts, dequeue_counts = self._counts(minutes, replies[0], replies[1])
        return QueueMetrics(enqueue_counts, dequeue_counts, replies[2])

    def _minutes(self) -> List[int]:
        newest = self.clock() // C.MINUTE_MS * C.MINUTE_MS
        return [newest - i * C.MINUTE_MS for i in range(C.METRICS_WINDOWS)]

    @staticmethod
    def _counter_commands(base: str, minutes: List[int]) -> List[bytes]:
        return [
            core.pack_command((b"MGET", *[f"{base}:{kind}_counter:{minute}" for minute in minutes]))
            for kind in ("enqueue", "dequeue")
        ]

    @staticmethod
    def _counts(minutes: List[int], enqueues: List[Any], dequeues: List[Any]) -> Any:
        return (
            {minute: int(value or 0) for minute, value in zip(minutes, enqueues)},
            {minute: int(value or 0) for minute, value in zip(minutes, dequeues)},
        )

    def clear_queue(self, queue_type: str, queue_id: str, purge_all: bool = False) -> bool:
        """Remove a queue from its ready set and delete its job list, atomically; with
        `purge_all` also delete the queued jobs' payloads and requeue counts and the
        queue's interval (in bounded steps: the list is set aside first, so jobs enqueued
        meanwhile are kept). True when the queue was ready (had queued jobs)."""
        core.check_identifier(queue_id, "queue_id")
        core.check_identifier(queue_type, "queue_type")
        set_aside = f"{self.key_prefix}:{queue_type}:{queue_id}:purging:{uuid.uuid4().hex}"
        args = (queue_type, queue_id, int(bool(purge_all)), set_aside)
        was_ready = self._evalsha("clear_queue", (self.key_prefix,), args) == 1
        if was_ready and purge_all:
            while self._evalsha("purge_jobs", (self.key_prefix, set_aside), (queue_type, queue_id, C.PURGE_BATCH)):
                pass
        return was_ready

    def queue_length(self, queue_type: str, queue_id: str) -> int:
        """How many jobs wait in a queue (LLEN of its job list)."""
        core.check_identifier(queue_type, "queue_type")
        core.check_identifier(queue_id, "queue_id")
        return int(self._command(b"LLEN", f"{self.key_prefix}:{queue_type}:{queue_id}"))

    def deep_status(self) -> bool:
        """Check that Redis answers and takes writes (SharQ's deep status key)."""
        key = C.DEEP_STATUS_KEY.format(prefix=self.key_prefix)
        return self._command(b"SET", key, C.DEEP_STATUS_VALUE) == b"OK"

    # -- batches ----------------------------------------------------------------------

    def enqueue_many(
        self,
        jobs: Iterable[Any],
        *,
        chunk_size: int = C.DEFAULT_CHUNK_SIZE,
        pipeline_depth: int = C.DEFAULT_PIPELINE_DEPTH,
    ) -> EnqueueResult:
        """Enqueue jobs (dicts with enqueue's argument names, or JobRequest objects) from
        any iterable, in rounds of `chunk_size` x `pipeline_depth` jobs: one round trip a
        round, `chunk_size` jobs a script call. Memory stays bounded for a generator of
        millions. Within a round, jobs are sent queue by queue (each queue's jobs in input
        order), which gives the same result with less work for Redis.

        Each chunk (of `chunk_size` jobs in input order) is validated before any of it is
        sent. A bad job raises BadArgumentException with its index and field; the chunks
        before it are enqueued (its ``enqueued`` says how many jobs), nothing of its chunk
        or after it is written."""
        chunk_size = self._check_batching(chunk_size, pipeline_depth)
        round_size = chunk_size * pipeline_depth
        source = iter(jobs)
        result = EnqueueResult(enqueued=0, duplicates=[])
        start = 0
        batch = list(islice(source, round_size))
        in_flight = None  # the round Redis works on while the next one is packed
        try:
            while batch:
                commands, positions, error = self._pack_round(batch, start, chunk_size)
                if in_flight is not None:
                    landing, in_flight = in_flight, None
                    self._land_round(landing, result)
                # Drawn while nothing is in flight: the iterable may itself use this client.
                following = list(islice(source, round_size)) if len(batch) == round_size else []
                if commands:
                    in_flight = (self._transmit(commands), commands, positions, start)
                if error is not None:
                    landing, in_flight = in_flight, None
                    if landing is not None:
                        self._land_round(landing, result)
                    error.enqueued = result.enqueued
                    raise error
                start += len(batch)
                batch = following
            if in_flight is not None:
                landing, in_flight = in_flight, None
                self._land_round(landing, result)
            return result
        except BaseException:
            if in_flight is not None:
                in_flight[0][0].disconnect()  # its replies were not read
            raise

    def _pack_round(self, batch: List[Any], start: int, chunk_size: int) -> Any:
        """(commands, positions, error) of one round. A bad job's error comes with the
        chunks before its chunk, which are still to be sent."""
        sha, prefix, limit, now = self._sha["enqueue"], self.key_prefix, self.default_job_requeue_limit, self.clock()
        try:
            return (*core.pack_enqueue_grouped(sha, prefix, now, batch, limit, start, chunk_size), None)
        except BadArgumentException as exc:
            valid = ((exc.index or start) - start) // chunk_size * chunk_size
            commands, positions = core.pack_enqueue_grouped(sha, prefix, now, batch[:valid], limit, start, chunk_size)
            return commands, positions, exc

    def _land_round(self, in_flight: Any, result: EnqueueResult) -> None:
        sent, commands, positions, start = in_flight
        replies = self._reload_missing(commands, self._receive(sent, commands))
        self._collect_enqueues(replies, positions, start, result)

    @staticmethod
    def _collect_enqueues(
        replies: List[Any], positions: List[List[int]], start: int, result: EnqueueResult
    ) -> None:
        refused: List[int] = []
        errors = []
        duplicates = []
        for reply, part in zip(replies, positions):
            if isinstance(reply, ResponseError):
                errors.append(reply)
                refused.extend(start + offset for offset in part)
                continue
            result.enqueued += len(part) - len(reply)
            duplicates.extend(start + part[position - 1] for position in reply)
        result.duplicates.extend(sorted(duplicates))
        if errors:
            raise BatchError(
                f"Redis refused {len(refused)} jobs: {errors[0]}; {result.enqueued} jobs were "
                "enqueued (the refused ones are in .refused)",
                done=result.enqueued,
                refused=sorted(refused),
            )

    def dequeue_many(self, queue_type: str = C.DEFAULT_QUEUE_TYPE, count: int = 100) -> List[Job]:
        """Up to `count` jobs in one round trip: what `count` dequeues at the same instant
        would give (a queue with interval > 0 gives at most one job per call)."""
        core.check_identifier(queue_type, "queue_type")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise BadArgumentException("`count` must be an int >= 1.", field="count")
        now, keys, sha = self.clock(), (self.key_prefix, queue_type), self._sha["dequeue"]
        commands = [
            core.pack_evalsha(sha, keys, (now, self.job_expire_interval, min(C.MAX_DEQUEUE_PER_CALL, count - done)))
            for done in range(0, count, C.MAX_DEQUEUE_PER_CALL)
        ]
        jobs: List[Job] = []
        error = None
        for reply in self._execute(commands):
            if isinstance(reply, ResponseError):
                error = error or reply
            else:
                jobs.extend(core.parse_jobs(reply, queue_type))
        if error is not None:
            raise BatchError(
                f"Redis refused a dequeue: {error}; {len(jobs)} jobs were dequeued (in .jobs)",
                done=len(jobs),
                jobs=jobs,
            )
        return jobs

    def finish_many(
        self, jobs: Iterable[Any], *, chunk_size: int = C.DEFAULT_CHUNK_SIZE
    ) -> List[bool]:
        """Finish jobs (Job objects or (queue_type, queue_id, job_id) tuples) in one round
        trip, `chunk_size` jobs a script call; one bool per job, as finish() returns.
        Every job is validated first: a bad one raises and finishes nothing."""
        chunk_size = self._check_batching(chunk_size, 1)
        items = list(jobs)
        sha, prefix = self._sha["finish"], self.key_prefix
        starts = range(0, len(items), chunk_size)
        commands = [core.pack_finish(sha, prefix, items[start : start + chunk_size], start) for start in starts]
        results: List[bool] = []
        refused: List[int] = []
        errors = []
        for start, reply in zip(starts, self._execute(commands) if commands else []):
            if isinstance(reply, ResponseError):
                errors.append(reply)
                size = min(chunk_size, len(items) - start)
                refused.extend(range(start, start + size))
                results.extend([False] * size)
            else:
                results.extend(flag == 1 for flag in reply)
        if errors:
            raise BatchError(
                f"Redis refused to finish {len(refused)} jobs: {errors[0]} (they are in .refused)",
                done=sum(results),
                refused=refused,
            )
        return results

    @staticmethod
    def _check_batching(chunk_size: int, pipeline_depth: int) -> int:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or not 1 <= chunk_size <= C.MAX_CHUNK_SIZE:
            raise BadArgumentException(f"`chunk_size` must be an int from 1 to {C.MAX_CHUNK_SIZE}.", field="chunk_size")
        if isinstance(pipeline_depth, bool) or not isinstance(pipeline_depth, int) or pipeline_depth < 1:
            raise BadArgumentException("`pipeline_depth` must be an int >= 1.", field="pipeline_depth")
        return chunk_size

    # -- background requeuer and lifetime -----------------------------------------------

    def start_requeuer(self, on_discard: Optional[Callable[[Job], None]] = None) -> None:
        """Run requeue() every job_requeue_interval in a daemon thread, while this process
        holds the requeue lock of the key prefix (one requeuer at a time across processes).
        `on_discard` is called with each job discarded for running out of requeues."""
        from .requeuer import Requeuer

        if self._requeuer is not None and self._requeuer.is_alive():
            return
        self._requeuer = Requeuer(self, on_discard=on_discard)
        self._requeuer.start()

    def stop_requeuer(self, timeout: Optional[float] = 5.0) -> None:
        """Stop the background requeuer, if running, and release its lock."""
        if self._requeuer is not None:
            self._requeuer.stop(timeout)
            self._requeuer = None

    def close(self) -> None:
        """Stop the requeuer and, if this client created its Redis connection, close it."""
        self.stop_requeuer()
        for lease in list(self._leases):
            lease.release()
        self._local = threading.local()
        if self._owns_redis:
            self.redis.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
